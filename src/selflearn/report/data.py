"""What the morning report and the dashboard show, read from the store through one reader cursor
(the store is never written: the stored signals are used when current, else computed into a temporary table of that cursor): defect
rates over time and by domain, intent and device; the top defects with example sessions; the rewrites
the assistant served and how they did; the failure-point breakdown when `selflearn fpi apply` ran;
sessions of a request and one session's turns."""

from __future__ import annotations

from ..errors import InvalidInputError, explain
from ..fpi.isolation import breakdown
from ..signals import DEFECT_AT, signals_for_reading
from ..store.store import Store

__all__ = ["store_summary", "DEFECT_AT", "session_turns", "sessions_with_request"]


def store_summary(store: Store, *, con=None, top: int = 10, examples: int = 2) -> dict:
    """Everything the report draws from the store, as plain lists and dicts. ``con``: the reader
    cursor to use (its temporary ``signals`` table is left there for :func:`session_turns`)."""
    if not store.has_table("turns"):
        raise InvalidInputError(explain(str(store.path), "has no turns", "import logs first (`selflearn store import FILE --store ...`)"))
    con = con or store.reader()
    signals_for_reading(con)
    n = con.execute("SELECT count(*) FROM turns").fetchall()[0][0]
    if n == 0:
        raise InvalidInputError(explain(str(store.path), "has no turns", "import logs first (`selflearn store import FILE --store ...`)"))
    base = f"SELECT t.*, s.defect_score, (s.defect_score >= {DEFECT_AT}) AS defect FROM turns t JOIN signals s USING (session_id, turn_index)"

    def rate_by(col: str, limit: int | None = None, order: str = "turns DESC") -> list[dict]:
        rows = con.execute(f"""SELECT coalesce(CAST({col} AS VARCHAR), '(none)') AS k, count(*) AS turns, avg(defect::INT) AS rate
                               FROM ({base}) GROUP BY 1 ORDER BY {order} {f'LIMIT {int(limit)}' if limit else ''}""").fetchall()
        return [{"key": k, "turns": int(t), "defect_rate": round(float(r), 4)} for k, t, r in rows]

    out = {"turns": int(n), "sessions": int(con.execute("SELECT count(DISTINCT session_id) FROM turns").fetchall()[0][0]),
           "users": int(con.execute("SELECT count(DISTINCT user_id) FROM turns").fetchall()[0][0]),
           "defect_rate": round(float(con.execute(f"SELECT avg(defect::INT) FROM ({base})").fetchall()[0][0]), 4),
           "by_day": rate_by("CAST(ts AS DATE)", order="k"),
           "by_domain": rate_by("domain", top), "by_intent": rate_by("intent", top), "by_device": rate_by("device_type")}
    out["top_defects"] = _top_defects(con, base, top, examples)
    out["served_rewrites"] = _served(con, base, top)
    out["failure_points"] = breakdown(store) if store.has_derived("failure_points") else None
    return out


def _top_defects(con, base: str, top: int, examples: int) -> list[dict]:
    """The requests that fail most often (by normalised words), each with example sessions."""
    rows = con.execute(f"""SELECT text_norm AS q, count(*) AS turns, sum(defect::INT) AS defects, any_value(intent) AS intent
                           FROM ({base}) WHERE asr_text IS NOT NULL GROUP BY 1 HAVING sum(defect::INT) > 0
                           ORDER BY defects DESC, q LIMIT {int(top)}""").fetchall()
    out = []
    for q, turns, defects, intent in rows:
        sids = [r[0] for r in con.execute(f"""SELECT DISTINCT session_id FROM ({base}) WHERE text_norm = ? AND defect
                                              ORDER BY session_id LIMIT {int(examples)}""", [q]).fetchall()]
        out.append({"request": q, "turns": int(turns), "defects": int(defects), "intent": intent,
                    "sessions": [{"session_id": sid, "turns": session_turns(con, sid)} for sid in sids]})
    return out


def session_turns(con, session_id: str) -> list[dict]:
    """One session's turns, with the rewrite served and each turn's defect score (None without signals
    on ``con``: see :func:`store_summary`)."""
    has_signals = bool(con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'signals'").fetchall()[0][0])
    score, join = ("s.defect_score", "LEFT JOIN signals s USING (session_id, turn_index)") if has_signals else ("NULL", "")
    rows = con.execute(
        f"""SELECT t.turn_index, strftime(t.ts, '%Y-%m-%d %H:%M:%S'), t.asr_text, json_extract_string(t.extra, '$.utterance.rewrite'), t.intent,
                   t.response_status, coalesce(t.response_text, ''), t.barge_in, t.explicit_feedback, {score}
            FROM turns t {join} WHERE t.session_id = ? ORDER BY t.turn_index""", [session_id]).fetchall()
    return [{"turn_index": int(i), "ts": ts, "request": text, "rewrite": rw, "intent": intent, "status": status, "reply": reply,
             "barge_in": bool(barge), "feedback": fb, "defect_score": None if sc is None else round(float(sc), 3)}
            for i, ts, text, rw, intent, status, reply, barge, fb, sc in rows]


def sessions_with_request(con, request: str, limit: int = 20) -> list[tuple[str, float]]:
    """Sessions where a request (normalised words) was said, worst defect score of it first."""
    return con.execute(
        """SELECT t.session_id, max(s.defect_score) AS worst FROM turns t JOIN signals s USING (session_id, turn_index)
           WHERE t.text_norm = ? GROUP BY 1 ORDER BY worst DESC, 1 LIMIT ?""", [request, max(1, min(int(limit), 200))]).fetchall()


def _served(con, base: str, top: int) -> list[dict]:
    """Rewrites the logs say were served (utterance.rewrite), with how often the turn then worked."""
    rows = con.execute(f"""SELECT text_norm AS q, json_extract_string(extra, '$.utterance.rewrite') AS rw, count(*) AS served,
                                  sum((NOT defect)::INT) AS wins, sum(defect::INT) AS losses
                           FROM ({base}) WHERE json_extract_string(extra, '$.utterance.rewrite') IS NOT NULL
                           GROUP BY 1, 2 ORDER BY served DESC, q LIMIT {int(top)}""").fetchall()
    return [{"request": q, "rewrite": rw, "served": int(s), "wins": int(w), "losses": int(l_)} for q, rw, s, w, l_ in rows]

