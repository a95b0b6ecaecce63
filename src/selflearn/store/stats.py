"""What is in a store: counts, date range, top intents and devices, feedback signals."""

from __future__ import annotations

from typing import Any

from selflearn.store.store import Store

__all__ = ["store_stats"]


def store_stats(store: Store, top: int = 10) -> dict[str, Any]:
    """A JSON-ready summary of the store's turns."""
    con = store.reader()
    turns, sessions, users, devices, first, last = con.execute(
        """SELECT count(*), count(DISTINCT session_id), count(DISTINCT user_id), count(DISTINCT device_id),
                  strftime(min(ts), '%Y-%m-%dT%H:%M:%SZ'), strftime(max(ts), '%Y-%m-%dT%H:%M:%SZ') FROM turns"""
    ).fetchone()

    def top_of(expr: str) -> list[dict[str, Any]]:
        rows = con.execute(
            f"SELECT {expr} AS k, count(*) AS n FROM turns GROUP BY k ORDER BY n DESC, k LIMIT {int(top)}"
        ).fetchall()
        return [{"name": k if k is not None else "(none)", "turns": n} for k, n in rows]

    barge, neg, pos, prompted, no_nlu = con.execute(
        """SELECT count(*) FILTER (barge_in), count(*) FILTER (explicit_feedback = 'negative'),
                  count(*) FILTER (explicit_feedback = 'positive'), count(*) FILTER (feedback_prompted),
                  count(*) FILTER (domain IS NULL) FROM turns"""
    ).fetchone()
    imports = con.execute("SELECT count(*), coalesce(sum(quarantined), 0) FROM imports").fetchone()
    return {
        "store": str(store.path),
        "store_version": store.version,
        "turns": turns,
        "sessions": sessions,
        "users": users,
        "devices": devices,
        "first_turn": first,
        "last_turn": last,
        "top_intents": top_of("intent"),
        "top_device_types": top_of("device_type"),
        "feedback": {
            "barge_in": barge,
            "explicit_negative": neg,
            "explicit_positive": pos,
            "prompted": prompted,
        },
        "turns_without_nlu": no_nlu,
        "imports": imports[0],
        "quarantined_total": imports[1],
    }
