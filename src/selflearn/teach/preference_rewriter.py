"""Preferences used on the very next request: a rewriter (the world's and the service's hook between
ASR and NLU) that fills what an ambiguous request leaves out with what the user taught:
"play the game" -> "play the golden state warriors game", "find a restaurant near me" -> "find an
italian restaurant near me", "weather in wilkerson" -> "weather in wilkerson ohio", "turn on the
lamp" -> "turn on the desk light"."""

from __future__ import annotations

import re

from .preferences import KEYED, Preferences

__all__ = ["apply_preferences", "filled_in", "PreferenceRewriter"]


def _has(text: str, phrase: str) -> bool:
    return re.search(rf"\b{re.escape(phrase)}\b", text) is not None


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def apply_preferences(text: str, prefs: dict[tuple[str, str], str]) -> str:
    """``text`` with the user's preferences filled in (``prefs``: (kind, key) -> value); pure."""
    t = " ".join(text.lower().split())
    for (kind, key), value in prefs.items():
        if kind in KEYED and key and _has(t, key) and not _has(t, value):  # "the lamp" -> the device; "wilkerson" -> "wilkerson ohio"
            t = re.sub(rf"\b{re.escape(key)}\b", value, t, count=1)
    city = prefs.get(("home_city", ""))
    if city:
        words = city.split()
        for n in range(len(words) - 1, 0, -1):  # "wilkerson" said, "wilkerson ohio" taught: add what was left out
            head = " ".join(words[:n])
            if _has(t, head) and not _has(t, city):
                t = re.sub(rf"\b{re.escape(head)}\b", city, t, count=1)
                break
    team = prefs.get(("sports_team", ""))
    if team and not _has(t, team):
        t = re.sub(r"\b(the|tonight's|today's|last night's) (game|match|score)\b", rf"\1 {team} \2", t, count=1)
        t = re.sub(r"\bmy team\b", f"the {team}", t, count=1)
    food = prefs.get(("cuisine", ""))
    if food and not _has(t, food):
        t = re.sub(r"\b(?:a|an|some) (restaurant|place to eat)\b", lambda m: f"{_article(food)} {food} {m.group(1)}", t, count=1)
        t = re.sub(r"\b(?<!\w )(restaurants) (near|around|close)\b", rf"{food} \1 \2", t, count=1)
    genre = prefs.get(("music_genre", ""))
    if genre and not _has(t, genre):
        t = re.sub(r"\bplay (some )?music\b", lambda m: f"play {m.group(1) or ''}{genre} music", t, count=1)
    artist = prefs.get(("music_artist", ""))
    if artist:
        t = re.sub(r"\bmy favou?rite (?:artist|singer|band)\b", artist, t, count=1)
    source = prefs.get(("news_source", ""))
    if source and not _has(t, source):
        t = re.sub(r"^((?:play|read|tell me|what's|what is|give me) (?:me )?(?:the )?(?:latest )?news)$", rf"\1 from {source}", t, count=1)
    return t


def filled_in(text: str, prefs: dict[tuple[str, str], str]) -> str | None:
    """``text`` with ``prefs`` filled in, or None when they change nothing (or there are none)."""
    if not prefs:
        return None
    new = apply_preferences(text, prefs)
    return new if new != " ".join(text.lower().split()) else None


class PreferenceRewriter:
    """A :class:`~selflearn.rewriters.Rewriter` over the store's preferences: returns the
    request with the user's preferences filled in, or None when nothing applies."""

    def __init__(self, preferences: Preferences):
        self.preferences = preferences

    def rewrite(self, utterance: str, *, user_id: str, device: dict, context: dict) -> str | None:
        if not user_id or not utterance.strip() or len(utterance) > 1000:
            return None
        return filled_in(utterance, {(p.kind, p.key): p.value for p in self.preferences.list(user_id)})
