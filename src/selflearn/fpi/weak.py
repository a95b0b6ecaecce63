"""Failure points from the logs alone (no annotation, no truth): weak labels a team without an
annotated set can train the model on.

A turn the signals do not call a defect (or a request the assistant rightly cannot serve) is
correct. A defective turn is compared with the end of its retry chain when a retry worked: the same
reading with other entities for the same words is entity resolution; the same reading and the same
entities is the result; another reading is ASR when the words were heard with low confidence or
the retry kept most of the words but they came out different, else NLU. Without a retry that
worked, the traces decide: a low-confidence first turn the user did not retry is a false wake; a
failed action on a confident, fully resolved reading is the result; then ASR, NLU and entity
resolution by their confidences."""

from __future__ import annotations

from dataclasses import dataclass

from .features import relation
from .turns import FpiTurn

__all__ = ["WeakConfig", "weak_failure_point", "weak_failure_points"]


@dataclass(frozen=True)
class WeakConfig:
    defect_at: float = 0.5  # defect score at or above which a turn is a defect (the signals' threshold)
    low_asr: float = 0.7  # ASR confidence below which a misreading is blamed on ASR
    low_nlu: float = 0.6  # NLU confidence below which NLU is blamed
    false_wake_asr: float = 0.45  # a first turn heard below this, not retried, is a false wake
    same_words: float = 0.8  # fuzz ratio above which a retry "kept the words": a different reading is then ASR


def weak_failure_point(t: FpiTurn, c: WeakConfig = WeakConfig()) -> str:
    """The weak failure point of one turn (context links must be set: ``store_turns`` does)."""
    if t.defect_score < c.defect_at or t.status == "unsupported":
        return "correct"
    asr = 1.0 if t.asr_confidence is None else t.asr_confidence
    nlu = 1.0 if t.nlu_confidence is None else t.nlu_confidence
    f = t.final if t.final is not t else None
    if f is not None and f.status == "success" and f.defect_score < c.defect_at:
        rel = relation(t, f)
        if t.intent == f.intent:
            if rel["other_entity_same_value"]:
                return "entity_resolution"
            if rel["same_slot_values"] >= 1.0 and (rel["same_entities"] or not t.entities):
                return "result"
            return "asr" if asr < c.low_asr else "nlu"
        return "asr" if asr < c.low_asr or rel["ratio"] < c.same_words and rel["token_set"] >= c.same_words else "nlu"
    if t.prev is None and not t.rephrase and asr < c.false_wake_asr:
        return "false_wake"
    unresolved = any(isinstance(e, dict) and not e.get("resolved_id") for e in t.entities)
    if t.status not in ("success", "") and not unresolved and nlu >= c.low_nlu and asr >= c.low_asr:
        return "result"
    if asr < c.low_asr:
        return "asr"
    if nlu < c.low_nlu or unresolved:
        return "nlu"
    return "nlu"


def weak_failure_points(turns: list[FpiTurn], config: WeakConfig | None = None) -> list[str]:
    c = config or WeakConfig()
    return [weak_failure_point(t, c) for t in turns]
