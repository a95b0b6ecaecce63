"""Failure point isolation: which component failed first, in a way the assistant did not recover from."""

from .features import TRACE_FEATURES, trace_features
from .model import FailurePointModel
from .rules import RuleBaseline
from .isolation import apply_fpi, breakdown, evaluate_fpi, fpi_metrics, read_failure_labels, train_fpi
from .turns import CLASSES, FpiTurn, store_turns
from .weak import WeakConfig, weak_failure_points

__all__ = ["CLASSES", "FpiTurn", "store_turns", "TRACE_FEATURES", "trace_features", "FailurePointModel", "RuleBaseline",
           "WeakConfig", "weak_failure_points", "read_failure_labels", "train_fpi", "evaluate_fpi", "fpi_metrics", "apply_fpi", "breakdown"]
