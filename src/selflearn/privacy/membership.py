"""Membership inference: how well can an attacker tell whether a record (or a user) was in a model's
training data? Pure functions over per-record scores, tested beside them.

Two attacks, both given the model's confidence in each record's true label:

- the loss threshold (Yeom et al. 2018): a lower loss means "member";
- the calibrated likelihood-ratio attack (LiRA, Carlini et al. 2022, the offline variant): shadow
  models trained on OTHER users' data of the same population give, per record, the distribution of
  the logit-scaled confidence when the record is OUT of training; the attack scores how far above
  that distribution the target model's confidence lies. With few shadows the per-record spread is
  noisy, so (as the paper recommends below 64 shadows) one global spread is used.

A user-level attack aggregates a user's record scores (their mean): "was this user's data in
training?" is the question differential privacy at the user level answers.

The advantage (max TPR - FPR over thresholds) picks its threshold on the very sample it scores, so it
is biased upward: an attack with no information reaches the two-sample Kolmogorov-Smirnov statistic
(about 1.22 sqrt(2 / n) at the 95th percentile, n a side). :func:`heldout_advantage` removes the bias
by cross-fitting: the threshold is chosen on one half of the sample and scored on the other, both
ways, over many random halvings; its expectation is the advantage of the attack an adversary can
actually run (0 for no information), with a normal-approximation confidence interval.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from ..errors import InvalidInputError, explain

__all__ = ["logit_confidence", "loss_threshold_scores", "lira_scores", "user_scores", "attack_metrics", "advantage_bound", "advantage_null", "heldout_advantage", "users_to_confirm", "FPR_POINTS"]

FPR_POINTS = (0.01, 0.001)  # false-positive rates at which the true-positive rate is reported
_EPS = 1e-7


def logit_confidence(p_true: np.ndarray) -> np.ndarray:
    """log(p / (1 - p)) of the probability of the true label: close to Gaussian across shadow
    models (the scaling LiRA uses), where raw probabilities pile up at 1."""
    p = np.clip(np.asarray(p_true, np.float64), _EPS, 1 - _EPS)
    return np.log(p) - np.log1p(-p)


def loss_threshold_scores(p_true: np.ndarray) -> np.ndarray:
    """Membership score of the loss-threshold attack: minus the cross-entropy loss (higher = member)."""
    return np.log(np.clip(np.asarray(p_true, np.float64), _EPS, 1.0))


def lira_scores(target_p: np.ndarray, shadow_p: np.ndarray) -> np.ndarray:
    """Offline LiRA: ``target_p`` (records,) is the target model's probability of each record's true
    label, ``shadow_p`` (shadows, records) the same from shadow models that never saw the records.
    Score: the one-sided z of the target's logit confidence against the shadows' (per-record mean,
    global spread); higher = member."""
    t = logit_confidence(target_p)
    s = logit_confidence(np.atleast_2d(shadow_p))
    if s.shape[1] != t.shape[0]:
        raise InvalidInputError(explain(f"shadow scores of shape {s.shape}", f"need one column per record ({t.shape[0]})", "score the same records with every shadow"))
    if s.shape[0] < 2:
        raise InvalidInputError(explain(f"{s.shape[0]} shadow model(s)", "LiRA needs at least 2 to estimate a spread", "train 2 or more shadows"))
    mu = s.mean(0)
    sigma = float(np.sqrt(np.mean(s.var(0, ddof=1)))) + 1e-6
    return (t - mu) / sigma


def user_scores(scores: np.ndarray, users: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """A user's membership score: the mean of their records' scores."""
    scores = np.asarray(scores, np.float64)
    order: dict[str, list[int]] = {}
    for i, u in enumerate(users):
        order.setdefault(u, []).append(i)
    names = list(order)
    return names, np.array([scores[order[u]].mean() for u in names])


def attack_metrics(scores: np.ndarray, members: np.ndarray, *, roc_points: int = 101) -> dict:
    """ROC AUC, the membership advantage (max TPR - FPR, Yeom et al.), the TPR at each of
    :data:`FPR_POINTS`, and a thinned ROC curve for plots."""
    from sklearn.metrics import roc_auc_score, roc_curve

    scores, members = np.asarray(scores, np.float64), np.asarray(members, bool)
    n_in, n_out = int(members.sum()), int((~members).sum())
    if n_in == 0 or n_out == 0:
        raise InvalidInputError(explain(f"{n_in} members, {n_out} non-members", "an attack needs both", "audit with data of users in and out of training"))
    fpr, tpr, _ = roc_curve(members, scores)
    at = {}
    for f in FPR_POINTS:
        ok = fpr <= f
        # fewer non-members than 1/f: the rate cannot be resolved, say so instead of reporting 0
        at[f"tpr_at_fpr_{f:g}"] = float(tpr[ok].max()) if ok.any() and n_out * f >= 1 else None
    grid = np.linspace(0, 1, roc_points)
    held = heldout_advantage(scores, members) if min(n_in, n_out) >= 4 else None
    return {"members": n_in, "non_members": n_out, "auc": float(roc_auc_score(members, scores)),
            "advantage": float(np.max(tpr - fpr)), "advantage_null_95": advantage_null(n_in, n_out),
            "advantage_heldout": None if held is None else held["estimate"], "advantage_heldout_ci95": None if held is None else held["ci95"], **at,
            "roc": {"fpr": [round(float(x), 4) for x in grid], "tpr": [round(float(x), 4) for x in np.interp(grid, fpr, tpr)]}}


def advantage_bound(epsilon: float, delta: float = 0.0) -> float:
    """The most membership advantage (epsilon, delta)-DP allows: (e^eps - 1 + 2 delta) / (e^eps + 1)
    (Humphries et al.; Yeom et al.'s e^eps - 1 is looser)."""
    return min(1.0, (math.exp(epsilon) - 1 + 2 * delta) / (math.exp(epsilon) + 1))


def advantage_null(n_members: int, n_non_members: int, *, quantile: float = 0.95, rounds: int = 2000, seed: int = 0) -> float:
    """The advantage an attack with NO information reaches by chance on samples of these sizes (the
    ``quantile`` of max TPR - FPR over random scores: the two-sample Kolmogorov-Smirnov statistic).
    A measured advantage below it is indistinguishable from no leak."""
    rng = np.random.default_rng(seed)
    a, b = int(n_members), int(n_non_members)
    out = np.empty(rounds)
    for k in range(rounds):
        order = rng.permutation(a + b) < a  # which ranks the members hold, under no information
        tpr = np.cumsum(order) / a
        fpr = np.cumsum(~order) / b
        out[k] = np.max(tpr - fpr)
    return float(np.quantile(out, quantile))


def _best_threshold(s_in: np.ndarray, s_out: np.ndarray) -> float:
    """The threshold (``score >= t`` means member) with the largest TPR - FPR on these scores."""
    from sklearn.metrics import roc_curve

    fpr, tpr, cuts = roc_curve(np.r_[np.ones(len(s_in), bool), np.zeros(len(s_out), bool)], np.r_[s_in, s_out], drop_intermediate=False)
    k = int(np.argmax(tpr - fpr))
    return float(cuts[k]) if tpr[k] - fpr[k] > 0 else math.inf  # no threshold helps: call nobody a member


def heldout_advantage(scores: np.ndarray, members: np.ndarray, *, splits: int = 25, seed: int = 0, z: float = 1.96) -> dict:
    """The advantage of the attack with its threshold chosen on held-out data (see the module's
    docstring): members and non-members are each halved at random; the threshold that maximises
    TPR - FPR on one half is scored on the other, both ways; the estimate averages ``splits``
    halvings. ``ci95``: estimate -+ ``z`` standard errors, the error of a fixed threshold's
    TPR - FPR on the whole sample (binomial variances of the rates observed, averaged). The
    estimate can be below 0 (an attack with no information is as often wrong as right)."""
    scores, members = np.asarray(scores, np.float64), np.asarray(members, bool)
    idx_in, idx_out = np.flatnonzero(members), np.flatnonzero(~members)
    if len(idx_in) < 4 or len(idx_out) < 4:
        raise InvalidInputError(explain(f"{len(idx_in)} members, {len(idx_out)} non-members", "a held-out advantage needs at least 4 of each",
                                        "audit with more users on each side"))
    rng = np.random.default_rng(seed)
    est, var = [], []
    for _ in range(splits):
        a_in, a_out = rng.permutation(idx_in), rng.permutation(idx_out)
        h_in, h_out = len(a_in) // 2, len(a_out) // 2
        halves = [(a_in[:h_in], a_out[:h_out]), (a_in[h_in:], a_out[h_out:])]
        for fit, ev in (halves, halves[::-1]):
            t = _best_threshold(scores[fit[0]], scores[fit[1]])
            tpr, fpr = float((scores[ev[0]] >= t).mean()), float((scores[ev[1]] >= t).mean())
            est.append(tpr - fpr)
            var.append(tpr * (1 - tpr) / len(idx_in) + fpr * (1 - fpr) / len(idx_out))
    e, se = float(np.mean(est)), float(np.sqrt(np.mean(var)))
    return {"estimate": e, "se": se, "ci95": [e - z * se, e + z * se], "splits": splits}


def users_to_confirm(estimate: float, ci95: Sequence[float], users_a_side: int, limit: float) -> int | None:
    """About how many users a side an audit needs for the upper end of the held-out advantage's
    95% interval to fall to ``limit``, if the estimate stays where it is: the interval's half-width
    shrinks as 1 / sqrt(users), so the sample grows by (half-width / (limit - estimate))^2. The
    current size when the interval already ends at or below ``limit``; ``None`` when the estimate is
    not below it (more users would confirm the leak, not rule it out)."""
    if estimate >= limit:
        return None
    half = ci95[1] - estimate
    if ci95[1] <= limit:
        return int(users_a_side)
    return int(math.ceil(users_a_side * (half / (limit - estimate)) ** 2))
