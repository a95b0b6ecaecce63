"""Entity catalogues built from the sentence set's slot values, and the resolver.

Ambiguity is made real in two ways: some places exist in several states (the
keynote's Wilkerson, Washington vs Wilkerson, California), and names get
confusable neighbours (a contact "jon" beside "john", a song that shares all
but one word with another). Resolution is fuzzy (rapidfuzz), so small
recognition errors are recovered and larger ones land on the wrong entry.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from rapidfuzz import fuzz, process

from .corpus import Sentence

__all__ = ["CATALOGUE_TYPES", "STATES", "Catalogue", "Entity", "Resolution"]

#: slot types resolved against a catalogue; others (dates, times...) are taken as said
CATALOGUE_TYPES = frozenset(
    {
        "place_name", "person", "song_name", "artist_name", "business_name", "radio_name",
        "playlist_name", "audiobook_name", "podcast_name", "game_name", "house_place",
        "device_type", "music_genre", "food_type", "business_type", "news_topic",
    }
)

#: states a place can be in; names that Whisper and SLURP both know as words
STATES = (
    ("california", "CA"), ("texas", "TX"), ("florida", "FL"), ("washington", "WA"),
    ("georgia", "GA"), ("ohio", "OH"), ("virginia", "VA"), ("oregon", "OR"),
    ("nevada", "NV"), ("arizona", "AZ"), ("michigan", "MI"), ("colorado", "CO"),
)

RESOLVE_AT = 78.0
#: fuzzy-score points an entry gains from its popularity percentile within its type
POPULARITY_WEIGHT = 12.0


@dataclass(frozen=True)
class Entity:
    id: str
    type: str
    name: str
    popularity: float
    #: for places: state codes, most popular first
    senses: tuple[str, ...] = ()


@dataclass(frozen=True)
class Resolution:
    status: str  # resolved | ambiguous | unresolved
    entity_id: str | None
    name: str | None
    score: float
    candidates: int


class Catalogue:
    """Catalogues per slot type. ``build`` derives them from sentences; ``resolve`` looks up."""

    def __init__(self, entities: list[Entity]):
        self.entities = entities
        self.by_type: dict[str, list[Entity]] = {}
        for e in entities:
            self.by_type.setdefault(e.type, []).append(e)
        self._names = {t: [e.name for e in es] for t, es in self.by_type.items()}
        self._prior = {}
        for es in self.by_type.values():
            ranked = sorted(range(len(es)), key=lambda k: es[k].popularity)
            for pct, k in enumerate(ranked):
                self._prior[es[k].id] = POPULARITY_WEIGHT * pct / max(len(es) - 1, 1)
        self._exact = {(e.type, e.name): e for e in entities if not e.id.startswith("decoy")}
        self._state_words = {w: code for w, code in STATES}

    @classmethod
    def build(cls, sentences: list[Sentence], *, seed: int = 0, ambiguous_share: float = 0.25, decoy_share: float = 0.3) -> "Catalogue":
        rng = random.Random(seed)
        values: dict[tuple[str, str], int] = {}
        for s in sentences:
            for t, v in s.slots:
                if t in CATALOGUE_TYPES:
                    values[(t, v)] = values.get((t, v), 0) + 1
        entities: list[Entity] = []
        vocab = sorted({w for (_, v) in values for w in v.split()})
        codes = [c for _, c in STATES]
        for n, ((t, v), count) in enumerate(sorted(values.items())):
            pop = count * rng.uniform(0.5, 2.0)
            senses: tuple[str, ...] = ()
            if t == "place_name":
                k = 1 + (rng.random() < ambiguous_share) * rng.choice((1, 1, 2))
                senses = tuple(rng.sample(codes, k))
            entities.append(Entity(f"{t}:{n}", t, v, pop, senses))
            if t in {"person", "song_name", "artist_name", "business_name", "podcast_name", "audiobook_name"} and rng.random() < decoy_share:
                entities.append(Entity(f"decoy:{t}:{n}", t, _confusable(v, vocab, rng), pop * rng.uniform(0.5, 3.0)))
        return cls(entities)

    def entity_for(self, slot_type: str, value: str) -> Entity | None:
        return self._exact.get((slot_type, value))

    def resolve(self, slot_type: str, value: str, utterance_words: frozenset[str]) -> Resolution:
        """Resolve a slot value: the best fuzzy match with a popularity prior (so a
        popular near-namesake can win over an obscure exact name, as in real
        catalogue search); a
        place in several states takes the state named in the utterance, else its
        most popular state (status ``ambiguous``)."""
        names = self._names.get(slot_type)
        if not names or not value:
            return Resolution("unresolved", None, None, 0.0, 0)
        hits = process.extract(value, names, scorer=fuzz.WRatio, limit=5, score_cutoff=RESOLVE_AT - 10)
        good = [h for h in hits if h[1] >= RESOLVE_AT]
        if not good:
            return Resolution("unresolved", None, None, hits[0][1] / 100 if hits else 0.0, 0)
        entries = self.by_type[slot_type]
        top = max(good, key=lambda h: (h[1] + self._prior[entries[h[2]].id], -h[2]))
        e = entries[top[2]]
        if len(e.senses) > 1:
            named = [c for w, c in self._state_words.items() if w in utterance_words and c in e.senses]
            if named:
                return Resolution("resolved", f"{e.id}@{named[0]}", f"{e.name}, {named[0]}", top[1] / 100, len(good))
            return Resolution("ambiguous", f"{e.id}@{e.senses[0]}", f"{e.name}, {e.senses[0]}", top[1] / 100, len(good) + len(e.senses) - 1)
        sense = f"@{e.senses[0]}" if e.senses else ""
        return Resolution("resolved", e.id + sense, e.name + (f", {e.senses[0]}" if e.senses else ""), top[1] / 100, len(good))


def _confusable(name: str, vocab: list[str], rng: random.Random) -> str:
    """A neighbour of ``name``: one word swapped for a same-initial word, or one letter changed."""
    words = name.split()
    i = rng.randrange(len(words))
    w = words[i]
    same = [x for x in vocab if x[:1] == w[:1] and x != w and abs(len(x) - len(w)) <= 3]
    if len(words) > 1 and same:
        words[i] = rng.choice(same)
    elif len(w) > 3:
        j = rng.randrange(1, len(w) - 1)
        words[i] = w[:j] + rng.choice("aeiouy") + w[j + 1 :]
    else:
        words.append(rng.choice(vocab))
    return " ".join(words)
