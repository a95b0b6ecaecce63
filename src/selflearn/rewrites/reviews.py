"""What operators decided about rewrites: approved (reviewed and kept) or blocked (never served again,
by the table or the online layers). Kept in the store (table ``rewrite_reviews``); every write goes
through the store's one write connection in its own transaction."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple
from datetime import datetime, timezone

from ..errors import InvalidInputError, explain
from ..text import normalise
from ..store.store import Store


__all__ = ["Reviews", "Review", "DECISIONS", "Chain", "rewrite_chains"]

DECISIONS = ("approved", "blocked")
MAX_TEXT = 512


@dataclass(frozen=True)
class Review:
    utterance: str
    rewrite: str
    decision: str
    reviewer: str
    note: str
    decided_at: datetime


def _text(name: str, v) -> str:
    if not isinstance(v, str) or not v.strip() or len(v) > MAX_TEXT:
        raise InvalidInputError(explain(f"{name}={v!r}", f"must be a non-empty string of at most {MAX_TEXT} characters", f"pass the {name} as the table has it"))
    return normalise(v)


class Reviews:
    """The store's rewrite reviews."""

    def __init__(self, store: Store):
        self.store = store

    def decide(self, utterance: str, rewrite: str, decision: str, *, reviewer: str = "", note: str = "", at: datetime | None = None) -> Review:
        """Approve or block a (request, rewrite) pair; a later decision replaces an earlier one."""
        u, r = _text("utterance", utterance), _text("rewrite", rewrite)
        if decision not in DECISIONS:
            raise InvalidInputError(explain(f"decision={decision!r}", f"must be one of {list(DECISIONS)}", "approve or block it"))
        at = at or datetime.now(timezone.utc)
        with self.store.transaction() as con:
            con.execute("INSERT OR REPLACE INTO rewrite_reviews VALUES (?, ?, ?, ?, ?, ?)", [u, r, decision, str(reviewer)[:100], str(note)[:500], at])
        return self.get(u, r)  # type: ignore[return-value]

    def undo(self, utterance: str, rewrite: str) -> bool:
        """Forget the decision about a pair (it is served again if the rewriter proposes it)."""
        u, r = _text("utterance", utterance), _text("rewrite", rewrite)
        with self.store.transaction() as con:
            n = con.execute("SELECT count(*) FROM rewrite_reviews WHERE utterance = ? AND rewrite = ?", [u, r]).fetchall()[0][0]
            con.execute("DELETE FROM rewrite_reviews WHERE utterance = ? AND rewrite = ?", [u, r])
        return bool(n)

    def get(self, utterance: str, rewrite: str) -> Review | None:
        rows = self.store.reader().execute("SELECT * FROM rewrite_reviews WHERE utterance = ? AND rewrite = ?",
                                           [normalise(utterance), normalise(rewrite)]).fetchall()
        return Review(*rows[0]) if rows else None

    def list(self, decision: str | None = None) -> list[Review]:
        rows = self.store.reader().execute("SELECT * FROM rewrite_reviews WHERE ? IS NULL OR decision = ? ORDER BY decided_at DESC",
                                           [decision, decision]).fetchall()
        return [Review(*r) for r in rows]

    def blocked(self) -> set[tuple[str, str]]:
        return {(r.utterance, r.rewrite) for r in self.list("blocked")}


class Chain(NamedTuple):
    session_id: str
    first: int  # the turn heard as the utterance
    last: int  # the first later turn of the session heard as the rewrite


def rewrite_chains(store: Store, utterance: str, rewrite: str, *, limit: int = 10) -> list[Chain]:
    """The evidence for a rewrite, computed in this one place for the CLI and the dashboard:
    sessions where a turn heard as ``utterance`` was followed, later in the same session, by a turn
    heard as ``rewrite`` (both compared as normalised text), first occurrence of each."""
    u, r = normalise(utterance), normalise(rewrite)
    rows = store.reader().execute(
        """WITH a AS (SELECT session_id, turn_index AS i0 FROM turns WHERE text_norm = ?),
                b AS (SELECT session_id, turn_index AS i1 FROM turns WHERE text_norm = ?),
                starts AS (SELECT a.session_id, min(a.i0) AS i0 FROM a JOIN b ON a.session_id = b.session_id AND b.i1 > a.i0 GROUP BY ALL)
           SELECT st.session_id, st.i0, min(b.i1) FROM starts st JOIN b ON b.session_id = st.session_id AND b.i1 > st.i0
           GROUP BY ALL ORDER BY st.session_id LIMIT ?""", [u, r, max(1, int(limit))]).fetchall()
    return [Chain(sid, int(i0), int(i1)) for sid, i0, i1 in rows]
