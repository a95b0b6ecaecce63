"""Compute signals into the store, and score them against a truth table (evaluation)."""

from __future__ import annotations

import duckdb

from ..metrics import prf
from ..store.derived import entry, is_current, replace_table
from ..store.store import Store
from .feedback import SignalConfig, signals_sql

__all__ = ["compute_signals", "signals_for_reading", "evaluate_defect_score"]


def compute_signals(store: Store, config: SignalConfig | None = None, *, force: bool = False) -> int:
    """The store's ``signals`` table for ``config``: reused when it was computed with the same config
    from the same turns, else rebuilt in one transaction (the only writer of the table). Returns its
    row count."""
    c = (config or SignalConfig()).check()
    con = store.reader()
    if not force and is_current(con, "signals", c.as_dict()):
        return entry(con, "signals")["n_rows"]
    with store.transaction() as wcon:
        return replace_table(wcon, "signals", signals_sql(c), c.as_dict())


def signals_for_reading(con: duckdb.DuckDBPyConnection, config: SignalConfig | None = None) -> None:
    """Make ``signals`` on the cursor ``con`` (of a store opened read-only) the signals for
    ``config``: the stored table when it is current, else a TEMP table computed for this cursor only
    (a reader never writes the store)."""
    c = (config or SignalConfig()).check()
    if is_current(con, "signals", c.as_dict()):
        con.execute("DROP TABLE IF EXISTS temp.signals")  # an older TEMP copy would hide the stored table
    else:
        con.execute(f"CREATE OR REPLACE TEMP TABLE signals AS {signals_sql(c)}")


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
        out[str(th)] = {**prf(tp or 0, fp or 0, fn or 0), "turns": n}
    con.unregister("_truth")
    return out
