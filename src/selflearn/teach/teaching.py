"""Teaching turns: what a user tells the assistant about themselves, the guided Q&A that
"learn my preferences" starts, and the answer to a question the assistant asked.

Pure text handling plus the preference store; one :class:`Teacher` keeps each user's Q&A state."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .preferences import Preferences

__all__ = ["normalise", "answer_value", "parse_statement", "Teacher", "TeachingReply", "QUESTIONS", "START_PHRASES"]

START_PHRASES = ("learn my preferences", "learn about me", "teach you about me", "get to know me")
#: The guided Q&A asks these, in this order (device nicknames are taught by statement: "call X the lamp").
QUESTIONS: dict[str, str] = {
    "sports_team": "Which sports team do you follow?",
    "music_genre": "What kind of music do you like?",
    "music_artist": "Who is your favourite artist?",
    "cuisine": "What kind of food do you like?",
    "home_city": "Which city do you live in? Add the state if the name is common.",
    "news_source": "Where do you like to get your news from?",
}
#: How the assistant names each kind back to the user.
SAID = {"sports_team": "your team", "music_genre": "your music", "music_artist": "your favourite artist", "cuisine": "your food",
        "home_city": "your home city", "device_nickname": "what you call a device", "news_source": "your news source",
        "place": "the place you mean"}
_SKIP = {"thanks", "thank you", "skip", "no", "none", "nothing", "pass", "next", "i don't know", "i dont know", "not sure", "no preference", "no thanks"}
_STOP = {"stop", "cancel", "that's all", "thats all", "done", "quit", "enough", "exit"}
_LEAD = re.compile(r"^(?:i (?:really )?(?:like|love|prefer|enjoy|follow|listen to|support)|it's|it is|my favou?rite (?:\w+ )?is|"
                   r"i live in|i'm from|i am from|mostly|probably|definitely|the)\s+")

#: (pattern, kind, value group, key group or None): statements users make to teach.
PATTERNS: tuple[tuple[re.Pattern, str, str, str | None], ...] = tuple(
    (re.compile(p), kind, v, k) for p, kind, v, k in (
        (r"\bi(?:'m| am) (?:a big |a huge |an |a )?(?P<v>.+?) fan\b", "sports_team", "v", None),
        (r"\bmy (?:favou?rite )?team is (?:the )?(?P<v>.+)$", "sports_team", "v", None),
        (r"\bi (?:really )?(?:like|love|prefer|enjoy) (?P<v>[a-z]+(?: [a-z]+)?) (?:food|restaurants?|cuisine)\b", "cuisine", "v", None),
        (r"\bi (?:really )?(?:like|love|prefer|enjoy|listen to) (?P<v>[a-z&' ]+?) music\b", "music_genre", "v", None),
        (r"\bmy favou?rite (?:artist|singer|band|musician) is (?P<v>.+)$", "music_artist", "v", None),
        (r"\b(?:i live in|my home(?: ?town| city)? is|i'm from|i am from) (?P<v>.+)$", "home_city", "v", None),
        (r"\bi (?:get|read|listen to|watch) (?:my |the )?news (?:from|on) (?P<v>.+)$", "news_source", "v", None),
        (r"\bmy news source is (?P<v>.+)$", "news_source", "v", None),
        (r"\bwhen i say (?P<k>.+?),? i mean (?P<v>.+)$", "device_nickname", "v", "k"),
        (r"\bcall (?P<v>.+?) (?P<k>the [a-z]+)$", "device_nickname", "v", "k"),
    )
)


def normalise(text: str) -> str:
    return " ".join(re.sub(r"[^\w'&:\- ]+", " ", text.lower()).split())


def parse_statement(text: str) -> list[tuple[str, str, str]]:
    """Preferences stated in ``text`` as (kind, key, value): "I'm a Warriors fan" ->
    [("sports_team", "", "warriors")]; "call the kitchen light the lamp" -> [("device_nickname",
    "the lamp", "the kitchen light")]. Empty when nothing is taught."""
    t = normalise(text)
    out = []
    for pattern, kind, v, k in PATTERNS:
        m = pattern.search(t)
        value = "" if not m else m.group(v).strip() if kind == "device_nickname" else _value(m.group(v))
        if value and kind not in {x[0] for x in out}:
            out.append((kind, m.group(k).strip() if k else "", value))
    return out


def answer_value(text: str) -> str | None:
    """The value in an answer to a teaching question ("I really like jazz" -> "jazz"), or None to skip."""
    t = normalise(text)
    if t in _SKIP or not t:
        return None
    prev = None
    while prev != t:
        prev, t = t, _LEAD.sub("", t).strip()
    return _value(t) or None


def _value(v: str) -> str:
    """A stated value without filler: leading "the", trailing "music", "food", "please"."""
    prev = None
    while prev != v:
        prev = v
        v = re.sub(r"\s+(?:music|food|please|thanks|thank you)$", "", re.sub(r"^the\s+", "", v.strip())).strip()
    return v


@dataclass
class TeachingReply:
    reply: str  # what the assistant says
    stored: list[dict] = field(default_factory=list)  # preferences remembered by this turn
    active: bool = False  # the Q&A expects another answer


class Teacher:
    """Customer-initiated teaching: ``turn(user, text)`` starts the guided Q&A on a start phrase,
    takes each answer (skip, or stop at any time) and stores it as taught; a statement such as "I'm a
    Warriors fan" is stored directly. Returns None for a turn that is not about teaching."""

    def __init__(self, preferences: Preferences, *, kinds: tuple[str, ...] = tuple(QUESTIONS)):
        unknown = [k for k in kinds if k not in QUESTIONS]
        if unknown:
            from ..errors import InvalidInputError, explain

            raise InvalidInputError(explain(f"kinds={unknown}", f"must be among {list(QUESTIONS)}", "ask about known kinds"))
        self.preferences = preferences
        self.kinds = kinds
        self._pending: dict[str, list[str]] = {}  # user -> kinds still to ask, the first is being asked

    def active(self, user_id: str) -> bool:
        return user_id in self._pending

    def asking(self, user_id: str) -> str | None:
        """The preference kind the Q&A is asking this user about, or None."""
        queue = self._pending.get(user_id)
        return queue[0] if queue else None

    def turn(self, user_id: str, text: str) -> TeachingReply | None:
        t = normalise(text)
        if user_id in self._pending:
            return self._answer(user_id, t)
        if any(p in t for p in START_PHRASES):
            self._pending[user_id] = list(self.kinds)
            return TeachingReply("Sure. You can say skip, or stop at any time. " + QUESTIONS[self.kinds[0]], active=True)
        taught = parse_statement(t)
        if not taught:
            return None
        stored = [self.preferences.put(user_id, kind, value, key=key).to_dict() for kind, key, value in taught]
        said = "; ".join(f"{SAID[p['kind']]}: {p['value']}" for p in stored)
        return TeachingReply(f"Got it, I'll remember {said}.", stored)

    def _answer(self, user_id: str, t: str) -> TeachingReply:
        queue = self._pending[user_id]
        if t in _STOP:
            del self._pending[user_id]
            return TeachingReply("OK, that's all for now. Say \"learn my preferences\" any time to add more.")
        stored = []
        value = answer_value(t)
        if value is not None:
            stored.append(self.preferences.put(user_id, queue[0], value).to_dict())
        queue.pop(0)
        if not queue:
            del self._pending[user_id]
            return TeachingReply("Thanks, I'll remember that." if stored else "OK, all done.", stored)
        return TeachingReply(("Got it. " if stored else "OK. ") + QUESTIONS[queue[0]], stored, active=True)
