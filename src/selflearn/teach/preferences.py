"""What users taught the assistant about themselves, kept per user in the store: typed preferences
with provenance (taught, confirmed, inferred), confidence and timestamps; and the log of teaching
prompts the assistant asked, so it can back off from users who decline.

All writes go through the store's one write connection, each in its own transaction."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from ..errors import InvalidInputError, explain
from ..store.store import Store

__all__ = ["KINDS", "KEYED", "PROVENANCE", "OUTCOMES", "Preference", "Preferences"]

#: The preference kinds and what each holds. The keyed kinds map a name (their key: "the lamp",
#: "wilkerson") to what the user means by it; the others hold one value per user (key "").
KINDS: dict[str, str] = {
    "sports_team": "the team the user follows (\"golden state warriors\")",
    "music_genre": "the music the user plays by default (\"jazz\")",
    "music_artist": "the user's favourite artist (\"taylor swift\")",
    "cuisine": "the food the user likes (\"italian\")",
    "home_city": "where the user lives, with its state when names repeat (\"wilkerson ohio\")",
    "device_nickname": "what the user calls a device (key: \"the lamp\") -> its device id",
    "place": "which of the places sharing a name the user means (key: \"wilkerson\") -> \"wilkerson ohio\"",
    "news_source": "the news the user listens to (\"bbc\")",
}
KEYED = ("device_nickname", "place")
#: Where a preference came from: the user said it, the user said yes to the assistant's question,
#: or the assistant inferred it. The user's word (taught, confirmed) beats an inference.
PROVENANCE = ("taught", "confirmed", "inferred")
_STRENGTH = {"taught": 1, "confirmed": 1, "inferred": 0}
OUTCOMES = ("accepted", "declined", "ignored")
MAX_TEXT = 200


@dataclass(frozen=True)
class Preference:
    user_id: str
    kind: str
    key: str
    value: str
    provenance: str
    confidence: float
    created_at: datetime
    updated_at: datetime

    def to_dict(self) -> dict:
        return {"user_id": self.user_id, "kind": self.kind, "key": self.key, "value": self.value, "provenance": self.provenance,
                "confidence": self.confidence, "created_at": self.created_at.isoformat(), "updated_at": self.updated_at.isoformat()}


def _text(name: str, v, *, empty_ok: bool = False) -> str:
    if not isinstance(v, str) or (not v.strip() and not empty_ok) or len(v) > MAX_TEXT:
        raise InvalidInputError(explain(f"{name}={v!r}", f"must be a {'' if empty_ok else 'non-empty '}string of at most {MAX_TEXT} characters",
                                        f"pass a short {name}"))
    return " ".join(v.split())


def _kind(kind) -> str:
    if kind not in KINDS:
        raise InvalidInputError(explain(f"kind={kind!r}", f"must be one of {sorted(KINDS)}", "use a known preference kind"))
    return kind


def _now(at: datetime | None) -> datetime:
    at = at or datetime.now(timezone.utc)
    return at if at.tzinfo else at.replace(tzinfo=timezone.utc)


class Preferences:
    """The store's preferences and teaching prompts. Methods take the assistant's own user id (what
    a request or the CLI names); the tables hold only its keyed pseudonym (the store's key)."""

    def __init__(self, store: Store):
        self.store = store

    def _user(self, user_id: str) -> str:
        return self.store.pseudonyms().of(_text("user_id", user_id))

    # -- preferences -------------------------------------------------------------------
    def put(self, user_id: str, kind: str, value: str, *, key: str = "", provenance: str = "taught", confidence: float = 1.0,
            at: datetime | None = None) -> Preference:
        """Remember (or update) a preference. An inferred one never replaces what the user taught
        or confirmed; the stored preference is returned either way."""
        user_id, value, kind = self._user(user_id), _text("value", value).lower(), _kind(kind)
        key = _text("key", key, empty_ok=True).lower()
        if kind in KEYED and not key:
            raise InvalidInputError(explain("key=''", f"a {kind} preference needs the name it is for as the key",
                                            "pass e.g. key='the lamp' (device_nickname) or key='wilkerson' (place)"))
        if provenance not in PROVENANCE:
            raise InvalidInputError(explain(f"provenance={provenance!r}", f"must be one of {list(PROVENANCE)}", "use 'taught' for what the user said"))
        if not isinstance(confidence, (int, float)) or not 0.0 <= float(confidence) <= 1.0:
            raise InvalidInputError(explain(f"confidence={confidence!r}", "must be a number in [0, 1]", "e.g. 1.0 for taught, lower for inferred"))
        at = _now(at)
        with self.store.transaction() as con:
            old = con.execute("SELECT provenance, created_at FROM preferences WHERE user_id = ? AND kind = ? AND key = ?", [user_id, kind, key]).fetchall()
            if not old or _STRENGTH[provenance] >= _STRENGTH[old[0][0]]:  # an inference never overwrites the user's word
                con.execute("INSERT OR REPLACE INTO preferences VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                            [user_id, kind, key, value, provenance, float(confidence), old[0][1] if old else at, at])
        return self._get(user_id, kind, key)  # type: ignore[return-value]

    def get(self, user_id: str, kind: str, key: str = "") -> Preference | None:
        return self._get(self._user(user_id), kind, key)

    def _get(self, pseudonym: str, kind: str, key: str) -> Preference | None:
        rows = self._list(pseudonym, kind)
        return next((p for p in rows if p.key == " ".join(key.split()).lower()), None)

    def list(self, user_id: str, kind: str | None = None) -> list[Preference]:
        """What is remembered about a user (every kind, or one)."""
        return self._list(self._user(user_id), kind)

    def _list(self, user_id: str, kind: str | None) -> list[Preference]:
        if kind is not None:
            _kind(kind)
        rows = self.store.reader().execute(
            "SELECT * FROM preferences WHERE user_id = ? AND (? IS NULL OR kind = ?) ORDER BY kind, key", [user_id, kind, kind]).fetchall()
        return [Preference(*r) for r in rows]

    def delete(self, user_id: str, kind: str | None = None, key: str | None = None) -> int:
        """Forget one preference, one kind, or (no kind) everything the user taught and every prompt
        asked; returns how many preferences were deleted."""
        user_id = self._user(user_id)
        if kind is not None:
            _kind(kind)
        key = None if key is None else " ".join(key.split()).lower()
        with self.store.transaction() as con:
            where = "user_id = ? AND (? IS NULL OR kind = ?) AND (? IS NULL OR key = ?)"
            n = con.execute(f"SELECT count(*) FROM preferences WHERE {where}", [user_id, kind, kind, key, key]).fetchall()[0][0]
            con.execute(f"DELETE FROM preferences WHERE {where}", [user_id, kind, kind, key, key])
            if kind is None:
                con.execute("DELETE FROM teaching_prompts WHERE user_id = ?", [user_id])
        return int(n)

    # -- teaching prompts ----------------------------------------------------------------
    def record_prompt(self, user_id: str, kind: str, outcome: str, *, question: str = "", at: datetime | None = None) -> None:
        """Log a teaching question the assistant asked and how the user answered."""
        user_id, kind = self._user(user_id), _kind(kind)
        if outcome not in OUTCOMES:
            raise InvalidInputError(explain(f"outcome={outcome!r}", f"must be one of {list(OUTCOMES)}", "record what the user answered"))
        with self.store.transaction() as con:
            con.execute("INSERT INTO teaching_prompts VALUES (?, ?, ?, ?, ?)", [user_id, kind, _now(at), _text("question", question, empty_ok=True), outcome])

    def prompts(self, user_id: str, *, since: datetime | None = None) -> dict[str, int]:
        """How many teaching prompts the user got (since ``since``), by outcome."""
        user_id = self._user(user_id)
        rows = self.store.reader().execute(
            "SELECT outcome, count(*) FROM teaching_prompts WHERE user_id = ? AND (? IS NULL OR asked_at >= ?) GROUP BY 1",
            [user_id, since, since]).fetchall()
        return {o: 0 for o in OUTCOMES} | dict(rows)
