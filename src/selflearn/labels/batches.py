"""Dialogues → tensors for the label network, and the corruptions of self-supervised pretraining.

Each exchange is encoded once (:class:`Encoded`: token ids, categorical and numerical features,
targets); a batch is a list of dialogues, each a list of Encoded, flattened dialogue by dialogue
so that the network's ``turn_pos`` indexes them in order."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, replace

import numpy as np

from ..signals.similarity import text_similarity
from .dialogues import CATEGORICAL, Dialogue
from .weak import align_slot

__all__ = ["Vocab", "Encoded", "encode_dialogues", "collate", "corrupt", "drop_feedback", "CORRUPTIONS", "IGNORE"]

IGNORE = -100
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
        return cls({c: ["<unk>"] + [v for v, n in cnt.most_common(max_values) if n >= min_count] for c, cnt in cats.items()},
                   sorted(intents), ["O"] + [f"{p}-{n}" for n in sorted(names) for p in ("B", "I")],
                   sorted(sats), sorted(dls), {k: sorted(v) for k, v in sorted(values.items())})

    def to_dict(self) -> dict:
        return self.__dict__.copy()


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


def encode_dialogues(dialogues: list[Dialogue], tokenizer, vocab: Vocab) -> list[list[Encoded]]:
    cat_ix = {c: {v: i for i, v in enumerate(vals)} for c, vals in vocab.categories.items()}
    intent_ix = {v: i for i, v in enumerate(vocab.intents)}
    tag_ix = {v: i for i, v in enumerate(vocab.tags)}
    sat_ix = {v: i for i, v in enumerate(vocab.satisfaction)}
    dl_ix = {v: i for i, v in enumerate(vocab.dialogue_labels)}
    flat = [e for d in dialogues for e in d.exchanges]
    if not flat:
        return [[] for _ in dialogues]
    words = [e.user.split() for e in flat]
    u = tokenizer(words, is_split_into_words=True, truncation=True, max_length=MAX_USER_TOKENS)
    r = tokenizer([e.system for e in flat], truncation=True, max_length=MAX_SYSTEM_TOKENS)
    out, k = [], 0
    for d in dialogues:
        dl = dl_ix.get(str(d.label), IGNORE) if d.label is not None else IGNORE
        enc = []
        for t, e in enumerate(d.exchanges):
            wid = u.word_ids(k)
            first = [w if w is not None and (j == 0 or wid[j - 1] != w) else -1 for j, w in enumerate(wid)]
            lab = e.labels
            tags = [IGNORE] * len(words[k])
            if "slots" in lab:
                tags = _bio(words[k], lab["slots"], tag_ix)
            enc.append(Encoded(
                u["input_ids"][k], first, r["input_ids"][k],
                [cat_ix[c].get(e.features.get(c), 0) for c in CATEGORICAL], _numeric(e.user, e.features, d.exchanges[t + 1] if t + 1 < len(d.exchanges) else None),
                float(lab["defect"]) if "defect" in lab else math.nan,
                float(lab["goal_success"]) if "goal_success" in lab else math.nan,
                lab.get("goal"), intent_ix.get(lab.get("intent"), IGNORE), tags,
                sat_ix.get(lab.get("satisfaction"), IGNORE), dl))
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
            d[t] = replace(d[t], r_ids=o.r_ids, cats=cats, corrupted=1.0)
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

    u_ids, u_mask = pad([e.u_ids for e in flat], max(len(e.u_ids) for e in flat))
    r_ids, r_mask = pad([e.r_ids for e in flat], max(len(e.r_ids) for e in flat))
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
    return {"u_ids": u_ids, "u_mask": u_mask, "r_ids": r_ids, "r_mask": r_mask,
            "cats": f([e.cats for e in flat], dtype=torch.long), "nums": f([e.nums for e in flat], dtype=torch.float32),
            "turn_pos": torch.from_numpy(pos),
            "y_defect": f([e.defect for e in flat], dtype=torch.float32), "y_goal_success": f([e.goal_success for e in flat], dtype=torch.float32),
            "y_corrupted": f([e.corrupted for e in flat], dtype=torch.float32), "y_same_goal": torch.from_numpy(same),
            "y_intent": f([e.intent for e in flat], dtype=torch.long), "y_slots": torch.from_numpy(tok_tags),
            "y_satisfaction": f([e.satisfaction for e in flat], dtype=torch.long),
            "y_dialogue_label": f([d[0].dialogue_label for d in batch], dtype=torch.long)}
