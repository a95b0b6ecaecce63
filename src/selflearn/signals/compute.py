"""Compute signals into the store, and score them against a truth table (evaluation)."""

from __future__ import annotations

import duckdb

from ..store.store import Store
from .feedback import SignalConfig, signals_sql

__all__ = ["compute_signals", "evaluate_defect_score"]


def compute_signals(store: Store, config: SignalConfig | None = None) -> int:
    """(Re)build the store's ``signals`` table in one transaction; returns its row count."""
    sql = signals_sql(config or SignalConfig())
    with store.transaction() as con:
        con.execute(f"CREATE OR REPLACE TABLE signals AS {sql}")
        return con.execute("SELECT count(*) FROM signals").fetchall()[0][0]


def evaluate_defect_score(con: duckdb.DuckDBPyConnection, truth, thresholds=(0.3, 0.5, 0.7)) -> dict:
    """Precision and recall of ``defect_score >= threshold`` against a truth table (an Arrow table
    or relation with session_id, turn_index, defective). The caller reads the truth; this module
    never does."""
    con.register("_truth", truth)
    out = {}
    for th in thresholds:
        tp, fp, fn, n = con.execute(
            f"""SELECT sum((s.defect_score >= {th} AND t.defective)::int), sum((s.defect_score >= {th} AND NOT t.defective)::int),
                       sum((s.defect_score < {th} AND t.defective)::int), count(*)
                FROM signals s JOIN _truth t USING (session_id, turn_index)"""
        ).fetchall()[0]
        p = tp / (tp + fp) if tp + fp else 0.0
        r = tp / (tp + fn) if tp + fn else 0.0
        out[str(th)] = {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0, "turns": n}
    con.unregister("_truth")
    return out
