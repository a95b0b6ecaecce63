"""Entry points the CLI calls: mine (signals → chains → table), list/search, explain."""

from __future__ import annotations

from pathlib import Path

from ..errors import InvalidInputError, explain
from ..signals import SignalConfig, compute_signals
from ..store.store import Store
from .table import MiningConfig, mine_rewrites, write_table

__all__ = ["mine", "list_rewrites", "explain_rewrite"]


def mine(store: Store, out: Path, *, signals: SignalConfig | None = None, mining: MiningConfig | None = None, progress=None) -> dict:
    """Compute signals, mine the rewrite table, write it to ``out`` (Parquet) and to the store's
    ``rewrites`` table (both replaced). Returns the statistics."""
    say = progress or (lambda stage: None)
    say("signals")
    n = compute_signals(store, signals)
    if n == 0:
        raise InvalidInputError(explain(str(store.path), "has no turns", "import logs first (`selflearn import FILE`)"))
    table, stats = mine_rewrites(store, mining, progress=say)
    stats["signal_turns"] = n
    say("write")
    write_table(table, stats, out)
    with store.transaction() as con:
        con.register("_mined", table)
        con.execute("CREATE OR REPLACE TABLE rewrites AS SELECT * FROM _mined")
        con.unregister("_mined")
    stats["table"] = str(out)
    return stats


def _rows(cur) -> list[dict]:
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r)) for r in cur.fetchall()]


def _require(con, table: str, fix: str) -> None:
    if not con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [table]).fetchall()[0][0]:
        raise InvalidInputError(explain(f"table {table!r}", "is not in the store", fix))


def list_rewrites(store: Store, *, search: str | None = None, limit: int = 20) -> list[dict]:
    """Rewrites by support; ``search`` matches either side (case-insensitive substring)."""
    if limit < 1:
        raise InvalidInputError(explain(f"limit={limit}", "must be >= 1", "use e.g. --limit 20"))
    con = store.reader()
    _require(con, "rewrites", "run `selflearn mine` first")
    where, args = "", []
    if search:
        where, args = "WHERE utterance ILIKE ? OR rewrite ILIKE ?", [f"%{search}%", f"%{search}%"]
    return _rows(con.execute(f"SELECT * FROM rewrites {where} ORDER BY support DESC, utterance LIMIT {int(limit)}", args))


def explain_rewrite(store: Store, utterance: str, *, max_chains: int = 10) -> dict:
    """One rewrite and the chains it came from: sessions where the utterance was followed, through
    rephrases, by the rewrite, with every turn between them and its signals."""
    con = store.reader()
    _require(con, "rewrites", "run `selflearn mine` first")
    u = " ".join(utterance.lower().split())
    found = _rows(con.execute("SELECT * FROM rewrites WHERE utterance = ?", [u]))
    if not found:
        raise InvalidInputError(explain(f"utterance={u!r}", "has no rewrite in the table", "list them with `selflearn rewrites --search WORD`"))
    rw = found[0]
    chains = _rows(
        con.execute(
            """
            WITH a AS (SELECT session_id, turn_index AS i0 FROM signals WHERE asr_text = ?),
                 b AS (SELECT session_id, turn_index AS i1 FROM signals WHERE asr_text = ?),
                 starts AS (SELECT a.session_id, min(a.i0) AS i0 FROM a JOIN b ON a.session_id = b.session_id AND b.i1 > a.i0
                            GROUP BY ALL ORDER BY a.session_id LIMIT ?),
                 pairs AS (SELECT st.session_id, st.i0, min(b.i1) AS i1 FROM starts st JOIN b ON b.session_id = st.session_id AND b.i1 > st.i0
                           GROUP BY ALL)
            SELECT p.session_id, s.turn_index, s.ts, s.asr_text, s.response_status, s.barge_in, s.explicit_negative,
                   s.rephrase_candidate, round(s.defect_score, 3) AS defect_score
            FROM pairs p JOIN signals s ON s.session_id = p.session_id AND s.turn_index BETWEEN p.i0 AND p.i1
            ORDER BY p.session_id, s.turn_index
            """,
            [u, rw["rewrite"], max_chains],
        )
    )
    sessions: dict[str, list[dict]] = {}
    for r in chains:
        sessions.setdefault(r.pop("session_id"), []).append(r)
    return {"rewrite": rw, "chains": [{"session_id": k, "turns": v} for k, v in sessions.items()]}
