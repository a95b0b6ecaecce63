"""Goals and the wordings users say them with, and what the recogniser makes of them.

A goal is one sentence of the set: its intent and slot values. Its surface
forms are the ways a user can ask for it: the sentence itself, other sentences
of the set with the same intent and slot values, other sentences with the same
intent and slot types filled with this goal's values, and edits that drop,
add or reorder words or add detail (the state of a place).

Recognition of a surface form is taken from the corpus when the corpus has the
sentence; a composed form reuses, word by word, what the recogniser heard for
the same words of its source sentence in the same condition (word alignment of
reference and hypothesis), so its errors are real errors of the real model.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from dataclasses import dataclass

from rapidfuzz import fuzz

from .catalogue import STATES, Catalogue
from .corpus import Sentence

__all__ = ["Surface", "align", "build_surfaces", "Lexicon"]

WAKE = {"alexa", "siri", "olly", "google", "hey", "ok", "okay", "computer"}
PREPOSITIONS = {"in", "at", "for", "on", "to", "from", "by", "about", "with"}
STATE_WORD = {code: word for word, code in STATES}


@dataclass(frozen=True)
class Surface:
    goal: int  # index of the goal sentence
    kind: str  # original | sibling | template | drop | add | reorder | detail
    words: tuple[str, ...]
    #: per word: (slurp_id, position) it came from, or None for an added word
    source: tuple[tuple[int, int] | None, ...]
    corpus_id: int | None = None  # set when the surface is a corpus sentence as is
    sense: str | None = None  # the state named by a detail form

    @property
    def text(self) -> str:
        return " ".join(self.words)


def align(reference: list[str], hypothesis: list[str]) -> list[list[str]]:
    """For each reference word, the hypothesis words it became (insertions go to
    the word before them, or the first word; a deleted word becomes []).
    Minimum edit cost where a substitution of similar-looking words is cheaper,
    so "puth" pairs with "poos" rather than with an inserted "now"."""
    n, m = len(reference), len(hypothesis)
    out: list[list[str]] = [[] for _ in reference]
    if not n:
        return out
    def sub(a: str, b: str) -> float:
        return 0.0 if a == b else 0.6 + 0.8 * (1 - fuzz.ratio(a, b) / 100)

    d = [[0.0] * (m + 1) for _ in range(n + 1)]
    for i in range(n + 1):
        d[i][0] = i
    for j in range(m + 1):
        d[0][j] = j
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            d[i][j] = min(d[i - 1][j - 1] + sub(reference[i - 1], hypothesis[j - 1]), d[i - 1][j] + 1, d[i][j - 1] + 1)
    i, j, pending = n, m, []
    while i > 0 or j > 0:
        if i > 0 and j > 0 and d[i][j] == d[i - 1][j - 1] + sub(reference[i - 1], hypothesis[j - 1]):
            out[i - 1] = [hypothesis[j - 1]] + pending
            pending, i, j = [], i - 1, j - 1
        elif j > 0 and (i == 0 or d[i][j] == d[i][j - 1] + 1):
            pending.insert(0, hypothesis[j - 1])
            j -= 1
        else:
            out[i - 1] = pending
            pending, i = [], i - 1
    if pending:
        out[0] = pending + out[0]
    return out


class Lexicon:
    """What each word became, per condition, over all aligned corpus sentences."""

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str], Counter] = defaultdict(Counter)
        self.alignments: dict[tuple[int, str], list[list[str]]] = {}

    def add(self, slurp_id: int, condition: str, reference: list[str], hypothesis: list[str]) -> None:
        a = align(reference, hypothesis)
        self.alignments[(slurp_id, condition)] = a
        for w, heard in zip(reference, a):
            self.counts[(w, condition)][" ".join(heard)] += 1

    def hear(self, word: str, source: tuple[int, int] | None, condition: str) -> tuple[str, bool]:
        """(what was heard, whether the corpus knew it)."""
        if source is not None:
            a = self.alignments.get((source[0], condition))
            if a is not None and source[1] < len(a):
                return " ".join(a[source[1]]), True
        c = self.counts.get((word, condition))
        if c:
            return c.most_common(1)[0][0], True
        return word, False


def build_surfaces(sentences: list[Sentence], catalogue: Catalogue, *, seed: int = 0, max_siblings: int = 3, max_templates: int = 2) -> list[Surface]:
    rng = random.Random(seed)
    by_goal: dict[tuple, list[int]] = defaultdict(list)
    by_types: dict[tuple, list[int]] = defaultdict(list)
    for i, s in enumerate(sentences):
        by_goal[(s.intent, tuple(sorted(s.slots)))].append(i)
        by_types[(s.intent, tuple(sorted(t for t, _ in s.slots)))].append(i)
    out: list[Surface] = []
    for g, s in enumerate(sentences):
        words = s.text.split()
        src = tuple((s.slurp_id, k) for k in range(len(words)))
        out.append(Surface(g, "original", tuple(words), src, s.slurp_id))
        sibs = [i for i in by_goal[(s.intent, tuple(sorted(s.slots)))] if i != g]
        for i in rng.sample(sibs, min(max_siblings, len(sibs))):
            o = sentences[i]
            out.append(Surface(g, "sibling", tuple(o.text.split()), tuple((o.slurp_id, k) for k in range(len(o.text.split()))), o.slurp_id))
        if s.slots:
            temps = [i for i in by_types[(s.intent, tuple(sorted(t for t, _ in s.slots)))] if i != g and i not in sibs]
            for i in rng.sample(temps, min(max_templates, len(temps))):
                filled = _fill(sentences[i], s)
                if filled:
                    out.append(Surface(g, "template", *filled))
        tags = s.tags or ("",) * len(words)
        keep = [k for k, w in enumerate(words) if not (tags[k] == "" and (w in WAKE or w == "please"))]
        if 0 < len(keep) < len(words):
            out.append(Surface(g, "drop", tuple(words[k] for k in keep), tuple(src[k] for k in keep)))
        elif words[0] not in WAKE:
            extra = rng.choice((("please",), ("alexa",), ("can", "you")))
            out.append(Surface(g, "add", extra + tuple(words), (None,) * len(extra) + src))
        moved = _reorder(words, tags)
        if moved:
            out.append(Surface(g, "reorder", tuple(words[k] for k in moved), tuple(src[k] for k in moved)))
        for k, (t, v) in enumerate(s.slots):
            e = catalogue.entity_for(t, v) if t == "place_name" else None
            if e is None or len(e.senses) < 2:
                continue
            end = _slot_end(tags, k)
            for code in e.senses:
                state = STATE_WORD[code]
                out.append(Surface(g, "detail", tuple(words[:end]) + (state,) + tuple(words[end:]), src[:end] + (None,) + src[end:], sense=code))
    return out


def _slot_end(tags: tuple[str, ...], k: int) -> int:
    """Index just past the k-th slot span."""
    n, prev = -1, ""
    for j, t in enumerate(tags):
        if t and t != prev:
            n += 1
        if n == k and t and (j + 1 == len(tags) or tags[j + 1] != t):
            return j + 1
        prev = t
    return len(tags)


def _reorder(words: list[str], tags: tuple[str, ...]) -> list[int] | None:
    """Move a sentence-final 'preposition + slot' phrase to the front."""
    if not tags or not tags[-1]:
        return None
    start = len(tags) - 1
    while start > 0 and tags[start - 1] == tags[-1]:
        start -= 1
    if start < 2 or words[start - 1] not in PREPOSITIONS:
        return None
    head = list(range(start - 1, len(words)))
    return head + list(range(0, start - 1))


def _fill(template: Sentence, goal: Sentence) -> tuple[tuple[str, ...], tuple] | None:
    """The template's wording with the goal's slot values, slot types matched in order."""
    values: dict[str, list[tuple[int, int]]] = defaultdict(list)
    gwords = goal.text.split()
    spans, prev = [], ""
    for j, t in enumerate(goal.tags):
        if t and t != prev:
            spans.append([t, j, j + 1])
        elif t:
            spans[-1][2] = j + 1
        prev = t
    for t, a, b in spans:
        values[t].append((a, b))
    words, source = [], []
    twords, prev, used = template.text.split(), "", defaultdict(int)
    for j, t in enumerate(template.tags):
        if not t:
            words.append(twords[j])
            source.append((template.slurp_id, j))
        elif t != prev:
            k = used[t]
            used[t] += 1
            if k >= len(values[t]):
                return None
            a, b = values[t][k]
            words.extend(gwords[a:b])
            source.extend((goal.slurp_id, x) for x in range(a, b))
        prev = t
    return tuple(words), tuple(source)
