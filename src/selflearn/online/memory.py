"""What the online rewriter remembers: the global layer (every request seen, how often it worked,
what it meant, in which contexts; a faiss index of the ones that work) and the personal layer
(each user's own requests, which of them worked for them, when), updated turn by turn."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import InvalidInputError, explain
from ..models.directory import replace_dir
from ..text import normalise

from ..signals.similarity import text_similarity

__all__ = ["GlobalMemory", "PersonalMemory", "meaning_key", "hour_bucket", "turn_success", "text_similarity", "epoch_seconds", "insertion", "row_turn"]

HOUR_BUCKETS = 4  # night, morning, afternoon, evening


def meaning_key(intent: str | None, slots) -> str:
    """What the assistant understood, as one comparable key: intent plus sorted type=value slots."""
    if isinstance(slots, str):
        try:
            slots = json.loads(slots)
        except ValueError:
            slots = []
    parts = sorted(f"{s.get('name')}={s.get('value')}" for s in (slots or []) if isinstance(s, dict))
    return f"{intent or 'none'}|{';'.join(parts)}"


def hour_bucket(hour: int) -> int:
    return min(HOUR_BUCKETS - 1, max(0, int(hour)) * HOUR_BUCKETS // 24)


def turn_success(status: str | None, barge_in: bool, explicit: str | None) -> bool:
    """A turn that worked as far as its own log shows (the next turn can still reveal a rephrase)."""
    return status == "success" and not barge_in and explicit != "negative"


@dataclass
class GlobalMemory:
    """Per distinct request: turns, successes, meaning, and the contexts of its successes.
    Candidates (requests that usually work) sit in a faiss inner-product index."""

    texts: list[str]
    turns: np.ndarray  # int, per text
    successes: np.ndarray  # int, per text
    meaning: np.ndarray  # int index into meanings: what it meant when it worked, -1 when it never did
    meaning_heard: np.ndarray  # int index into meanings: what the assistant most often understood from it
    meanings: list[str]
    device_types: list[str]
    locations: list[str]
    device_share: np.ndarray  # (texts, device types) share of its successes
    screen_share: np.ndarray  # (texts,) share of successes on a device with a screen
    hour_share: np.ndarray  # (texts, 4)
    location_share: np.ndarray  # (texts, locations)
    candidates: np.ndarray  # text ids in the index, in index order
    vectors: np.ndarray  # (candidates, dim) unit rows
    row: dict = field(default_factory=dict)
    fixes: np.ndarray | None = None  # int, per text: its failures a retry fixed with another meaning (0 in older models)
    privacy: dict | None = None  # how it was released under DP (online.private_global); None: k-anonymous, exact counts

    def __post_init__(self):
        self.row = {t: i for i, t in enumerate(self.texts)}
        if self.fixes is None:
            self.fixes = np.zeros(len(self.texts), np.int64)
        self._phonetic: list[str] | None = None  # the candidates' metaphone codes, made on first phonetic search
        self.set_vectors(self.vectors)

    def meaning_of(self, text_id: int) -> str | None:
        """What request ``text_id`` means when it works; None when it never worked."""
        return self.meanings[self.meaning[text_id]] if self.meaning[text_id] >= 0 else None

    def set_vectors(self, vectors: np.ndarray) -> None:
        """The candidates' vectors (in ``candidates`` order), and the faiss index over them."""
        import faiss

        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.index = faiss.IndexFlatIP(self.vectors.shape[1] if len(self.vectors) else 384)
        if len(self.vectors):
            self.index.add(self.vectors)
        self.vector_of = {int(t): k for k, t in enumerate(self.candidates)}

    def phonetic_search(self, q: str, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Text ids and phonetic similarities (0-1) of the ``k`` candidates that sound most like
        ``q``: edit similarity of the words' metaphone codes ("whats the whether" sounds like
        "what's the weather" however far apart they are in meaning space)."""
        from rapidfuzz import fuzz, process

        from .features import phonetic_key

        if k <= 0 or not len(self.candidates):
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        if self._phonetic is None:
            self._phonetic = [phonetic_key(self.texts[i]) for i in self.candidates]
        got = process.extract(phonetic_key(q), self._phonetic, scorer=fuzz.ratio, limit=k)
        return (np.array([self.candidates[j] for _, _, j in got], np.int64),
                np.array([score / 100 for _, score, _ in got], np.float32))

    def vector(self, text: str) -> np.ndarray | None:
        """The indexed vector of ``text``, or None when it is not a candidate."""
        k = self.vector_of.get(self.row.get(text, -1))
        return None if k is None else self.vectors[k]

    def has_vector(self, text: str) -> bool:
        return self.vector_of.get(self.row.get(text, -1)) is not None

    def success_share(self, text: str) -> float | None:
        """How often ``text`` worked as heard (successes / turns); None for a request it lacks."""
        r = self.row.get(text)
        return None if r is None or not self.turns[r] else float(self.successes[r] / self.turns[r])

    def search(self, qv: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Text ids and cosines of the ``k`` nearest candidates."""
        if self.index.ntotal == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        scores, ids = self.index.search(qv.reshape(1, -1), min(k, self.index.ntotal))
        ok = ids[0] >= 0
        return self.candidates[ids[0][ok]], scores[0][ok]

    def save(self, directory: Path) -> None:
        import faiss

        directory.mkdir(parents=True, exist_ok=True)
        cols = {"text": self.texts, "turns": self.turns, "successes": self.successes, "fixes": self.fixes, "meaning": self.meaning, "meaning_heard": self.meaning_heard,
                "screen_share": self.screen_share, "hour_share": list(self.hour_share),
                "device_share": list(self.device_share), "location_share": list(self.location_share)}
        meta = {b"selflearn.global": json.dumps({"meanings": self.meanings, "device_types": self.device_types,
                                                 "locations": self.locations, "candidates": self.candidates.tolist(), "privacy": self.privacy}).encode()}
        pq.write_table(pa.table(cols).replace_schema_metadata(meta), str(directory / "entries.parquet"))
        faiss.write_index(self.index, str(directory / "index.faiss"))

    @classmethod
    def load(cls, directory: Path) -> "GlobalMemory":
        import faiss

        try:
            t = pq.read_table(str(directory / "entries.parquet"))
            index = faiss.read_index(str(directory / "index.faiss"))
        except (OSError, RuntimeError, pa.ArrowInvalid) as exc:
            raise InvalidInputError(explain(str(directory), f"must hold entries.parquet and index.faiss ({exc})", "train it with `selflearn online train`")) from exc
        meta = json.loads(t.schema.metadata[b"selflearn.global"])
        vectors = index.reconstruct_n(0, index.ntotal) if index.ntotal else np.zeros((0, 384), np.float32)

        def mat(name, width):
            v = t.column(name).to_pylist()
            return np.array(v, dtype=np.float32).reshape(len(v), width)

        return cls(t.column("text").to_pylist(), t.column("turns").to_numpy(), t.column("successes").to_numpy(),
                   t.column("meaning").to_numpy(), t.column("meaning_heard").to_numpy(), meta["meanings"], meta["device_types"], meta["locations"],
                   mat("device_share", len(meta["device_types"])), t.column("screen_share").to_numpy(),
                   mat("hour_share", HOUR_BUCKETS), mat("location_share", len(meta["locations"])),
                   np.array(meta["candidates"], dtype=np.int64), vectors,
                   fixes=t.column("fixes").to_numpy() if "fixes" in t.column_names else None, privacy=meta.get("privacy"))


class _Pending(NamedTuple):
    """A turn waiting for the user's next turn to settle whether it worked."""

    user: str
    session: str
    ts: float
    text: str
    rewrite: str | None
    status: str | None
    barge_in: bool
    explicit: str | None
    meaning: str
    chain: str | None = None  # the request that started the retry chain this turn belongs to

    def worked_alone(self) -> bool:
        return turn_success(self.status, self.barge_in, self.explicit)


class PersonalMemory:
    """Each user's history, updated one logged turn at a time (``observe``), no rebuild.

    Per user and request: attempts, successes, last time, last meaning; per user and
    (request, rewrite): how often the rewrite was served and failed; per user and (request,
    what worked): how often this user's own retries turned a failing request into one that
    worked (their personal rephrases: the Wilkerson case). A turn's outcome is settled when the
    user's next turn arrives: a quick similar retry in the same session marks it failed,
    otherwise its own status, barge-in and feedback decide (as in the signals)."""

    def __init__(self, encoder=None, *, known=None, window_s: float = 45.0, min_similarity: float = 0.35):
        self.encoder = encoder
        self.known = known or (lambda text: False)  # texts with a vector elsewhere (the global index)
        self.window_s = window_s
        self.min_similarity = min_similarity
        self.users: dict[str, dict[str, list]] = {}  # user -> text -> [attempts, successes, last_ts, meaning]
        self.served: dict[str, dict[tuple[str, str], list]] = {}  # user -> (text, rewrite) -> [served, failed]
        self.fixes: dict[str, dict[str, dict[str, int]]] = {}  # user -> failing request -> what worked after retrying -> times
        self.pending: dict[str, _Pending] = {}
        self.vectors: dict[str, np.ndarray] = {}  # personal texts the global index lacks
        self.observed = 0

    # -- updates ---------------------------------------------------------------
    def observe(self, turn: dict) -> None:
        """Take one logged turn (the interaction-log schema). Never raises on a partial record:
        a turn without user, session, text or timestamp is ignored."""
        try:
            utt = turn["utterance"]
            feedback, nlu = turn.get("feedback") or {}, turn.get("nlu") or {}
            cur = _Pending(turn["user_id"], turn["session_id"], epoch_seconds(turn["timestamp"]), normalise(utt["text"]),
                           normalise(utt["rewrite"]) if utt.get("rewrite") else None,
                           (turn.get("response") or {}).get("status"), bool(feedback.get("barge_in")), feedback.get("explicit"),
                           meaning_key(nlu.get("intent"), nlu.get("slots")))
        except (KeyError, TypeError, ValueError, AttributeError):
            return
        self.observed += 1
        prev = self.pending.pop(cur.user, None)
        if prev is not None:
            retried = prev.session == cur.session and cur.ts - prev.ts <= self.window_s and text_similarity(prev.text, cur.text) >= self.min_similarity
            self._settle(prev, success=not retried and prev.worked_alone())
            if retried:
                cur = cur._replace(chain=prev.chain or prev.text)
        self.pending[cur.user] = cur

    def catch_up(self, user: str, now: float) -> None:
        """Settle ``user``'s pending turn once ``now`` is past the retry window: no turn can mark
        it as retried any more, so its own fields decide, as its next turn would (a fix made at
        the end of one session is known at the start of the next)."""
        prev = self.pending.get(user)
        if prev is not None and now - prev.ts > self.window_s:
            del self.pending[user]
            self._settle(prev, success=prev.worked_alone())

    def flush(self) -> None:
        """Settle every pending turn on its own fields (end of a log)."""
        for prev in self.pending.values():
            self._settle(prev, success=prev.worked_alone())
        self.pending.clear()

    def _settle(self, t: _Pending, *, success: bool) -> None:
        user, ts, text, rewrite, meaning = t.user, t.ts, t.text, t.rewrite, t.meaning
        if rewrite:  # what ran was the rewrite; the request's own record counts only when it ran as it was
            s = self.served.setdefault(user, {}).setdefault((text, rewrite), [0, 0])
            s[0] += 1
            s[1] += not success
        ran = rewrite or text
        e = self.users.setdefault(user, {}).setdefault(ran, [0, 0, ts, None])
        e[0] += 1
        e[1] += success
        e[2] = ts
        if success:
            e[3] = meaning
            if t.chain and t.chain != ran:
                f = self.fixes.setdefault(user, {}).setdefault(t.chain, {})
                f[ran] = f.get(ran, 0) + 1
            if self.encoder is not None and ran not in self.vectors and not self.known(ran):
                self.vectors[ran] = self.encoder.encode([ran])[0]

    # -- reads -----------------------------------------------------------------
    def history(self, user: str) -> dict[str, list]:
        return self.users.get(user, {})

    def served_stats(self, user: str, text: str, rewrite: str) -> tuple[int, int]:
        s = self.served.get(user, {}).get((text, rewrite))
        return (s[0], s[1]) if s else (0, 0)

    def phrase_fixes(self, user: str) -> dict[str, dict[tuple[str, ...], int]]:
        """The words this user inserted when fixing a request, by the word they followed, with how
        often: a user who fixed 'weather in wilkerson' as 'weather in wilkerson ohio' has
        {'wilkerson': {('ohio',): 1}} — what they mean by that name in any request."""
        out: dict[str, dict[tuple[str, ...], int]] = {}
        for q, got in self.fixes.get(user, {}).items():
            for c, n in got.items():
                ins = insertion(q.split(), c.split())
                if ins is not None:
                    d = out.setdefault(ins[0], {})
                    d[ins[1]] = d.get(ins[1], 0) + n
        return out

    def fixes_of(self, user: str, text: str) -> dict[str, int]:
        """What worked, and how often, when ``user`` retried after ``text`` failed."""
        return self.fixes.get(user, {}).get(text, {})

    def forget(self, user: str) -> bool:
        """Delete everything remembered about ``user``, and the vectors of texts only they said."""
        found = user in self.users or user in self.served or user in self.fixes
        theirs = set(self.users.get(user, {})) | {t for pair in self.served.get(user, {}) for t in pair}
        theirs |= {t for a, got in self.fixes.get(user, {}).items() for t in (a, *got)}
        for d in (self.users, self.served, self.fixes, self.pending):
            d.pop(user, None)
        others = {t for h in self.users.values() for t in h} | {t for d in self.served.values() for pair in d for t in pair}
        others |= {t for d in self.fixes.values() for a, got in d.items() for t in (a, *got)}
        for text in theirs - others:
            self.vectors.pop(text, None)
        return found

    # -- persistence -----------------------------------------------------------
    def save(self, directory: Path) -> None:
        """The whole directory is written beside and moved into place in one rename (a reader never
        sees the history of one save with the fixes of another)."""
        rows = [(u, t, e[0], e[1], e[2], e[3]) for u, h in self.users.items() for t, e in h.items()]
        hist = pa.table({"user_id": [r[0] for r in rows], "text": [r[1] for r in rows], "attempts": pa.array([r[2] for r in rows], pa.int64()),
                         "successes": pa.array([r[3] for r in rows], pa.int64()), "last_ts": pa.array([r[4] for r in rows], pa.float64()),
                         "meaning": pa.array([r[5] for r in rows], pa.string())})
        srows = [(u, a, b, s[0], s[1]) for u, d in self.served.items() for (a, b), s in d.items()]
        served = pa.table({"user_id": [r[0] for r in srows], "text": [r[1] for r in srows], "rewrite": [r[2] for r in srows],
                           "served": pa.array([r[3] for r in srows], pa.int64()), "failed": pa.array([r[4] for r in srows], pa.int64())})
        frows = [(u, a, b, n) for u, d in self.fixes.items() for a, got in d.items() for b, n in got.items()]
        fixes = pa.table({"user_id": [r[0] for r in frows], "text": [r[1] for r in frows], "worked": [r[2] for r in frows],
                          "times": pa.array([r[3] for r in frows], pa.int64())})
        texts = list(self.vectors)
        vecs = pa.table({"text": texts, "vector": [v.tolist() for v in self.vectors.values()]})
        with replace_dir(Path(directory)) as tmp:
            for name, table in (("history", hist), ("served", served), ("fixes", fixes), ("vectors", vecs)):
                pq.write_table(table, str(tmp / f"{name}.parquet"))
            (tmp / "config.json").write_text(json.dumps({"window_s": self.window_s, "min_similarity": self.min_similarity}) + "\n")

    @classmethod
    def empty_like(cls, directory: Path, encoder=None, *, known=None) -> "PersonalMemory":
        """A fresh personal layer with the retry rule (window, similarity) of the one saved in
        ``directory``: what a replay of other logs through the same model needs."""
        try:
            cfg = json.loads((directory / "config.json").read_text())
        except (OSError, ValueError) as exc:
            raise InvalidInputError(explain(str(directory), f"must hold a saved personal layer ({exc})", "train it with `selflearn online train`")) from exc
        return cls(encoder, known=known, window_s=cfg["window_s"], min_similarity=cfg["min_similarity"])

    @classmethod
    def load(cls, directory: Path, encoder=None, *, known=None) -> "PersonalMemory":
        m = cls.empty_like(directory, encoder, known=known)
        try:
            hist = pq.read_table(str(directory / "history.parquet")).to_pylist()
            served = pq.read_table(str(directory / "served.parquet")).to_pylist()
            fixes = pq.read_table(str(directory / "fixes.parquet")).to_pylist()
            vecs = pq.read_table(str(directory / "vectors.parquet")).to_pylist()
        except (OSError, ValueError, pa.ArrowInvalid) as exc:
            raise InvalidInputError(explain(str(directory), f"must hold a saved personal layer ({exc})", "train it with `selflearn online train`")) from exc
        for r in hist:
            m.users.setdefault(r["user_id"], {})[r["text"]] = [r["attempts"], r["successes"], r["last_ts"], r["meaning"]]
        for r in served:
            m.served.setdefault(r["user_id"], {})[(r["text"], r["rewrite"])] = [r["served"], r["failed"]]
        for r in fixes:
            m.fixes.setdefault(r["user_id"], {}).setdefault(r["text"], {})[r["worked"]] = r["times"]
        m.vectors = {r["text"]: np.array(r["vector"], dtype=np.float32) for r in vecs}
        return m


def row_turn(r: dict) -> dict:
    """A history row (``load_history``) back in the interaction-log shape the personal layer observes."""
    utt = {"text": r["text"]}
    if r["rewrite"]:
        utt["rewrite"] = r["rewrite"]
    return {"user_id": r["user_id"], "session_id": r["session_id"], "timestamp": r["ts"], "utterance": utt,
            "response": {"status": r["response_status"]}, "feedback": {"barge_in": r["barge_in"], "explicit": r["explicit_feedback"]},
            "nlu": {"intent": r["intent"], "slots": r["slots"]}}


def insertion(a: list[str], b: list[str], max_words: int = 3) -> tuple[str, tuple[str, ...]] | None:
    """When ``b`` is ``a`` with 1 to ``max_words`` words inserted right after some word of ``a``
    (and nothing else changed): (that word, the inserted words); else None."""
    from difflib import SequenceMatcher

    ops = [o for o in SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes() if o[0] != "equal"]
    if len(ops) != 1 or ops[0][0] != "insert":
        return None
    _, i1, _, j1, j2 = ops[0]
    if i1 == 0 or not 1 <= j2 - j1 <= max_words:
        return None
    return a[i1 - 1], tuple(b[j1:j2])


def epoch_seconds(ts) -> float:
    if isinstance(ts, (int, float)):
        return float(ts)
    if isinstance(ts, datetime):
        return ts.timestamp()
    return datetime.fromisoformat(str(ts).replace("Z", "+00:00")).timestamp()
