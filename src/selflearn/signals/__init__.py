"""Feedback signals: what the logs say about each turn, without any truth."""

from .feedback import DEFECT_AT, SignalConfig, signals_sql
from .compute import compute_signals, evaluate_defect_score, signals_for_reading
from .similarity import text_similarity

__all__ = ["DEFECT_AT", "SignalConfig", "signals_sql", "compute_signals", "signals_for_reading", "evaluate_defect_score", "text_similarity"]
