"""Assistant-initiated teaching: sense a teachable moment in a logged turn and ask one clarifying
question ("Did you mean Wilkerson, Ohio? Should I remember that?"); store the answer; back off from
users who decline.

A moment is a turn whose place the assistant resolved among several candidates with low confidence
or that its resolver flagged as ambiguous (a name several places share), made stronger by signs the
user was not served: the same request again, or explicit negative feedback. Or a refined request: the
user said the previous request again with a value added ("play some music" -> "play some jazz
music"), which is what they meant the first time. Only slots that map to a preference kind count."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from rapidfuzz import fuzz

from ..errors import InvalidInputError, explain
from .preferences import KEYED, Preferences
from .teaching import QUESTIONS, answer_value, normalise

__all__ = ["SLOT_KINDS", "MomentConfig", "Moment", "teachable_moment", "answer_moment"]

#: Which slot's value teaches which preference.
SLOT_KINDS = {"place_name": "place", "artist_name": "music_artist", "music_genre": "music_genre", "food_type": "cuisine",
              "news_topic": "news_source", "radio_name": "news_source", "business_type": "cuisine"}
_YES = re.compile(r"^(?:yes|yeah|yep|sure|ok|okay|please do|yes please|correct|right|that's right|exactly)\b")
_NO = re.compile(r"^(?:no thanks|no thank you|not now|stop asking|don't|do not|never|nope|no)\b")


@dataclass(frozen=True)
class MomentConfig:
    ambiguous_score: float = 0.9  # resolution score below which an entity with several candidates is ambiguous
    min_candidates: int = 2
    repeat_similarity: float = 80.0  # rapidfuzz ratio: the request is the previous one again
    max_prompts: int = 1  # questions per user within prompt_window_days
    prompt_window_days: float = 1.0
    #: ask about an ambiguous or open request only when the user showed it went wrong (negative
    #: feedback, a barge-in, the same request again); a refined request is always a moment
    require_signal: bool = True
    backoff_declines: int = 2  # declines within backoff_days after which the assistant stops asking
    backoff_days: float = 30.0
    #: (intent, kind): requests a preference completes when they name nothing ("play some music" ->
    #: music_genre); such an open request is a moment to ask "What kind of music do you like?"
    open_requests: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Moment:
    user_id: str
    kind: str
    value: str  # what the assistant will remember on "yes"
    reason: str  # ambiguous_entity | open_request | negative_feedback | repeated_request | barge_in | refined_request
    question: str
    key: str = ""  # for a keyed kind (place): the name the preference is for


def _entities(turn: dict) -> list[dict]:
    er = turn.get("entity_resolution") or {}
    return [e for e in er.get("entities") or [] if isinstance(e, dict)]


def teachable_moment(turn: dict, previous: dict | None, preferences: Preferences, *, config: MomentConfig | None = None,
                     now: datetime | None = None) -> Moment | None:
    """The question to ask after ``turn`` (a log record; ``previous``: the turn before it in the
    session), or None: no ambiguous entity of a teachable kind, the preference is known, or the
    user was asked today or declined too often lately."""
    c = config or MomentConfig()
    user = str(turn.get("user_id") or "")
    if not user:
        raise InvalidInputError(explain("user_id=''", "a teachable moment needs the user", "pass the turn's user_id"))
    now = now or datetime.now(timezone.utc)
    found = _refined(turn, previous, {k for _, k in c.open_requests}) or _ambiguous(turn, c) or _open(turn, c)
    if found is None:
        return None
    kind, key, value, reason = found
    if reason != "refined_request":  # an ambiguous or open request: ask when the user showed it went wrong
        fb = turn.get("feedback") or {}
        if fb.get("explicit") == "negative":
            reason = "negative_feedback"
        elif previous and fuzz.ratio(_text(turn), _text(previous)) >= c.repeat_similarity:
            reason = "repeated_request"
        elif fb.get("barge_in"):
            reason = "barge_in"
        elif c.require_signal:
            return None
    if (preferences.get(user, kind, key) if key else preferences.list(user, kind)):
        return None  # already known
    asked = preferences.prompts(user, since=now - timedelta(days=c.prompt_window_days))
    if sum(asked.values()) >= c.max_prompts:
        return None
    if preferences.prompts(user, since=now - timedelta(days=c.backoff_days))["declined"] >= c.backoff_declines:
        return None
    if not value:  # an open request: ask what the user likes
        question = f"{QUESTIONS.get(kind, 'What do you mean?')} I can remember it for next time."
    elif reason == "refined_request":
        question = f"By {key}, do you mean {value}? Should I remember that?"
    else:
        question = f"Did you mean {value}? Should I remember that?"
    return Moment(user, kind, value, reason, question, key)


def _text(turn: dict) -> str:
    return str((turn.get("utterance") or {}).get("text") or "")


def _ambiguous(turn: dict, c: MomentConfig) -> tuple[str, str, str, str] | None:
    """(kind, key, value, reason) of the first entity of a teachable kind the assistant was unsure of."""
    flagged = (turn.get("entity_resolution") or {}).get("status") == "ambiguous"  # the resolver itself said so
    for e in _entities(turn):
        kind = SLOT_KINDS.get(str(e.get("slot")))
        cands = e.get("candidates")
        n = len(cands) if isinstance(cands, list) else int(cands or 0)
        unsure = flagged or float(e.get("score") or 0.0) < c.ambiguous_score
        key = normalise(str(e.get("value") or ""))
        # only a keyed kind: which "wilkerson" the user means is worth remembering; an unsure match of
        # "jazz" says nothing about the user's default genre (a refined request does)
        if kind in KEYED and key and n >= c.min_candidates and unsure and e.get("resolved_value"):
            return kind, key, normalise(str(e["resolved_value"])), "ambiguous_entity"
    return None


def _open(turn: dict, c: MomentConfig) -> tuple[str, str, str, str] | None:
    """(kind, "", "", "open_request") for a request of an intent ``c.open_requests`` names, with no slot."""
    nlu = turn.get("nlu") or {}
    kind = dict(c.open_requests).get(str(nlu.get("intent")))
    if kind is None or nlu.get("slots"):
        return None
    return kind, "", "", "open_request"


def _refined(turn: dict, previous: dict | None, opened: set[str]) -> tuple[str, str, str, str] | None:
    """(kind, key, value, "refined_request") when ``turn`` is ``previous`` said again with what was
    left open added: the previous request's words are in this one (all but one in four, which may
    have been misheard either time), plus a teachable slot's value ("play some music" -> "play some
    jazz music": music_genre jazz) or a place's state ("weather in wilkerson" -> "... wilkerson
    ohio": place wilkerson -> what this turn resolved)."""
    if not previous:
        return None
    before = set(normalise(_text(previous)).split())
    now_words = set(normalise(_text(turn)).split())
    if not before or len(before - now_words) > len(before) // 4:
        return None
    said = {normalise(str(e.get("value") or "")): e for e in _entities(previous) if SLOT_KINDS.get(str(e.get("slot"))) == "place"}
    for e in _entities(turn):
        v = normalise(str(e.get("value") or ""))
        for key, e0 in said.items():
            if key and SLOT_KINDS.get(str(e.get("slot"))) == "place" and set(key.split()) <= set(v.split()) \
                    and e.get("resolved_value") and normalise(str(e["resolved_value"])) != normalise(str(e0.get("resolved_value") or "")):
                return "place", key, normalise(str(e["resolved_value"])), "refined_request"
    had = {str(s.get("name")) for s in (previous.get("nlu") or {}).get("slots") or [] if isinstance(s, dict)}
    for s in (turn.get("nlu") or {}).get("slots") or []:
        if not isinstance(s, dict):
            continue
        kind, value = SLOT_KINDS.get(str(s.get("name"))), normalise(str(s.get("value") or ""))
        if kind in opened and value and s.get("name") not in had and set(value.split()) <= now_words - before:
            return kind, "", "", "refined_request"  # ask what they like: this once may not be what they always want
    return None


def answer_moment(moment: Moment, answer: str, preferences: Preferences, *, now: datetime | None = None) -> str:
    """Handle the user's answer: yes -> remember the value as confirmed; "no, <other>" -> remember
    what they said instead as taught; no -> note the decline (the back-off counts it); anything
    else -> ignored. To an open question ("What kind of music do you like?") the answer is the
    value ("I like jazz" -> taught), or a decline. Returns the outcome."""
    t = normalise(answer)
    if not moment.value:  # an open question: the answer is the value
        value = None if _NO.match(t) else answer_value(t)
        if value:
            preferences.put(moment.user_id, moment.kind, value, key=moment.key, provenance="taught", at=now)
        outcome = "accepted" if value else "declined"
    elif _YES.match(t):
        preferences.put(moment.user_id, moment.kind, moment.value, key=moment.key, provenance="confirmed", at=now)
        outcome = "accepted"
    elif _NO.match(t):
        rest = _NO.sub("", t).strip(" ,")
        value = answer_value(re.sub(r"^(?:i meant|i mean|it's|it is)\s+", "", rest)) if rest else None
        if value and moment.key and moment.key not in value.split() and moment.kind == "place":
            value = f"{moment.key} {value}"  # "no, ohio" about wilkerson: wilkerson ohio
        if value:
            preferences.put(moment.user_id, moment.kind, value, key=moment.key, provenance="taught", at=now)
            outcome = "accepted"
        else:
            outcome = "declined"
    else:
        outcome = "ignored"
    preferences.record_prompt(moment.user_id, moment.kind, outcome, question=moment.question, at=now)
    return outcome
