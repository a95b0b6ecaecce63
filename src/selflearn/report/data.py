"""What the morning report shows, read from the store (one reader cursor; the only write is the
signals table, recomputed by the signals module as every consumer of signals does): defect
rates over time and by domain, intent and device; the top defects with example sessions; the rewrites
the assistant served and how they did; the failure-point breakdown when `selflearn fpi apply` ran."""

from __future__ import annotations

from ..errors import InvalidInputError, explain
from ..fpi.run import breakdown
from ..signals import compute_signals
from ..store.store import Store

__all__ = ["store_summary", "DEFECT_AT"]

DEFECT_AT = 0.5  # defect score at or above which a turn counts as a defect (the signals' rule)


def store_summary(store: Store, *, top: int = 10, examples: int = 2) -> dict:
    """Everything the report draws from the store, as plain lists and dicts."""
    if not store.has_table("turns"):
        raise InvalidInputError(explain(str(store.path), "has no turns", "import logs first (`selflearn import FILE --store ...`)"))
    compute_signals(store)
    con = store.reader()
    n = con.execute("SELECT count(*) FROM turns").fetchall()[0][0]
    if n == 0:
        raise InvalidInputError(explain(str(store.path), "has no turns", "import logs first (`selflearn import FILE --store ...`)"))
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
    out["failure_points"] = breakdown(store) if store.has_table("failure_points") else None
    return out


def _top_defects(con, base: str, top: int, examples: int) -> list[dict]:
    """The requests that fail most often (by normalised words), each with example sessions."""
    rows = con.execute(f"""SELECT lower(trim(asr_text)) AS q, count(*) AS turns, sum(defect::INT) AS defects, any_value(intent) AS intent
                           FROM ({base}) WHERE asr_text IS NOT NULL GROUP BY 1 HAVING sum(defect::INT) > 0
                           ORDER BY defects DESC, q LIMIT {int(top)}""").fetchall()
    out = []
    for q, turns, defects, intent in rows:
        sids = [r[0] for r in con.execute(f"""SELECT DISTINCT session_id FROM ({base}) WHERE lower(trim(asr_text)) = ? AND defect
                                              ORDER BY session_id LIMIT {int(examples)}""", [q]).fetchall()]
        out.append({"request": q, "turns": int(turns), "defects": int(defects), "intent": intent,
                    "sessions": [_session(con, base, sid) for sid in sids]})
    return out


def _session(con, base: str, sid: str) -> dict:
    rows = con.execute(f"""SELECT turn_index, CAST(ts AS VARCHAR), asr_text, intent, response_status, coalesce(response_text, ''),
                                  barge_in, explicit_feedback, defect_score
                           FROM ({base}) WHERE session_id = ? ORDER BY turn_index""", [sid]).fetchall()
    return {"session_id": sid, "turns": [{"turn_index": int(i), "ts": ts, "request": text, "intent": intent, "status": status, "reply": reply,
                                          "barge_in": bool(barge), "feedback": fb, "defect_score": round(float(score), 3)}
                                         for i, ts, text, intent, status, reply, barge, fb, score in rows]}


def _served(con, base: str, top: int) -> list[dict]:
    """Rewrites the logs say were served (utterance.rewrite), with how often the turn then worked."""
    rows = con.execute(f"""SELECT lower(trim(asr_text)) AS q, json_extract_string(extra, '$.utterance.rewrite') AS rw, count(*) AS served,
                                  sum((NOT defect)::INT) AS wins, sum(defect::INT) AS losses
                           FROM ({base}) WHERE json_extract_string(extra, '$.utterance.rewrite') IS NOT NULL
                           GROUP BY 1, 2 ORDER BY served DESC, q LIMIT {int(top)}""").fetchall()
    return [{"request": q, "rewrite": rw, "served": int(s), "wins": int(w), "losses": int(l_)} for q, rw, s, w, l_ in rows]

