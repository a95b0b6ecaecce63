"""How the online layers' serving thresholds are chosen on held-out users' logs.

Each held-out request the replay sampled is judged by what its top candidate would have done:

- a failing request a retry fixed with another meaning: a **win** when the candidate means what the
  retry reached, else a **loss** (still defective);
- a request that worked: **harmless** when the candidate means the same, else a **loss** (broken);
- a failing request no retry fixed (the user gave up, or nothing serves it): the logs do not say what
  its user meant. Its text's other failures do: of the chains that started from the same words and
  reached a working turn (any user's), the share that reached the candidate's meaning is the chance
  that the rewrite fixes it (the table's assumption: that a user gave up says nothing about what they
  meant), shrunk towards a loss by one pseudo-chain. A request whose failures no retry ever fixed
  ("what is your mother language": no skill serves it) scores 0 — every rewrite of it is a loss.

A request the table rewrites never reaches the online layers, so it is not judged here: the table's
rules and the online thresholds together decide every rewrite served. The threshold of each source
(the global layer, the personal layer's ranked candidates) is the lowest at which its judged wins
outnumber its losses ``min_ratio`` to 1 (the A/B's win:loss, strict: a loss is broken or still
defective)."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..errors import InvalidInputError, explain

if TYPE_CHECKING:
    from .train import History

__all__ = ["intended_meanings", "fix_chance", "Judged", "win_loss_curve", "choose_threshold_by_win_loss", "PRIOR_CHAINS"]

PRIOR_CHAINS = 1.0  # pseudo-chains that reached another meaning: one fixed chain alone is a coin toss


def intended_meanings(h: "History") -> dict[str, Counter]:
    """Per request (as heard): the meanings its failing turns' retry chains reached, over every
    chain that reached a working turn (the same meaning included: a retry that worked as said)."""
    out: dict[str, Counter] = defaultdict(Counter)
    for i, t in h.target.items():
        out[h.rows[i]["text"]][h.rows[t]["meaning"]] += 1
    return dict(out)


def fix_chance(intended: dict[str, Counter], text: str, meaning: str | None, prior: float = PRIOR_CHAINS) -> float:
    """The chance that rewriting a failing ``text`` no retry fixed to a request of ``meaning``
    fixes it: the share of ``text``'s fixed chains that reached ``meaning``, with ``prior``
    pseudo-chains that reached something else. 0 without a chain, or without a meaning."""
    reached = intended.get(text)
    if not reached or meaning is None:
        return 0.0
    return reached[meaning] / (sum(reached.values()) + prior)


@dataclass
class Judged:
    """The held-out requests' top candidates: score, expected win and loss (0-1 each; an unfixed
    request's are fractional), weight back to traffic's mix, the candidate's source, whether the
    table rewrites the request first, and (for the precision calibration) whether the rewrite is
    right or harmless, whether it fixes, and whether the request was a fixable one."""

    score: np.ndarray
    win: np.ndarray
    loss: np.ndarray
    weight: np.ndarray
    source: np.ndarray  # "global" | "phonetic" | "personal"
    by_table: np.ndarray
    right: np.ndarray
    fixed: np.ndarray
    fixable: np.ndarray

    def where(self, mask: np.ndarray) -> "Judged":
        return Judged(*(getattr(self, f)[mask] for f in self.__dataclass_fields__))

    def online(self, sources: tuple[str, ...]) -> "Judged":
        """The requests the online layers decide (the table does not rewrite them) whose top
        candidate came from one of ``sources``."""
        return self.where(np.isin(self.source, sources) & ~self.by_table)


def judge_top(h: "History", g, examples: list, scores: list[np.ndarray], labels: list[np.ndarray], fixable: set[int],
              weight_of: dict[str, float], table=None) -> Judged:
    """Judge each example's top candidate (``examples`` as the replay gives them: row, candidates,
    features, census, sources; ``scores``/``labels`` per example). ``weight_of``: each stratum's
    weight back to traffic's mix (census rows count once); ``table``: the table served first."""
    from .train import request_of

    intended = intended_meanings(h)
    cols: dict[str, list] = defaultdict(list)
    for (i, texts, _, census, sources), s, y in zip(examples, scores, labels):
        b = int(np.argmax(s))
        r = h.rows[i]
        cand = g.row.get(texts[b])
        meaning = g.meanings[g.meaning[cand]] if cand is not None and g.meaning[cand] >= 0 else None
        is_fix, worked = i in fixable, bool(r["ok"])
        harmless = not is_fix and worked and meaning is not None and meaning == r["meaning"]
        if is_fix or worked:
            win = float(bool(y[b]))
            loss = 0.0 if win or harmless else 1.0
        elif i in h.target:  # failed, and a retry worked with the meaning it had: rewriting cannot fix it
            win, loss = 0.0, 1.0
        else:
            win = fix_chance(intended, r["text"], meaning)
            loss = 1.0 - win
        cols["score"].append(float(s[b]))
        cols["win"].append(win)
        cols["loss"].append(loss)
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
