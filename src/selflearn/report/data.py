"""What the morning report and the dashboard show, read from the store through one reader cursor
(the store is never written: the stored signals are used when current, else computed into a temporary table of that cursor): defect
rates over time and by domain, intent and device; the top defects with example sessions; the rewrites
the assistant served and how they did; the failure-point breakdown when `selflearn fpi apply` ran;
sessions of a request and one session's turns."""

from __future__ import annotations

from ..errors import InvalidInputError, explain
from ..fpi.isolation import breakdown
from ..signals import DEFECT_AT, signals_for_reading
from ..privacy.kanon import K_DEFAULT, check_k, users_per_text_sql
from ..store.store import Store
from ..text import normalise_sql

#: what a shared page shows instead of words fewer than k users said
WITHHELD = "(withheld: fewer than k users said this)"

__all__ = ["store_summary", "DEFECT_AT", "session_turns", "sessions_with_request"]


def store_summary(store: Store, *, con=None, top: int = 10, examples: int = 2, min_users: int = K_DEFAULT) -> dict:
    """Everything the report draws from the store, as plain lists and dicts. ``con``: the reader
    cursor to use (its temporary ``signals`` table is left there for :func:`session_turns`).
    k-anonymity: a request is listed only when ``min_users`` distinct users said it, and an example
    session shows a turn's words only when as many users said them."""
    check_k(min_users)
    if not store.has_table("turns"):
        raise InvalidInputError(explain(str(store.path), "has no turns", "import logs first (`selflearn store import FILE --store ...`)"))
    con = con or store.reader()
    signals_for_reading(con)
    n = con.execute("SELECT count(*) FROM turns").fetchall()[0][0]
    if n == 0:
        raise InvalidInputError(explain(str(store.path), "has no turns", "import logs first (`selflearn store import FILE --store ...`)"))
    _shared_texts(con, min_users)
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
    shared = "true" if min_users <= 1 else "text_norm IN (SELECT text FROM shared_texts)"
    out["top_defects"] = _top_defects(con, base, top, examples, shared)
    out["served_rewrites"] = _served(con, base, top, shared)
    out["min_users"] = min_users
    out["failure_points"] = breakdown(store) if store.has_derived("failure_points") else None
    return out


def _top_defects(con, base: str, top: int, examples: int, shared: str) -> list[dict]:
    """The requests that fail most often (by normalised words), each with example sessions."""
    rows = con.execute(f"""SELECT text_norm AS q, count(*) AS turns, sum(defect::INT) AS defects, any_value(intent) AS intent
                           FROM ({base}) WHERE asr_text IS NOT NULL AND {shared}
                           GROUP BY 1 HAVING sum(defect::INT) > 0
                           ORDER BY defects DESC, q LIMIT {int(top)}""").fetchall()
    out = []
    for q, turns, defects, intent in rows:
        sids = [r[0] for r in con.execute(f"""SELECT DISTINCT session_id FROM ({base}) WHERE text_norm = ? AND defect
                                              ORDER BY session_id LIMIT {int(examples)}""", [q]).fetchall()]
        out.append({"request": q, "turns": int(turns), "defects": int(defects), "intent": intent,
                    "sessions": [{"session_id": sid, "turns": session_turns(con, sid)} for sid in sids]})
    return out


def _shared_texts(con, min_users: int) -> None:
    """TEMP table ``shared_texts`` on ``con``: the normalised requests at least ``min_users`` users said
    (none with ``min_users`` 1: k-anonymity off)."""
    con.execute("DROP TABLE IF EXISTS shared_texts")
    if min_users <= 1:
        return
    con.execute(f"CREATE OR REPLACE TEMP TABLE shared_texts AS SELECT text FROM ({users_per_text_sql()}) WHERE users >= {int(min_users)}")


def session_turns(con, session_id: str) -> list[dict]:
    """One session's turns, with the rewrite served and each turn's defect score (None without signals
    on ``con``: see :func:`store_summary`). With the ``shared_texts`` of :func:`store_summary` on
    ``con``, a turn whose words fewer users said shows :data:`WITHHELD` instead of them (and of the reply)."""
    has_signals = bool(con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'signals'").fetchall()[0][0])
    score, join = ("s.defect_score", "LEFT JOIN signals s USING (session_id, turn_index)") if has_signals else ("NULL", "")
    k_anon = bool(con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'shared_texts'").fetchall()[0][0])
    rewrite = "json_extract_string(t.extra, '$.utterance.rewrite')"
    shared = "t.text_norm IN (SELECT text FROM shared_texts)" if k_anon else "true"
    shared_rw = f"{normalise_sql(rewrite)} IN (SELECT text FROM shared_texts)" if k_anon else "true"
    rows = con.execute(
        f"""SELECT t.turn_index, strftime(t.ts, '%Y-%m-%d %H:%M:%S'), t.asr_text, {rewrite}, t.intent,
                   t.response_status, coalesce(t.response_text, ''), t.barge_in, t.explicit_feedback, {score}, {shared}, {shared_rw}
            FROM turns t {join} WHERE t.session_id = ? ORDER BY t.turn_index""", [session_id]).fetchall()
    return [{"turn_index": int(i), "ts": ts, "request": text if ok else WITHHELD, "rewrite": rw if rw is None or ok_rw else WITHHELD,
             "intent": intent, "status": status, "reply": reply if ok else WITHHELD,
             "barge_in": bool(barge), "feedback": fb, "defect_score": None if sc is None else round(float(sc), 3)}
            for i, ts, text, rw, intent, status, reply, barge, fb, sc, ok, ok_rw in rows]


def sessions_with_request(con, request: str, limit: int = 20) -> list[tuple[str, float]]:
    """Sessions where a request (normalised words) was said, worst defect score of it first."""
    return con.execute(
        """SELECT t.session_id, max(s.defect_score) AS worst FROM turns t JOIN signals s USING (session_id, turn_index)
           WHERE t.text_norm = ? GROUP BY 1 ORDER BY worst DESC, 1 LIMIT ?""", [request, max(1, min(int(limit), 200))]).fetchall()


def _served(con, base: str, top: int, shared: str) -> list[dict]:
    """Rewrites the logs say were served (utterance.rewrite), with how often the turn then worked."""
    rows = con.execute(f"""SELECT text_norm AS q, json_extract_string(extra, '$.utterance.rewrite') AS rw, count(*) AS served,
                                  sum((NOT defect)::INT) AS wins, sum(defect::INT) AS losses
                           FROM ({base}) WHERE json_extract_string(extra, '$.utterance.rewrite') IS NOT NULL
                             AND {shared} AND {shared.replace("text_norm", normalise_sql("json_extract_string(extra, '$.utterance.rewrite')"))}
                           GROUP BY 1, 2 ORDER BY served DESC, q LIMIT {int(top)}""").fetchall()
    return [{"request": q, "rewrite": rw, "served": int(s), "wins": int(w), "losses": int(l_)} for q, rw, s, w, l_ in rows]

