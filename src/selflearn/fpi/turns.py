"""The store's turns as failure-point inputs: each turn with its component traces (ASR confidence
and n-best, NLU confidence and top hypotheses, entity-resolution scores and candidates, result
status), its feedback signals and its dialogue context (the turns before and after it in the
session, and the last turn of its retry chain)."""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field

from ..signals import DEFECT_AT, SignalConfig, compute_signals
from ..store.store import Store
from ..taxonomy import FAILURE_POINTS

__all__ = ["FpiTurn", "store_turns", "CLASSES"]

#: The failure points, pipeline order first; "correct" when no component failed unrecoverably
#: (including turns the assistant recovered from and requests no assistant can serve).
CLASSES = FAILURE_POINTS  # the model predicts one of the pipeline's failure points


@dataclass
class FpiTurn:
    session_id: str
    turn_index: int
    day: str
    device_type: str
    domain: str
    intent: str
    text: str
    response: str
    status: str
    er_status: str
    asr_confidence: float | None
    nbest: list[dict]
    nlu_confidence: float | None
    top_k: list[dict]
    slots: list[dict]
    entities: list[dict]
    barge_in: bool
    feedback: str | None
    prompted: bool
    defect_score: float
    rephrase: bool  # the signals' rephrase rule: the next turn retries this one
    rarity: tuple[float, float, float] = (0.0, 0.0, 0.0)  # words unseen in the logs' successful requests: share, min and mean of log count / log top count
    gap_prev: float | None = None
    gap_next: float | None = None
    user_id: str = ""  # the speaker's pseudonym: the unit of differential privacy
    prev: "FpiTurn | None" = field(default=None, repr=False)
    next: "FpiTurn | None" = field(default=None, repr=False)
    final: "FpiTurn | None" = field(default=None, repr=False)  # last turn of the retry chain this turn starts or continues


def _json(text, default):
    if text is None:
        return default
    try:
        v = json.loads(text)
    except ValueError:
        return default
    return v if isinstance(v, type(default)) else default


def store_turns(store: Store, *, signals: SignalConfig | None = None) -> list[FpiTurn]:
    """Every turn of the store with traces, signals and context links, in session order."""
    compute_signals(store, signals)
    cur = store.reader().execute(
        """SELECT t.session_id, t.user_id, t.turn_index, strftime(t.ts, '%Y-%m-%d') AS day, epoch(t.ts) AS at, t.device_type,
                  coalesce(t.domain, '') AS domain, coalesce(t.intent, '') AS intent, t.asr_text, coalesce(t.response_text, '') AS response,
                  coalesce(t.response_status, '') AS status, coalesce(t.er_status, '') AS er_status, t.asr_confidence,
                  CAST(t.asr_nbest AS VARCHAR) AS nbest, t.nlu_confidence, CAST(t.nlu_top_k AS VARCHAR) AS top_k,
                  CAST(t.slots AS VARCHAR) AS slots, CAST(t.er_entities AS VARCHAR) AS entities, t.barge_in, t.explicit_feedback,
                  t.feedback_prompted, s.defect_score, s.rephrase_candidate
           FROM turns t JOIN signals s USING (session_id, turn_index)
           ORDER BY t.session_id, t.turn_index"""
    )
    names = [d[0] for d in cur.description]
    out: list[FpiTurn] = []
    at: list[float] = []
    for row in cur.fetchall():
        r = dict(zip(names, row))
        out.append(FpiTurn(r["session_id"], r["turn_index"], r["day"], r["device_type"], r["domain"], r["intent"], r["asr_text"] or "",
                           r["response"], r["status"], r["er_status"], r["asr_confidence"], _json(r["nbest"], []), r["nlu_confidence"],
                           _json(r["top_k"], []), _json(r["slots"], []), _json(r["entities"], []), bool(r["barge_in"]),
                           r["explicit_feedback"], bool(r["feedback_prompted"]), float(r["defect_score"]), bool(r["rephrase_candidate"]),
                           user_id=r["user_id"]))
        at.append(float(r["at"]))
    link(out, at)
    word_rarity(out)
    return out


def word_rarity(turns: list[FpiTurn]) -> None:
    """How usual each turn's words are among the requests that worked (signals say not a defect,
    action succeeded), not counting the turn itself: misheard words are rarely among them."""
    ok = [t.defect_score < DEFECT_AT and t.status == "success" for t in turns]
    counts = Counter(w for t, good in zip(turns, ok) if good for w in t.text.lower().split())
    top = math.log1p(max(counts.values(), default=1))
    for t, good in zip(turns, ok):
        words = t.text.lower().split()
        if not words:
            continue
        freq = [counts[w] - (1 if good else 0) for w in words]
        logs = [math.log1p(max(f, 0)) / top for f in freq]  # 0 (unseen) .. 1 (the most usual word)
        t.rarity = (sum(f <= 0 for f in freq) / len(words), min(logs), sum(logs) / len(logs))


def link(turns: list[FpiTurn], at: list[float]) -> None:
    """Set prev/next within each session, the time gaps, and each turn's retry-chain end."""
    for i, t in enumerate(turns):
        if i and turns[i - 1].session_id == t.session_id:
            t.prev, turns[i - 1].next = turns[i - 1], t
            t.gap_prev = turns[i - 1].gap_next = max(0.0, at[i] - at[i - 1])
    for t in reversed(turns):
        t.final = t.next.final if t.rephrase and t.next is not None else t
