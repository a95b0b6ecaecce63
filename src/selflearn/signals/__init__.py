"""Feedback signals: what the logs say about each turn, without any truth."""

from .feedback import SignalConfig, signals_sql
from .compute import compute_signals, evaluate_defect_score
from .similarity import text_similarity

__all__ = ["SignalConfig", "signals_sql", "compute_signals", "evaluate_defect_score", "text_similarity"]
