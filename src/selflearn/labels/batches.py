"""Dialogues → tensors for the label network, and the corruptions of self-supervised pretraining.

Each exchange is encoded (:class:`Encoded`: token ids or frozen sentence vectors, categorical and
numerical features, targets) batch by batch; a batch is a list of dialogues, each a list of Encoded,
flattened dialogue by dialogue so that the network's ``turn_pos`` indexes them in order.

Two modes (:data:`MODES`). ``offline`` labels a finished dialogue: an exchange is the user turn and
the system's reply to it, and the numbers include how similar the NEXT request is and how soon it
came. ``online`` estimates at turn t from turns up to t: an exchange is the user turn and the reply it
reacts to (the system's previous turn), the response's own status, feedback and barge-in are those
of the previous exchange, and nothing about later turns is read (the network is causal too)."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, replace

import numpy as np

from ..signals.similarity import text_similarity
from .dialogues import CATEGORICAL, SATISFACTION_WORDS, Dialogue
from .weak import align_slot

__all__ = ["Vocab", "Encoded", "encode_dialogues", "exchange_texts", "collate", "corrupt", "drop_feedback", "CORRUPTIONS", "IGNORE", "MODES"]

IGNORE = -100
MODES = ("offline", "online")
RESPONSE_FEATURES = ("status", "feedback", "barge_in")  # what the system's reply and the user's reaction to it say: known after the turn
CORRUPTIONS = ("swap", "shuffle", "insert")
MAX_USER_TOKENS = 32
MAX_SYSTEM_TOKENS = 24


@dataclass
class Vocab:
    """The label spaces and feature vocabularies a fitted model knows."""

    categories: dict[str, list[str]]  # feature -> values (index 0 is <unk>/missing)
    intents: list[str]
    tags: list[str]  # "O", then B-/I- per slot name
    satisfaction: list[int]
    dialogue_labels: list[str]
    slot_values: dict[str, list[str]]  # slot name -> values seen in the labels (canonical values)

    @classmethod
    def fit(cls, dialogues: list[Dialogue], *, min_count: int = 2, max_values: int = 200) -> "Vocab":
        from collections import Counter

        cats = {c: Counter() for c in CATEGORICAL}
        intents, names, sats, dls = set(), set(), set(), set()
        values: dict[str, set] = {}
        for d in dialogues:
            if d.label is not None:
                dls.add(str(d.label))
            for e in d.exchanges:
                for c in CATEGORICAL:
                    if e.features.get(c) is not None:
                        cats[c][e.features[c]] += 1
                lab = e.labels
                if "intent" in lab:
                    intents.add(lab["intent"])
                if "satisfaction" in lab:
                    sats.add(lab["satisfaction"])
                for s in lab.get("slots", []):
                    names.add(s["name"])
                    values.setdefault(s["name"], set()).add(s["value"])
        if len({type(x) for x in sats}) > 1:
            raise ValueError(f"satisfaction labels {sorted(map(str, sats))}: mix integers and classes; fix: use one scale in a data set")
        return cls({c: ["<unk>"] + [v for v, n in cnt.most_common(max_values) if n >= min_count] for c, cnt in cats.items()},
                   sorted(intents), ["O"] + [f"{p}-{n}" for n in sorted(names) for p in ("B", "I")],
                   sorted(sats, key=_satisfaction_rank), sorted(dls), {k: sorted(v) for k, v in sorted(values.items())})

    def to_dict(self) -> dict:
        return self.__dict__.copy()


def _satisfaction_rank(v):
    return SATISFACTION_WORDS.index(v) if v in SATISFACTION_WORDS else v


@dataclass
class Encoded:
    u_ids: list[int]
    word_of_token: list[int]  # word index of each user token (-1: special or a later sub-token)
    r_ids: list[int]
    cats: list[int]
    nums: list[float]
    # targets (IGNORE / nan when unknown)
    defect: float
    goal_success: float
    goal: object
    intent: int
    tags: list[int]  # per word
    satisfaction: int
    dialogue_label: int
    corrupted: float = 0.0
    u_vec: np.ndarray | None = None  # frozen sentence vectors (instead of token ids)
    r_vec: np.ndarray | None = None


def _numeric(text: str, f: dict, nxt=None) -> list[float]:
    """The turn's numbers, each with a missing flag; with the next exchange of the dialogue, how
    similar its request is to this one and how soon it came (what the rephrase signal reads)."""
    def one(k):
        v = f.get(k)
        return (0.0, 1.0) if v is None else (float(v), 0.0)

    a, am = one("asr_confidence")
    n, nm = one("nlu_confidence")
    g, gm = one("gap_s")
    b, bm = one("barge_in")
    sim, simm = (text_similarity(text, nxt.user), 0.0) if nxt is not None else (0.0, 1.0)
    ng = nxt.features.get("gap_s") if nxt is not None else None
    ng, ngm = (math.log1p(min(float(ng), 86400.0)), 0.0) if ng is not None else (0.0, 1.0)
    return [math.log1p(len(text.split())), a, am, n, nm, math.log1p(min(g, 86400.0)), gm, min(b, 1.0), bm, sim, simm, ng, ngm]


FEEDBACK_CAT = CATEGORICAL.index("feedback")
BARGE_IN = (7, 8)  # value and missing flag in the numeric row


def drop_feedback(batch: list[list[Encoded]], rng: random.Random, rate: float) -> list[list[Encoded]]:
    """Hide the explicit feedback and barge-in of a ``rate`` share of turns (as if not logged), so the
    model also learns what text and context say, and still labels logs without feedback."""
    if rate <= 0:
        return batch
    out = []
    for d in batch:
        row = []
        for e in d:
            if rng.random() < rate:
                cats, nums = list(e.cats), list(e.nums)
                cats[FEEDBACK_CAT] = 0
                nums[BARGE_IN[0]], nums[BARGE_IN[1]] = 0.0, 1.0
                e = replace(e, cats=cats, nums=nums)
            row.append(e)
        out.append(row)
    return out


def exchange_texts(dialogue: Dialogue, mode: str) -> list[tuple[str, str]]:
    """(user text, reply text) of each exchange as the model reads it in ``mode``."""
    if mode == "online":
        return [(e.user, dialogue.exchanges[t - 1].system if t else "") for t, e in enumerate(dialogue.exchanges)]
    return [(e.user, e.system) for e in dialogue.exchanges]


def _features(dialogue: Dialogue, t: int, mode: str) -> dict:
    f = dialogue.exchanges[t].features
    if mode != "online":
        return f
    prev = dialogue.exchanges[t - 1].features if t else {}
    return {k: v for k, v in f.items() if k not in RESPONSE_FEATURES} | {k: prev[k] for k in RESPONSE_FEATURES if k in prev}


def encode_dialogues(dialogues: list[Dialogue], tokenizer, vocab: Vocab, *, mode: str = "offline", vectors=None) -> list[list[Encoded]]:
    """The dialogues' exchanges as :class:`Encoded`, in ``mode``; with ``vectors`` (the user and reply
    sentence vectors of every exchange, in order) no text is tokenised."""
    cat_ix = {c: {v: i for i, v in enumerate(vals)} for c, vals in vocab.categories.items()}
    intent_ix = {v: i for i, v in enumerate(vocab.intents)}
    tag_ix = {v: i for i, v in enumerate(vocab.tags)}
    sat_ix = {v: i for i, v in enumerate(vocab.satisfaction)}
    dl_ix = {v: i for i, v in enumerate(vocab.dialogue_labels)}
    pairs = [p for d in dialogues for p in exchange_texts(d, mode)]
    if not pairs:
        return [[] for _ in dialogues]
    words = [u.split() for u, _ in pairs]
    if vectors is None:
        u = tokenizer(words, is_split_into_words=True, truncation=True, max_length=MAX_USER_TOKENS)
        r = tokenizer([r for _, r in pairs], truncation=True, max_length=MAX_SYSTEM_TOKENS)
    out, k = [], 0
    for d in dialogues:
        dl = dl_ix.get(str(d.label), IGNORE) if d.label is not None else IGNORE
        enc = []
        for t, e in enumerate(d.exchanges):
            if vectors is None:
                wid = u.word_ids(k)
                first = [w if w is not None and (j == 0 or wid[j - 1] != w) else -1 for j, w in enumerate(wid)]
                ids, rids, uv, rv = u["input_ids"][k], r["input_ids"][k], None, None
            else:
                first, ids, rids, uv, rv = [], [], [], vectors[0][k], vectors[1][k]
            lab = e.labels
            tags = [IGNORE] * len(words[k])
            if "slots" in lab and vectors is None:
                tags = _bio(words[k], lab["slots"], tag_ix)
            f = _features(d, t, mode)
            nxt = d.exchanges[t + 1] if mode == "offline" and t + 1 < len(d.exchanges) else None
            enc.append(Encoded(
                ids, first, rids,
                [cat_ix[c].get(f.get(c), 0) for c in CATEGORICAL], _numeric(e.user, f, nxt),
                float(lab["defect"]) if "defect" in lab else math.nan,
                float(lab["goal_success"]) if "goal_success" in lab else math.nan,
                lab.get("goal"), intent_ix.get(lab.get("intent"), IGNORE), tags,
                sat_ix.get(lab.get("satisfaction"), IGNORE), dl, u_vec=uv, r_vec=rv))
            k += 1
        out.append(enc)
    return out


def _bio(words: list[str], slots: list[dict], tag_ix: dict) -> list[int]:
    tags = [tag_ix["O"]] * len(words)
    for s in slots:
        span = align_slot(words, s["value"])
        b, i = tag_ix.get(f"B-{s['name']}"), tag_ix.get(f"I-{s['name']}")
        if span is None or b is None:
            return [IGNORE] * len(words)  # a slot we cannot place: the turn teaches no tagging
        tags[span[0]] = b
        for j in range(span[0] + 1, span[1]):
            tags[j] = i
    return tags


def corrupt(batch: list[list[Encoded]], kinds: tuple[str, ...], rng: random.Random, rate: float = 0.5) -> list[list[Encoded]]:
    """Each dialogue, with probability ``rate``, gets one corruption of ``kinds``; corrupted turns
    have ``corrupted=1``: a reply swapped in from another dialogue (a synthetic defect, as in the
    seed), two neighbouring turns swapped, or a turn of another dialogue inserted."""
    out = []
    for n, d in enumerate(batch):
        d = [replace(e, corrupted=0.0) for e in d]
        others = [e for m, o in enumerate(batch) if m != n for e in o]
        kind = rng.choice(kinds) if kinds and others and rng.random() < rate else None
        if kind == "shuffle" and len(d) < 2:
            kind = "swap"
        if kind == "swap":
            t, o = rng.randrange(len(d)), rng.choice(others)
            status = CATEGORICAL.index("status")
            cats = list(d[t].cats)
            cats[status] = o.cats[status]  # the reply's status travels with it
            d[t] = replace(d[t], r_ids=o.r_ids, r_vec=o.r_vec, cats=cats, corrupted=1.0)
        elif kind == "shuffle":
            t = rng.randrange(len(d) - 1)
            d[t], d[t + 1] = replace(d[t + 1], corrupted=1.0), replace(d[t], corrupted=1.0)
        elif kind == "insert":
            d.insert(rng.randrange(len(d) + 1), replace(rng.choice(others), corrupted=1.0))
        out.append(d)
    return out


def collate(batch: list[list[Encoded]], pad_id: int) -> dict:
    """Tensors for a batch of encoded dialogues (flattened in order)."""
    import torch

    flat = [e for d in batch for e in d]
    n = len(flat)

    def pad(seqs, width):
        ids = np.full((len(seqs), width), pad_id, np.int64)
        mask = np.zeros((len(seqs), width), np.int64)
        for i, s in enumerate(seqs):
            ids[i, : len(s)] = s
            mask[i, : len(s)] = 1
        return torch.from_numpy(ids), torch.from_numpy(mask)

    if flat[0].u_vec is not None:
        text = {"u_vec": torch.from_numpy(np.stack([e.u_vec for e in flat]).astype(np.float32)),
                "r_vec": torch.from_numpy(np.stack([e.r_vec for e in flat]).astype(np.float32))}
        u_ids = torch.zeros((n, 1), dtype=torch.long)
    else:
        u_ids, u_mask = pad([e.u_ids for e in flat], max(len(e.u_ids) for e in flat))
        r_ids, r_mask = pad([e.r_ids for e in flat], max(len(e.r_ids) for e in flat))
        text = {"u_ids": u_ids, "u_mask": u_mask, "r_ids": r_ids, "r_mask": r_mask}
    width = max(len(d) for d in batch)
    pos = np.full((len(batch), width), -1, np.int64)
    same = np.full(n, math.nan, np.float32)
    k = 0
    for b, d in enumerate(batch):
        for t, e in enumerate(d):
            pos[b, t] = k
            if t > 0 and e.goal is not None and d[t - 1].goal is not None and not e.corrupted and not d[t - 1].corrupted:
                same[k] = float(e.goal == d[t - 1].goal)
            k += 1
    tok_tags = np.full(u_ids.shape, IGNORE, np.int64)
    for i, e in enumerate(flat):
        for j, w in enumerate(e.word_of_token):
            if w >= 0 and w < len(e.tags):
                tok_tags[i, j] = e.tags[w]
    f = torch.tensor
    return {**text,
            "cats": f([e.cats for e in flat], dtype=torch.long), "nums": f([e.nums for e in flat], dtype=torch.float32),
            "turn_pos": torch.from_numpy(pos),
            "y_defect": f([e.defect for e in flat], dtype=torch.float32), "y_goal_success": f([e.goal_success for e in flat], dtype=torch.float32),
            "y_corrupted": f([e.corrupted for e in flat], dtype=torch.float32), "y_same_goal": torch.from_numpy(same),
            "y_intent": f([e.intent for e in flat], dtype=torch.long), "y_slots": torch.from_numpy(tok_tags),
            "y_satisfaction": f([e.satisfaction for e in flat], dtype=torch.long),
            "y_dialogue_label": f([d[0].dialogue_label for d in batch], dtype=torch.long)}
