"""The rule baseline: confidence thresholds on the turn's own traces, no dialogue context.

Not a defect (by the signals) or a request no assistant serves -> correct; a low-confidence first
turn -> false wake; low ASR confidence -> ASR; low NLU confidence -> NLU; an unresolved or
low-scoring entity -> entity resolution; a failed action -> result; anything else -> NLU. ``fit``
picks the thresholds that maximise accuracy on a labelled set (a grid search)."""

from __future__ import annotations

import itertools

import numpy as np

from ..errors import InvalidInputError, explain
from ..signals.feedback import DEFECT_AT
from ..models.base import Estimator
from .features import unresolved
from .turns import CLASSES, FpiTurn

__all__ = ["RuleBaseline"]

GRID = {"false_wake_at": (0.0, 0.3, 0.4, 0.5), "asr_at": tuple(np.round(np.arange(0.3, 0.96, 0.05), 2)),
        "nlu_at": tuple(np.round(np.arange(0.3, 1.0, 0.05), 2)), "er_at": (0.0, 0.5, 0.7, 0.9)}


def _columns(turns: list[FpiTurn]) -> dict[str, np.ndarray]:
    er_min = [min((float(e.get("score") or 0.0) for e in t.entities if isinstance(e, dict)), default=1.0) for t in turns]
    return {"ok": np.array([t.defect_score < DEFECT_AT or t.status == "unsupported" for t in turns]),
            "first": np.array([t.prev is None for t in turns]),
            "asr": np.array([1.0 if t.asr_confidence is None else t.asr_confidence for t in turns]),
            "nlu": np.array([1.0 if t.nlu_confidence is None else t.nlu_confidence for t in turns]),
            "unresolved": np.array([unresolved(t) > 0 for t in turns]),
            "er_min": np.array(er_min), "failed": np.array([t.status not in ("success", "unsupported", "") for t in turns])}


def _apply(c: dict, fw: float, asr: float, nlu: float, er: float) -> np.ndarray:
    out = np.full(len(c["ok"]), CLASSES.index("nlu"))
    out = np.where(c["failed"], CLASSES.index("result"), out)
    out = np.where(c["unresolved"] | (c["er_min"] < er), CLASSES.index("entity_resolution"), out)
    out = np.where(c["nlu"] < nlu, CLASSES.index("nlu"), out)
    out = np.where(c["asr"] < asr, CLASSES.index("asr"), out)
    out = np.where(c["first"] & (c["asr"] < fw), CLASSES.index("false_wake"), out)
    return np.where(c["ok"], CLASSES.index("correct"), out)


class RuleBaseline(Estimator):
    """Confidence-threshold rules. Parameters are stored as given; fitted thresholds end in ``_``."""

    component = "failure-point-rules"
    fitted_attr = "thresholds_"
    fix = "fit it on labelled turns (benchmarks/fpi_results.py) or use the given thresholds"
    uses_torch = False

    def __init__(self, *, false_wake_at: float = 0.4, asr_at: float = 0.6, nlu_at: float = 0.6, er_at: float = 0.5):
        self.false_wake_at = false_wake_at
        self.asr_at = asr_at
        self.nlu_at = nlu_at
        self.er_at = er_at

    def fit(self, turns: list[FpiTurn], labels: list[str] | None = None) -> "RuleBaseline":
        """With ``labels``: the thresholds (grid search) that maximise accuracy on them; without:
        the thresholds as given."""
        if labels is None:
            self._start(turns)
            self.thresholds_ = {k: float(getattr(self, k)) for k in GRID}
            return self
        bad = sorted({x for x in labels if x not in CLASSES})
        if len(turns) != len(labels) or not turns or bad:
            raise InvalidInputError(explain(f"{len(turns)} turns, {len(labels)} labels, unknown labels {bad[:5]}",
                                            f"need one label per turn, at least one turn, labels among {list(CLASSES)}", "pass matching lists"))
        self._start(turns, labels)
        y = np.array([CLASSES.index(x) for x in labels])
        c = _columns(turns)
        best = (-1.0, None)
        for combo in itertools.product(*GRID.values()):
            acc = float((_apply(c, *combo) == y).mean())
            if acc > best[0]:
                best = (acc, combo)
        self.thresholds_ = dict(zip(GRID, map(float, best[1])))
        return self

    def predict(self, turns: list[FpiTurn]) -> list[str]:
        self._check_fitted()
        th = self.thresholds_
        return [CLASSES[i] for i in _apply(_columns(turns), *(th[k] for k in GRID))] if turns else []

    def _learned(self) -> dict:
        return {"thresholds_": self.thresholds_}

    def _restore(self, directory, learned: dict) -> None:
        self.thresholds_ = {k: float(learned["thresholds_"][k]) for k in GRID}
