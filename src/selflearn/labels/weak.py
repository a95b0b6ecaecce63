"""From the store's logs to dialogues with *weak* labels: what the feedback signals alone say.

No annotation and no truth: a turn is a defect when its defect score says so; a quick similar retry
(the signals' rephrase rule) continues the goal of the turn before it; a goal succeeded when its last
turn was not a defect; a goal whose last turn's action succeeded gives its intent and slots are what the assistant understood on that last
turn, carried back to the failed attempts before it (when each slot value can be found, perhaps
misheard, in what the attempt heard: the tagger learns the span, the value stays the one that worked).
These labels are the fine-tuning targets of the label model and, evaluated as they are, the
"feedback heuristics alone" baseline.
"""

from __future__ import annotations

import json

from rapidfuzz import fuzz

from ..signals import DEFECT_AT, SignalConfig, compute_signals
from ..store.store import Store
from .dialogues import Dialogue, Exchange

__all__ = ["store_dialogues", "align_slot", "DEFECT_AT"]

ALIGN_MIN = 80.0  # rapidfuzz ratio a heard span needs to take a slot value


def align_slot(words: list[str], value: str) -> tuple[int, int] | None:
    """The word span [start, end) of ``words`` that best matches ``value`` (exact first, then the
    best fuzzy span of about the same length scoring at least ALIGN_MIN), or None."""
    v = value.split()
    if not v or not words:
        return None
    n = len(v)
    for s in range(len(words) - n + 1):
        if words[s : s + n] == v:
            return s, s + n
    best, span = ALIGN_MIN, None
    for length in {max(1, n - 1), n, n + 1}:
        for s in range(len(words) - length + 1):
            r = fuzz.ratio(" ".join(words[s : s + length]), value)
            if r > best:
                best, span = r, (s, s + length)
    return span


def _slots_json(slots) -> list[dict]:
    if isinstance(slots, str):
        try:
            slots = json.loads(slots)
        except ValueError:
            return []
    return [{"name": str(s["name"]), "value": str(s["value"])} for s in slots or [] if isinstance(s, dict) and s.get("name") and s.get("value")]


def store_dialogues(store: Store, *, signals: SignalConfig | None = None, weak_labels: bool = True, limit: int | None = None) -> list[Dialogue]:
    """The store's sessions as dialogues, with features and (``weak_labels``) the signals' labels."""
    compute_signals(store, signals)
    con = store.reader()
    lim = f"WHERE session_id IN (SELECT DISTINCT session_id FROM turns ORDER BY session_id LIMIT {int(limit)})" if limit else ""
    cur = con.execute(
        f"""SELECT t.session_id, t.user_id, t.turn_index, t.asr_text, coalesce(t.response_text, '') AS response_text, t.domain, t.intent,
                   t.response_status, t.device_type, t.asr_confidence, t.nlu_confidence, t.barge_in, t.explicit_feedback,
                   epoch(t.ts) - epoch(lag(t.ts) OVER (PARTITION BY t.session_id ORDER BY t.turn_index)) AS gap_s,
                   CAST(t.slots AS VARCHAR) AS slots, s.defect_score, s.rephrase_candidate
            FROM (SELECT * FROM turns {lim}) t JOIN signals s USING (session_id, turn_index)
            ORDER BY t.session_id, t.turn_index"""
    )
    names = [d[0] for d in cur.description]
    sessions: dict[str, list[dict]] = {}
    for row in cur.fetchall():
        r = dict(zip(names, row))
        sessions.setdefault(r["session_id"], []).append(r)
    return [_dialogue(sid, rows, weak_labels) for sid, rows in sessions.items()]


def _dialogue(sid: str, rows: list[dict], weak_labels: bool) -> Dialogue:
    exchanges = []
    for r in rows:
        feats = {"domain": r["domain"], "intent": r["intent"], "status": r["response_status"], "device_type": r["device_type"],
                 "asr_confidence": r["asr_confidence"], "nlu_confidence": r["nlu_confidence"], "barge_in": int(bool(r["barge_in"])),
                 "feedback": r["explicit_feedback"],
                 "gap_s": None if r["gap_s"] is None else max(0.0, float(r["gap_s"]))}
        exchanges.append(Exchange(r["asr_text"] or "", r["response_text"] or "", {k: v for k, v in feats.items() if v is not None}, {}, r["turn_index"]))
    if weak_labels:
        _label(rows, exchanges)
    return Dialogue(sid, exchanges, user=rows[0]["user_id"])


def _label(rows: list[dict], ex: list[Exchange]) -> None:
    goal = 0
    segments: list[list[int]] = []
    for i, r in enumerate(rows):
        if i == 0 or not rows[i - 1]["rephrase_candidate"]:
            goal += 1
            segments.append([])
        segments[-1].append(i)
        ex[i].labels["defect"] = int(r["defect_score"] >= DEFECT_AT)
        ex[i].labels["goal"] = goal
    for seg in segments:
        last = rows[seg[-1]]
        # the goal ended without a defect (a request the assistant rightly cannot serve is not one);
        # its intent and slots are the assistant's reading only where the action succeeded
        success = int(last["defect_score"] < DEFECT_AT)
        slots = _slots_json(last["slots"])
        for i in seg:
            ex[i].labels["goal_success"] = success
            if not success or last["response_status"] != "success" or not last["intent"]:
                continue
            ex[i].labels["intent"] = last["intent"]
            words = (rows[i]["asr_text"] or "").split()
            spans = [align_slot(words, s["value"]) for s in slots]
            if all(spans):  # every value found (maybe misheard) in what this turn heard: the model can tag it
                ex[i].labels["slots"] = slots
