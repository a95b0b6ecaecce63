"""The personal layer's habit rules — a user's own fix of a request, the words they add after a
name — and what a replay of held-out users' logs says about them.

The rules' defaults were chosen in a pilot A/B on traffic of its own (``benchmarks/habit_pilot.py``),
not by the replay: most of the times a user's own fix would fire, the request failed and the user
did not retry, and the logs cannot say whether the fix would have worked."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import InvalidInputError, explain
from .memory import GlobalMemory, PersonalMemory, row_turn, text_similarity

if TYPE_CHECKING:  # the history type only; train imports this module
    from .train import History

__all__ = ["HabitRules", "habit_rewrite", "usually_works", "habit_precision"]


@dataclass(frozen=True)
class HabitRules:
    """``fix_min``: serve a user's own fix of a request once they made it this often, when it is
    at least ``fix_similarity`` like the request (a quick retry that shares little with the request
    is more often their next request than a fix of this one); ``phrase_min``: insert the words a
    user added after a name (its state) once they did it this often; ``skip_working``: never
    rewrite a request that usually works as heard, for this user or across users (the table's own
    rule); ``after_global``: consult them only when no global candidate clears the global layer's
    threshold (else they come first); ``max_confidence``: serve them only when the recogniser's
    confidence is below this (a request heard with confidence was more often heard as said, and its
    failure is not one a user's earlier rewording fixes; 1.0, or a caller that sends no confidence:
    always). 0 switches a rule off."""

    fix_min: int = 1
    phrase_min: int = 1
    fix_similarity: float = 0.6
    skip_working: bool = True
    after_global: bool = False
    max_confidence: float = 1.0

    def check(self) -> "HabitRules":
        if self.fix_min < 0 or self.phrase_min < 0:
            raise InvalidInputError(explain(f"fix_min={self.fix_min}, phrase_min={self.phrase_min}", "must be >= 0 (0 switches the rule off)", "use e.g. 1 and 1"))
        if not 0.0 <= self.fix_similarity <= 1.0:
            raise InvalidInputError(explain(f"fix_similarity={self.fix_similarity}", "must be in [0, 1] (the signals' text similarity)", "use e.g. 0.5"))
        if not 0.0 < self.max_confidence <= 1.0:
            raise InvalidInputError(explain(f"max_confidence={self.max_confidence}", "must be in (0, 1] (the recogniser's confidence; 1 serves at any)", "use e.g. 0.85, or 1"))
        return self

    @property
    def on(self) -> bool:
        return self.fix_min > 0 or self.phrase_min > 0


def habit_rewrite(personal: PersonalMemory, user: str, q: str, rules: HabitRules, *, g: GlobalMemory | None = None,
                  blocked: set[tuple[str, str]] | frozenset = frozenset(), confidence: float | None = None) -> str | None:
    """What ``rules`` serve for ``user``'s request ``q``: their own fix, else their inserted words;
    only while the rewrite has not failed for them more often than it worked since it was served,
    never a blocked pair, and (``skip_working``) never when ``q`` usually works as heard for them or
    in the global layer ``g``; never when the recogniser's ``confidence`` reaches ``rules.max_confidence``."""
    if rules.max_confidence < 1.0 and isinstance(confidence, (int, float)) and confidence >= rules.max_confidence:
        return None
    if rules.skip_working and usually_works(personal, user, q, g):
        return None
    best, n = None, 0
    if rules.fix_min > 0:
        for text, times in personal.fixes_of(user, q).items():
            if times >= rules.fix_min and times > n and text_similarity(q, text) >= rules.fix_similarity and _trusted(personal, user, q, text, blocked):
                best, n = text, times
    if best is None and rules.phrase_min > 0:
        words = q.split()
        inserted = personal.phrase_fixes(user)
        for k, w in enumerate(words):
            for ins, times in inserted.get(w, {}).items():
                if times >= rules.phrase_min and times > n and tuple(words[k + 1 : k + 1 + len(ins)]) != ins:
                    text = " ".join(words[: k + 1] + list(ins) + words[k + 1 :])
                    if _trusted(personal, user, q, text, blocked):
                        best, n = text, times
    return best


def usually_works(personal: PersonalMemory, user: str, q: str, g: GlobalMemory | None = None, *, min_turns: int = 3) -> bool:
    """Whether ``q`` as heard worked for this user more often than not, or across users (the
    global layer's counts) in at least ``min_turns`` turns."""
    e = personal.history(user).get(q)
    if e is not None and e[1] * 2 > e[0]:
        return True
    row = g.row.get(q) if g is not None else None
    return row is not None and int(g.turns[row]) >= min_turns and int(g.successes[row]) * 2 > int(g.turns[row])


def _trusted(personal: PersonalMemory, user: str, q: str, text: str, blocked) -> bool:
    served, failed = personal.served_stats(user, q, text)
    return failed * 2 <= served and (q, text) not in blocked


def habit_precision(h: "History", users: set[str], variants: dict[str, HabitRules], g: GlobalMemory | None = None) -> dict:
    """Replay ``users``' logs (held out from training) in time order through a fresh personal
    layer and, at each request, ask each variant of the rules what it would serve. What the logs
    say about it:

    - ``wins``: the request failed and the user's retry reached what the rewrite means;
    - ``harmless``: the request worked and the rewrite means the same;
    - ``broken``: the request worked and the rewrite means something else;
    - ``other``: the request failed and the retry reached another meaning;
    - ``unfixed``: the request failed and no retry fixed it (whether the rewrite would have: the
      logs cannot say). ``precision`` counts these as losses, as the ranker's calibration does;
      ``precision_known`` leaves them out.

    Returns {"variants": {name: counts and precisions}, "failing": the users' failing requests}."""
    counts = {name: dict.fromkeys(("fired", "wins", "harmless", "broken", "other", "unfixed"), 0) for name in variants}
    personal = PersonalMemory()
    failing = 0
    for i, r in enumerate(h.rows):
        if r["user_id"] not in users:
            continue
        if not r["rewrite"]:
            failing += not r["ok"]
            personal.catch_up(r["user_id"], r["ts"])
            for name, rules in variants.items():
                new = habit_rewrite(personal, r["user_id"], r["text"], rules, g=g)
                if new is not None:
                    c = counts[name]
                    c["fired"] += 1
                    c[_outcome(h, i, personal.history(r["user_id"]).get(new))] += 1
        personal.observe(row_turn(r))
    out = {}
    for name, c in counts.items():
        right, known = c["wins"] + c["harmless"], c["fired"] - c["unfixed"]
        out[name] = {**c, "precision": right / c["fired"] if c["fired"] else None, "precision_known": right / known if known else None}
    return {"variants": out, "failing": failing, "users": len(users)}


def _outcome(h: "History", i: int, entry: list | None) -> str:
    """What the logs say about rewriting row ``i`` into a request whose personal record is
    ``entry`` ([attempts, successes, last time, the meaning it last worked with])."""
    r, meaning = h.rows[i], entry[3] if entry else None
    if r["ok"]:
        return "harmless" if meaning is not None and meaning == r["meaning"] else "broken"
    t = h.target.get(i)
    if t is None:
        return "unfixed"
    return "wins" if meaning is not None and h.rows[t]["meaning"] == meaning else "other"
