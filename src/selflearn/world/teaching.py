"""Teaching in the world: the assistant remembers what users teach it, and users with
hidden preferences make ambiguous requests, answer its questions and sometimes ask it to learn.

The assistant's side is :class:`WorldTeaching`, built on the product's teach module: the
preference store, ``teachable_moment`` / ``answer_moment`` after each turn, the guided Q&A
(:class:`~selflearn.teach.teaching.Teacher`), the preference rewriter, and entity resolution that
consults the preferences (a place several states share resolves to the state the user taught; a
request that leaves its genre or cuisine open takes the user's). It never reads the truth.

The user's side is :func:`user_answer` and :func:`guided_answers`: truthful answers from the
user's hidden preferences (with a per-user propensity to decline), and :func:`vague_text`, the
request a user says when they leave out what they always mean ("play some music").
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime

from ..labels.weak import align_slot
from ..teach.moments import Moment, MomentConfig, answer_moment, teachable_moment
from ..teach.preferences import Preferences
from ..teach.preference_rewriter import filled_in
from ..teach.teaching import QUESTIONS, Teacher, normalise
from .catalogue import STATES
from .population import User, mix

__all__ = ["WorldTeaching", "WORLD_MOMENTS", "DEFAULT_SLOTS", "state_in", "vague_text", "user_answer", "guided_answers", "decline_propensity", "starts_guided"]

#: Intents whose open request takes a preference as its default, and which slot it fills.
DEFAULT_SLOTS = {"play_music": "music_genre", "play_radio": "music_genre", "takeaway_order": "food_type",
                 "takeaway_query": "food_type", "recommendation_locations": "food_type"}
PREFERENCE_OF = {"music_genre": "music_genre", "food_type": "cuisine"}
#: Per default slot, the slots that already say what is wanted: a default would override the request
#: ("play despacito" names its song; "order two from the chinese food store" still leaves the food open).
NAMED = {"music_genre": {"artist_name", "song_name", "playlist_name", "radio_name", "podcast_name", "audiobook_name", "music_genre"},
         "food_type": {"food_type"}}
#: the world's assistant marks its open-ended intents: a request of one that names nothing is a moment to ask
WORLD_MOMENTS = MomentConfig(open_requests=tuple((intent, PREFERENCE_OF[slot]) for intent, slot in DEFAULT_SLOTS.items()))
STATE_CODE = {w: c for w, c in STATES}
STATE_WORD = {c: w for w, c in STATES}
GUIDED_SHARE = 0.1  # users who say "learn my preferences" once


@dataclass
class WorldTeaching:
    """The assistant with teaching on, for one simulation run. ``entities``: the world's entity
    records (to resolve a preferred sense or a default value to a catalogue entry)."""

    preferences: Preferences
    entities: list[dict]
    config: MomentConfig = field(default_factory=lambda: WORLD_MOMENTS)
    ask: bool = True  # assistant-initiated questions
    #: what was learned: (user_id, kind, key, how, the user's turns so far), in order
    learned: list[tuple] = field(default_factory=list)
    prompts: dict = field(default_factory=lambda: {"accepted": 0, "declined": 0, "ignored": 0})
    by_reason: Counter = field(default_factory=Counter)  # (kind, reason, outcome) -> prompts
    trace: list | None = None  # (moment, answer, request) of every question, when a list is given
    asked_on: list = field(default_factory=list)  # when each question was asked
    applied: Counter = field(default_factory=Counter)  # what entity resolution filled from preferences
    guided_users: int = 0
    guided_turns: int = 0

    def __post_init__(self) -> None:
        self._by_id = {e["id"]: e for e in self.entities}
        self._by_name = {(e["type"], e["name"]): e for e in self.entities if not e["id"].startswith("decoy")}
        self._cache: dict[str, dict] = {}
        self.turns: dict[str, int] = {}

    def known(self, user_id: str) -> dict[tuple[str, str], str]:
        if user_id not in self._cache:
            self._cache[user_id] = {(p.kind, p.key): p.value for p in self.preferences.list(user_id)}
        return self._cache[user_id]

    def _stored(self, user_id: str, before: dict, how: str) -> None:
        self._cache.pop(user_id, None)
        for k in self.known(user_id).keys() - before.keys():
            self.learned.append((user_id, k[0], k[1], how, self.turns.get(user_id, 0)))

    # -- between ASR and NLU, and inside entity resolution ---------------------------------
    def rewrite(self, utterance: str, *, user_id: str, device: dict, context: dict) -> str | None:
        """The preference rewriter for what entity resolution does not cover: places are left to it
        (adding the state to the words makes the NLU read "switzerland washington" as one name)."""
        return filled_in(utterance, {k: v for k, v in self.known(user_id).items() if k[0] not in ("place", "home_city")})

    def resolve(self, user_id: str, it: list) -> list:
        """The interpretation with the user's preferences applied by entity resolution: an ambiguous
        place takes the taught state; an open request (no named content) takes the taught default."""
        prefs = self.known(user_id)
        if not prefs:
            return it
        intent, conf, top, slots, status, ents = it
        ents = [list(e) for e in ents]
        changed = False
        for e in ents:
            if e[2] != "ambiguous" or not e[3] or "@" not in e[3]:
                continue
            eid = e[3].split("@")[0]
            senses = self._by_id.get(eid, {}).get("senses", [])
            code = state_in(prefs.get(("place", normalise(str(e[1]))), "")) or state_in(prefs.get(("home_city", ""), ""))
            if code in senses:
                e[2:5] = ["resolved", f"{eid}@{code}", f"{self._by_id[eid]['name']}, {code}"]
                changed = True
                self.applied["place sense"] += 1
        slot_type = DEFAULT_SLOTS.get(intent)
        value = prefs.get((PREFERENCE_OF.get(slot_type, ""), "")) if slot_type else None
        if value and not any(t in NAMED[slot_type] for t, _ in slots):
            ent = self._by_name.get((slot_type, value))
            slots = [list(s) for s in slots] + [[slot_type, value]]
            if ent is not None:
                ents.append([slot_type, value, "resolved", ent["id"], ent["name"], 1.0, 1])
            changed = True
            self.applied[f"default {slot_type}"] += 1
        if not changed:
            return it
        statuses = [e[2] for e in ents]
        status = "resolved" if all(s == "resolved" for s in statuses) else status
        return [intent, conf, top, slots, status, ents]

    # -- after the turn ------------------------------------------------------------------
    def after_turn(self, turn: dict, previous: dict | None, now: datetime, answer: Callable[[Moment], str]) -> Moment | None:
        """Count the user's turn; ask one question if this is a teachable moment (``answer`` gives the
        user's reply) and remember what they say."""
        user = turn["user_id"]
        self.turns[user] = self.turns.get(user, 0) + 1
        if not self.ask:
            return None
        m = teachable_moment(turn, previous, self.preferences, config=self.config, now=now)
        if m is None:
            return None
        m = replace(m, value=_spell_states(m.value), question=_spell_states(m.question))
        before = dict(self.known(user))
        said = answer(m)
        if self.trace is not None:
            self.trace.append((m, said, turn["utterance"]["text"]))
        outcome = answer_moment(m, said, self.preferences, now=now)
        self.prompts[outcome] += 1
        self.by_reason[(m.kind, m.reason, outcome)] += 1
        self.asked_on.append(now)
        self._stored(user, before, f"moment:{m.reason}")
        return m

    def guided(self, user_id: str, answers: dict[str, str]) -> None:
        """The user says "learn my preferences" and answers each question (``answers``: kind -> reply)."""
        teacher = Teacher(self.preferences)
        before = dict(self.known(user_id))
        reply = teacher.turn(user_id, "learn my preferences")
        self.guided_users += 1
        self.guided_turns += 1
        while reply is not None and reply.active:
            reply = teacher.turn(user_id, answers.get(teacher.asking(user_id) or "", "skip"))
            self.guided_turns += 1
        self._stored(user_id, before, "guided")


def state_in(value: str) -> str | None:
    """The code of the last state named in ``value`` ("wilkerson ohio" -> "OH"), or None."""
    for w in reversed(value.split()):
        if w in STATE_CODE:
            return STATE_CODE[w]
    return None


def _spell_states(text: str) -> str:
    """What the assistant says for a resolved name: "wilkerson, oh" -> "wilkerson ohio"."""
    words = text.replace(",", " ").split()
    return " ".join(STATE_WORD.get(w.upper(), w) if i == len(words) - 1 else w for i, w in enumerate(words))


# -- the user's side (hidden preferences; the simulator calls these) -------------------------
def vague_text(heard: str, value: str) -> str | None:
    """``heard`` without the words of ``value`` (the genre or cuisine the user leaves out because
    they always mean it), or None when the value cannot be found in it or nothing would remain."""
    words = heard.split()
    span = align_slot(words, value)
    if span is None:
        return None
    rest = words[: span[0]] + words[span[1] :]
    return " ".join(rest) if len(rest) >= 2 else None


def decline_propensity(user: User, seed: int) -> float:
    """How often this user declines a question: most rarely, some always (they do not want to be asked)."""
    return random.Random(mix(seed, user.idx, 13)).choice((0.05, 0.05, 0.05, 0.1, 0.1, 0.2, 1.0))


def starts_guided(user: User, seed: int) -> bool:
    return random.Random(mix(seed, user.idx, 11)).random() < GUIDED_SHARE


def user_answer(user: User, moment: Moment, intended: list, names: dict[str, str], r: random.Random, decline_p: float) -> str:
    """A truthful answer: yes when the assistant guessed what the user means, "no, I meant ..."
    with the right state for a place (``intended``: the goal's entity ids with their sense;
    ``names``: entity id -> name), no otherwise; a decline with the user's propensity."""
    if r.random() < decline_p:
        return "no thanks"
    if moment.kind == "place":
        name = " ".join(moment.value.split()[:-1])  # "wilkerson ohio": the place the assistant found, in a state
        for ent in intended:
            eid, _, code = (ent or "").partition("@")
            if code and names.get(eid) == name:
                state = STATE_WORD[code]
                return "yes" if moment.value.split()[-1:] == [state] else f"no, i meant {name} {state}"
        return "no"  # not the place they meant at all
    pref = {"music_genre": user.preferences.get("music_genre"), "cuisine": user.preferences.get("food_type")}.get(moment.kind)
    if not moment.value:  # an open question: "What kind of music do you like?"
        return f"i like {pref}" if pref else "no thanks"
    return "yes" if pref and moment.value == pref else "no"


def guided_answers(user: User) -> dict[str, str]:
    """What the user answers in the guided Q&A: their team, music, food and home state; they skip
    the rest."""
    p = user.preferences
    out = {"sports_team": p["sports_team"], "music_genre": f"i like {p['music_genre']}",
           "cuisine": p["food_type"], "home_city": f"i live in {STATE_WORD.get(p['home_state'], p['home_state'])}"}
    return {k: out.get(k, "skip") for k in QUESTIONS}
