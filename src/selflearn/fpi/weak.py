"""Failure points from the logs alone (no annotation, no truth): weak labels a team without an
annotated set can train the model on.

A turn the signals do not call a defect (or a request the assistant rightly cannot serve) is
correct. A defective turn is compared with the end of its retry chain when a retry worked: the same
reading with other entities for the same words is entity resolution; the same reading and the same
entities is the result; another reading is ASR when the turn looks misheard (low ASR confidence, or
a word never seen in the logs' requests that worked), else NLU. Without a retry that worked, the traces decide: a low-confidence first turn the user did
not retry is a false wake; a misheard turn is ASR; a failed action on a confident, fully resolved
reading is the result; anything else NLU."""

from __future__ import annotations

from dataclasses import dataclass

from ..signals.feedback import DEFECT_AT
from .features import relation, unresolved, value_mismatch
from .turns import FpiTurn

__all__ = ["WeakConfig", "misheard", "weak_failure_point", "weak_failure_points"]


@dataclass(frozen=True)
class WeakConfig:
    """The rules' thresholds. The defaults were chosen by looking at one simulated training run
    (1,000 users x 7 days, traffic seed 5); results are reported on other runs."""

    defect_at: float = DEFECT_AT  # defect score at or above which a turn is a defect (the signals' threshold)
    low_asr: float = 0.9  # ASR confidence below which a misreading is blamed on ASR
    low_nlu: float = 0.6  # NLU confidence below which NLU is blamed
    false_wake_asr: float = 0.6  # a first turn heard below this, cut off (barge-in) and not retried, is a false wake
    unseen_share: float = 0.0  # share of words unseen in requests that worked above which the words were misheard


def misheard(t: FpiTurn, c: WeakConfig = WeakConfig()) -> bool:
    """Signs that ASR got the words wrong: low confidence, or a word never seen in the logs'
    requests that worked (misrecognitions make rare words)."""
    asr = 1.0 if t.asr_confidence is None else t.asr_confidence
    return asr < c.low_asr or t.rarity[0] > c.unseen_share


def weak_failure_point(t: FpiTurn, c: WeakConfig = WeakConfig()) -> str:
    """The weak failure point of one turn (context links must be set: ``store_turns`` does)."""
    if t.defect_score < c.defect_at or t.status == "unsupported":
        return "correct"
    asr = 1.0 if t.asr_confidence is None else t.asr_confidence
    nlu = 1.0 if t.nlu_confidence is None else t.nlu_confidence
    heard_wrong = misheard(t, c)
    f = t.final if t.final is not t else None
    if f is not None and f.status == "success" and f.defect_score < c.defect_at:
        rel = relation(t, f)
        if t.intent == f.intent:
            if rel["other_entity_same_value"] or value_mismatch(t) > 0 and not heard_wrong:
                return "entity_resolution"
            if rel["same_slot_values"] >= 1.0 and (rel["same_entities"] or not t.entities) and not heard_wrong:
                return "result"
        return "asr" if heard_wrong else "nlu"
    if t.prev is None and not t.rephrase and asr < c.false_wake_asr and t.barge_in:
        return "false_wake"
    if heard_wrong:
        return "asr"
    if t.status not in ("success", "") and not unresolved(t) and nlu >= c.low_nlu:
        return "result"
    return "nlu"


def weak_failure_points(turns: list[FpiTurn], config: WeakConfig | None = None) -> list[str]:
    c = config or WeakConfig()
    return [weak_failure_point(t, c) for t in turns]
