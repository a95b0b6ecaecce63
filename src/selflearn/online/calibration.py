"""How the online layers' serving thresholds are chosen on held-out users' logs.

Each held-out request the replay sampled is judged by what its top candidate would have done, in the
A/B's terms (a win fixes a failing request; a loss breaks one that worked, or leaves a failing one
failing another way):

- a failing request a retry fixed with another meaning: a **win** when the candidate means what the
  retry reached, else it is **still failing**;
- a request that worked: **harmless** when the candidate means the same, else **broken**;
- a failing request whose retry worked with the meaning it already had (it failed for another
  reason): **harmless** when the candidate means that too, else it is **still failing**;
- a failing request no retry fixed (the user gave up, or nothing serves it): the logs do not say what
  its user meant. Its text's other failures do: of the chains that started from the same words and
  reached a working turn (any user's), the share that reached the candidate's meaning is the chance
  that the rewrite fixes it (the table's assumption: that a user gave up says nothing about what they
  meant), shrunk by one pseudo-chain; the rest of the chance it is still failing. A request whose
  failures no retry ever fixed ("what is your mother language": no skill serves it) is still failing
  whatever it is rewritten to.

A rewrite that leaves a failing request failing is a loss only when the failure moves to another
component (the A/B's "defective another way"); the logs cannot see components, so such a rewrite
counts as ``still_failing_loss`` of a loss (:func:`calibrate` in train.py; default 0: only what a
rewrite breaks counts).

"Means" is judged by :func:`covers`: the same intent, with every word of the reference's slot values
among the candidate's ("will it rain this week" means "weather this week" plus what kind of weather;
"thanksgiving turkey" covers "turkey"). The understanding's exact key would call such rewrites wrong
(the recogniser and the NLU split the same request's slots differently from turn to turn).

A request the table rewrites never reaches the online layers, so it is not judged here: the table's
rules and the online thresholds together decide every rewrite served. The threshold of each source
(the global layer, the personal layer's ranked candidates) is the lowest at which its judged wins
outnumber its losses ``min_ratio`` to 1.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

from ..errors import InvalidInputError, explain
from .ranker import choose_threshold, choose_threshold_by_harm, precision_coverage

if TYPE_CHECKING:
    from .train import History, OnlineConfig

__all__ = ["covers", "intended_meanings", "fix_chance", "outcome", "judge_top", "Judged", "win_loss_curve", "choose_threshold_by_win_loss", "calibrate_thresholds", "PRIOR_CHAINS"]

PRIOR_CHAINS = 1.0  # pseudo-chains that reached another meaning: one fixed chain alone is a coin toss


@lru_cache(maxsize=100_000)
def _meaning_parts(key: str) -> tuple[str, frozenset]:
    """A meaning key (``intent|name=value;...``) as its intent and the words of its slot values."""
    intent, _, slots = key.partition("|")
    words = {w for part in slots.split(";") if "=" in part for w in part.split("=", 1)[1].split()}
    return intent, frozenset(words)


def covers(candidate: str | None, reference: str | None) -> bool:
    """Whether a request understood as ``candidate`` does what one understood as ``reference`` did:
    the same intent (not 'none'), and every word of the reference's slot values among the candidate's."""
    if candidate is None or reference is None:
        return False
    (ci, cw), (ri, rw) = _meaning_parts(candidate), _meaning_parts(reference)
    return ci == ri and ci != "none" and rw <= cw


def intended_meanings(h: "History") -> dict[str, Counter]:
    """Per request (as heard): the meanings its failing turns' retry chains reached, over every
    chain that reached a working turn (the same meaning included: a retry that worked as said)."""
    out: dict[str, Counter] = defaultdict(Counter)
    for i, t in h.target.items():
        out[h.rows[i]["text"]][h.rows[t]["meaning"]] += 1
    return dict(out)


def fix_chance(intended: dict[str, Counter], text: str, meaning: str | None, prior: float = PRIOR_CHAINS) -> float:
    """The chance that rewriting a failing ``text`` no retry fixed to a request of ``meaning``
    fixes it: the share of ``text``'s fixed chains whose meaning ``meaning`` covers, with ``prior``
    pseudo-chains that reached something else. 0 without a chain, or without a meaning."""
    reached = intended.get(text)
    if not reached or meaning is None:
        return 0.0
    return sum(n for m, n in reached.items() if covers(meaning, m)) / (sum(reached.values()) + prior)


@dataclass
class Judged:
    """The held-out requests' top candidates: score, the chance the rewrite wins, breaks a request
    that worked, or leaves a failing one failing (0-1 each; an unfixed request's are fractional),
    weight back to traffic's mix, the candidate's source, whether the table rewrites the request
    first, and (for the precision calibration) whether the rewrite is right or harmless, whether it
    fixes, and whether the request was a fixable one."""

    score: np.ndarray
    win: np.ndarray
    broken: np.ndarray
    still: np.ndarray
    weight: np.ndarray
    source: np.ndarray  # "global" | "phonetic" | "personal"
    by_table: np.ndarray
    right: np.ndarray
    fixed: np.ndarray
    fixable: np.ndarray

    def loss(self, still_failing_loss: float) -> np.ndarray:
        """Each rewrite's loss: broken, or still failing counted as ``still_failing_loss`` of one."""
        return self.broken + still_failing_loss * self.still

    def where(self, mask: np.ndarray) -> "Judged":
        return Judged(*(getattr(self, f)[mask] for f in self.__dataclass_fields__))

    def online(self, sources: tuple[str, ...]) -> "Judged":
        """The requests the online layers decide (the table does not rewrite them) whose top
        candidate came from one of ``sources``."""
        return self.where(np.isin(self.source, sources) & ~self.by_table)


def outcome(kind: str, *, covers_own: bool, covers_target: bool, fix: float, works: float) -> tuple[float, float, float]:
    """(win, broken, still failing) of rewriting one request, each a chance. ``kind``: 'fix' (a retry
    fixed it with another meaning), 'same' (a retry worked with the meaning it had), 'worked' or
    'unfixed' (failed, no retry worked) by the signals; ``covers_own``/``covers_target``: whether the
    candidate means what the request was understood as / what its retry reached; ``fix``: the chance
    it fixes a failure nobody fixed (:func:`fix_chance`); ``works``: how often the request's words
    work (the global layer's share). A chain says what its user meant, so 'fix' and 'same' are judged
    by it; for the others the signals' verdict on one turn is noisy (a misheard request the user let
    go looks like one that worked), so the words' record is the chance the turn worked."""
    if kind == "fix":
        return float(covers_target), 0.0, float(not covers_target)
    if kind == "same":
        return 0.0, 0.0, float(not covers_target)
    failed = 1.0 - works
    return failed * fix, works * float(not covers_own), failed * (1.0 - fix)


def judge_top(h: "History", g, examples: list, scores: list[np.ndarray], labels: list[np.ndarray], fixable: set[int],
              weight_of: dict[str, float], table=None) -> Judged:
    """Judge each example's top candidate (``examples`` as the replay gives them: row, candidates,
    features, census, sources, meanings; ``scores``/``labels`` per example). ``weight_of``: each stratum's
    weight back to traffic's mix (census rows count once); ``table``: the table served first."""
    from .replay import request_of

    intended = intended_meanings(h)
    cols: dict[str, list] = defaultdict(list)
    for (i, texts, _, census, sources, meanings), s, y in zip(examples, scores, labels):
        b = int(np.argmax(s))
        r = h.rows[i]
        meaning = meanings[b]
        is_fix, worked = i in fixable, bool(r["ok"])
        harmless = not is_fix and worked and meaning is not None and meaning == r["meaning"]  # (the precision calibration's)
        kind = "fix" if is_fix else "worked" if worked else "same" if i in h.target else "unfixed"
        works = g.success_share(r["text"])
        works = float(worked) if works is None else works
        target = h.rows[h.target[i]]["meaning"] if i in h.target else None
        win, broken, still = outcome(kind, covers_own=covers(meaning, r["meaning"]), covers_target=covers(meaning, target),
                                     fix=fix_chance(intended, r["text"], meaning), works=works)
        cols["score"].append(float(s[b]))
        cols["win"].append(win)
        cols["broken"].append(broken)
        cols["still"].append(still)
        cols["weight"].append(1.0 if census else weight_of["fix" if is_fix else "ok" if worked else "fail"])
        cols["source"].append(sources[b])
        cols["by_table"].append(table is not None and table.rewrite(r["text"], context=request_of(r)["context"]) is not None)
        cols["right"].append(bool(y[b]) or harmless)
        cols["fixed"].append(bool(y[b]))
        cols["fixable"].append(is_fix)
    return Judged(*(np.array(cols[f]) for f in Judged.__dataclass_fields__))


def win_loss_curve(score: np.ndarray, win: np.ndarray, loss: np.ndarray, weight: np.ndarray | None = None) -> list[dict]:
    """For each distinct score taken as a threshold (highest first): rewrites at or above it, and
    their weighted wins and losses."""
    score = np.asarray(score, float)
    if len(score) == 0:
        return []
    order = np.argsort(-score, kind="stable")
    w = np.ones(len(score)) if weight is None else np.asarray(weight, float)[order]
    s = score[order]
    wins, losses = np.cumsum(np.asarray(win, float)[order] * w), np.cumsum(np.asarray(loss, float)[order] * w)
    last = np.r_[s[1:] != s[:-1], True]
    return [{"threshold": float(s[i]), "rewrites": int(i + 1), "wins": float(wins[i]), "losses": float(losses[i])} for i in np.flatnonzero(last)]


def choose_threshold_by_win_loss(score: np.ndarray, win: np.ndarray, loss: np.ndarray, weight: np.ndarray | None = None, *,
                                 min_ratio: float, min_rewrites: int = 20) -> tuple[float, dict]:
    """The lowest threshold at which wins outnumber losses at least ``min_ratio`` to 1 over at least
    ``min_rewrites`` rewrites; 1.0 (never rewrite) when none does."""
    if not min_ratio > 0:
        raise InvalidInputError(explain(f"min_ratio={min_ratio}", "must be > 0", "use e.g. 12 (twelve wins per loss)"))
    ok = [p for p in win_loss_curve(score, win, loss, weight) if p["rewrites"] >= min_rewrites and p["wins"] > 0 and p["wins"] >= min_ratio * p["losses"]]
    if not ok:
        return 1.0, {"threshold": 1.0, "rewrites": 0, "wins": 0.0, "losses": 0.0}
    best = max(ok, key=lambda p: p["rewrites"])
    return best["threshold"], best


def calibrate_thresholds(judged: Judged, c: "OnlineConfig") -> dict:
    """The serving thresholds by ``c.calibrate`` (see the module's docstring): 'win-loss' chooses the
    global layer's and the personal layer's ranked candidates' each (wins at least ``c.harm_ratio``
    per loss, among the requests the table leaves); 'precision' and 'harm' one for both, over every
    held-out request. Every mode's choice and curves are reported."""
    fixable = float(np.sum(judged.weight * judged.fixable))
    by_precision = choose_threshold(judged.score, judged.right, fixable, min_precision=c.min_precision, weights=judged.weight, fixed=judged.fixed)
    # harm: a request that worked rewritten to another meaning, or a failing one rewritten without a fix
    by_harm = choose_threshold_by_harm(judged.score, judged.fixed, ~judged.right & ~judged.fixable, min_ratio=c.harm_ratio, weights=judged.weight)
    glob, mine = judged.online(("global", "phonetic")), judged.online(("personal",))
    lam = c.still_failing_loss
    by_wl = choose_threshold_by_win_loss(glob.score, glob.win, glob.loss(lam), glob.weight, min_ratio=c.harm_ratio)
    by_wl_personal = choose_threshold_by_win_loss(mine.score, mine.win, mine.loss(lam), mine.weight, min_ratio=c.harm_ratio)
    threshold = {"precision": by_precision[0], "harm": by_harm[0], "win-loss": by_wl[0]}[c.calibrate]
    curve = precision_coverage(judged.score, judged.right, fixable, judged.weight, judged.fixed)
    wl_curve = win_loss_curve(glob.score, glob.win, glob.loss(lam), glob.weight)
    # one threshold for both layers (None: the global layer's) unless the personal layer's was calibrated
    return {"threshold": threshold, "personal_threshold": by_wl_personal[0] if c.calibrate == "win-loss" else None,
            "calibrate": c.calibrate, "validation_fixable": int(round(fixable)), "at_threshold": by_precision[1], "harm_threshold": by_harm[1],
            "win_loss_threshold": by_wl[1], "personal_win_loss_threshold": by_wl_personal[1],
            "curve": curve[:: max(1, len(curve) // 50)], "win_loss_curve": wl_curve[:: max(1, len(wl_curve) // 50)]}
