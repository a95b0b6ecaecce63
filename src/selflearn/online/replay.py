"""The logs replayed in time order through the personal layer: the ranker's examples (each sampled
request's candidates and features as known then), their labels and the stacked rows it learns from."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .features import FEATURES
from .global_layer import fixed_by_retry
from .memory import row_turn

if TYPE_CHECKING:
    from .online_rewriter import OnlineRewriter
    from .train import History, OnlineConfig


def request_of(r: dict) -> dict:
    """A history row as the rewriter's request arguments (device and context), as it was logged."""
    return {"device": {"type": r["device_type"], "has_screen": bool(r["has_screen"]), "location": r["location"]},
            "context": {"hour": r["hour"], "timestamp": r["ts"], "asr_confidence": r["asr_confidence"]}}


def replay_examples(rw: OnlineRewriter, h: History, chosen: set[int], eligible: set[int] | None = None
                    ) -> list[tuple[int, list[str], np.ndarray, bool, list[str], list[str | None]]]:
    """Replay every turn through the personal layer in time order; at each chosen row, the
    candidates and features known just before it, where each candidate came from and the meaning
    it was known by then (:meth:`OnlineRewriter.meanings`: a request only this user says has the
    meaning it had when it worked for them). Rows of ``eligible`` whose user has, by then, fixed
    the same request by retrying are all taken too (a census of the rare personal cases: a random
    sample would hold a handful); the flag says which rows came from the census."""
    out = []
    for i, r in enumerate(h.rows):
        census = eligible is not None and i in eligible and bool(rw.personal.fixes_of(r["user_id"], r["text"]))
        if i in chosen or census:
            texts, sources, x = rw.candidates(r["text"], user_id=r["user_id"], **request_of(r))
            out.append((i, texts, x, census, sources, rw.meanings(texts, r["user_id"])))
        rw.personal.observe(row_turn(r))
    rw.personal.flush()
    return out


def ranking_examples(rw: OnlineRewriter, h: History, c: OnlineConfig, *, rates: dict[str, float] | None = None
                     ) -> tuple[list, set[int], dict[str, float], int]:
    """The requests the ranker learns from and is calibrated on, replayed through ``rw``'s personal
    layer (see :func:`replay_examples`): a sample of failing requests a retry fixed with another
    meaning, of requests that worked and of failing requests no retry fixed (``c.unfixed_share``),
    drawn with ``c.seed``. Returns the examples, the fixable rows, each stratum's weight back to
    traffic's mix (1 / the share of it sampled), and the number of unfixed failing requests.
    ``rates`` (a stratum's share to sample, as such weights' inverses give): sample other logs the
    way these were (the privacy audit's reference users)."""
    rng = random.Random(c.seed)
    # a failing request whose chain ended in the meaning it already had failed for another reason
    # (the skill, the result): rewriting cannot fix it, so it teaches nothing
    fixable_set = fixed_by_retry(h)
    fixable = [i for i in h.target if i in fixable_set]  # in the chains' order (the seeded sample depends on it)
    worked = [i for i, r in enumerate(h.rows) if r["ok"] and not r["rewrite"]]
    # failing requests no retry fixed (nothing serves them, or the user gave up): a rewrite of one
    # is served all the same, and is a loss unless it fixes what nobody saw fixed; without them the
    # held-out precision would only see requests that worked or were fixed
    unfixed = [i for i, r in enumerate(h.rows) if not r["ok"] and not r["rewrite"] and i not in fixable_set]
    n_fail = int(round(c.examples * c.unfixed_share))
    want = {"fix": c.examples // 2, "ok": c.examples - c.examples // 2 - n_fail, "fail": n_fail}
    if rates is not None:
        want = {k: int(round(rates[k] * n)) for k, n in (("fix", len(fixable)), ("ok", len(worked)), ("fail", len(unfixed)))}
    pick_fix = set(rng.sample(fixable, min(len(fixable), want["fix"])))
    pick_ok = set(rng.sample(worked, min(len(worked), want["ok"])))
    pick_fail = set(rng.sample(unfixed, min(len(unfixed), want["fail"])))
    chosen = pick_fix | pick_ok | pick_fail
    # the sample's strata are not traffic's mix: weights restore it in the precision (census rows
    # count once each; they are too few to bias the sampled strata's weights)
    weight_of = {"fix": len(fixable) / max(len(pick_fix), 1), "ok": len(worked) / max(len(pick_ok), 1),
                 "fail": len(unfixed) / max(len(pick_fail), 1)}
    rw.warm([h.rows[i]["text"] for i in chosen])
    examples = replay_examples(rw, h, chosen, eligible=fixable_set | set(worked) | set(unfixed))
    return examples, fixable_set, weight_of, len(unfixed)


def ranking_labels(h: History, i: int, meanings: list[str | None]) -> np.ndarray:
    """1 for each candidate (known by ``meanings``, as the replay gives them) that means what the
    rephrase chain of row ``i`` reached; all 0 for a request no chain fixed."""
    t = h.target.get(i)
    if t is None:  # a request that worked: nothing should change
        return np.zeros(len(meanings), int)
    want = h.rows[t]["meaning"]
    return np.array([m is not None and m == want for m in meanings], int)


@dataclass
class RankingRows:
    """The ranker's rows from the replayed examples that have candidates: features ``x`` (one row per
    candidate), labels per example (``ys``), which example (``example``) and whether a training user's
    (``example_train``) each is, per row as ``group`` and ``train``; whose request each row was
    (``users``), and how many training requests have a fix among the non-personal candidates."""

    x: np.ndarray
    ys: list[np.ndarray]
    example: list[int]
    example_train: list[bool]
    users: np.ndarray
    global_fixes: int

    @property
    def group(self) -> np.ndarray:
        return np.repeat(np.array(self.example, int), [len(y) for y in self.ys])

    @property
    def train(self) -> np.ndarray:
        return np.repeat(np.array(self.example_train, bool), [len(y) for y in self.ys])


def ranking_rows(h: History, examples: list, held: dict[str, bool]) -> RankingRows:
    """Label the replayed ``examples`` (:func:`ranking_labels`) and stack their candidates' rows;
    ``held``: the users held out for validation."""
    xs, ys, example, example_train, users = [], [], [], [], []
    global_fixes = 0  # training requests whose fix the global layer holds (a user's own candidates alone rank nothing for others)
    for k, (i, texts, x, _, sources, meanings) in enumerate(examples):
        if not texts:
            continue
        y = ranking_labels(h, i, meanings)
        u = h.rows[i]["user_id"]
        global_fixes += not held[u] and any(v and s != "personal" for v, s in zip(y, sources))
        xs.append(x)
        ys.append(y)
        example.append(k)
        example_train.append(not held[u])
        users += [u] * len(texts)
    return RankingRows(np.vstack(xs) if xs else np.zeros((0, len(FEATURES)), np.float32), ys,
                       example, example_train, np.array(users, object), global_fixes)
