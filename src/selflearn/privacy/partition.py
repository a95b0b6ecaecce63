"""Differentially private release of a shared table of per-text statistics (the online model's
global layer): which texts it holds (DP partition selection) and their counts (the Gaussian
mechanism), at the USER level.

k-anonymity (privacy.kanon) keeps a text out until k users said it, but a user's own turns count
towards those k: whether one user's requests are in the released table tells members from
non-members (the privacy audit measures it). Here every user's influence is bounded and hidden:

1. Contribution bounding: a user contributes to at most ``max_per_user`` partitions (a seeded sample
   of theirs), each contribution a profile of L2 norm at most ``PROFILE_NORM`` (shares, not counts: a
   user with 500 turns of a text weighs as much as one with 1).
2. Partition selection: a partition is kept with the probability Google's differential-privacy
   library (python-dp) gives for its number of contributing users (Gaussian thresholding, which
   needs the fewest users at these sizes; ``strategy`` picks another), with pre-thresholding at k:
   fewer than k users never enter (the k-anonymity rule of every shared artefact), and the DP
   decision applies to the users beyond k - 1 (so the guarantee holds).
3. The kept partitions' summed profiles get Gaussian noise, its scale from the analytic Gaussian
   mechanism (Balle and Wang, 2018) for the L2 sensitivity ``PROFILE_NORM * sqrt(max_per_user)``.

Selection and statistics each spend half of (epsilon, delta); they add up (basic composition).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence

import numpy as np

from ..errors import InvalidInputError, explain
from .kanon import check_k

__all__ = ["gaussian_sigma", "bound_contributions", "keep_probability", "select_partitions", "noisy_sums", "STRATEGIES"]

STRATEGIES = ("gaussian", "truncated_geometric", "laplace")


def gaussian_sigma(epsilon: float, delta: float, sensitivity: float = 1.0) -> float:
    """The smallest noise scale for which the Gaussian mechanism with L2 ``sensitivity`` is
    (epsilon, delta)-DP: the analytic Gaussian mechanism's exact condition
    Phi(D/2s - e s/D) - exp(e) Phi(-D/2s - e s/D) <= delta, solved by bisection."""
    from scipy.stats import norm

    if not (epsilon > 0 and 0 < delta < 1 and sensitivity > 0):
        raise InvalidInputError(explain(f"epsilon={epsilon}, delta={delta}, sensitivity={sensitivity}",
                                        "need epsilon > 0, 0 < delta < 1, sensitivity > 0", "pass a valid budget"))

    def delta_of(s: float) -> float:
        a, b = sensitivity / (2 * s), epsilon * s / sensitivity
        return float(norm.cdf(a - b) - math.exp(epsilon) * norm.cdf(-a - b))

    lo, hi = 1e-6 * sensitivity, sensitivity
    while delta_of(hi) > delta:
        hi *= 2
    for _ in range(80):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if delta_of(mid) > delta else (lo, mid)
    return hi


def bound_contributions(items_of: Mapping[Hashable, Sequence[Hashable]], max_per_user: int, rng: np.random.Generator
                        ) -> dict[Hashable, list[Hashable]]:
    """Each user's distinct items, at most ``max_per_user`` of them (a uniform sample when more)."""
    if not isinstance(max_per_user, int) or max_per_user < 1:
        raise InvalidInputError(explain(f"max_per_user={max_per_user!r}", "must be an integer >= 1", "use e.g. 10"))
    out = {}
    for u in sorted(items_of, key=str):
        items = sorted(set(items_of[u]), key=str)
        if len(items) > max_per_user:
            items = [items[i] for i in sorted(rng.choice(len(items), max_per_user, replace=False))]
        out[u] = items
    return out


def _strategy(strategy: str, epsilon: float, delta: float, max_per_user: int, pre_threshold: int):
    import pydp.algorithms.partition_selection as ps

    if strategy not in STRATEGIES:
        raise InvalidInputError(explain(f"strategy={strategy!r}", f"must be one of {', '.join(STRATEGIES)}", "use 'gaussian'"))
    check_k(pre_threshold, "pre_threshold")
    return ps.create_partition_strategy(strategy, float(epsilon), float(delta), int(max_per_user), None if pre_threshold <= 1 else int(pre_threshold))


def keep_probability(users: int, epsilon: float, delta: float, max_per_user: int, strategy: str = "gaussian", pre_threshold: int = 1) -> float:
    """The probability that a partition ``users`` users contributed to is kept."""
    return float(_strategy(strategy, epsilon, delta, max_per_user, pre_threshold).probability_of_keep(int(users)))


def select_partitions(users_per_partition: Mapping[Hashable, int], epsilon: float, delta: float, max_per_user: int,
                      rng: np.random.Generator, strategy: str = "gaussian", pre_threshold: int = 1) -> list[Hashable]:
    """The partitions kept, each with its :func:`keep_probability` (users must have been bounded to
    ``max_per_user`` partitions each: :func:`bound_contributions`); ``pre_threshold``: fewer users
    never enter. Draws come from ``rng`` (seeded, so a training run is reproducible; not hardened
    against floating-point attacks on the noise)."""
    s = _strategy(strategy, epsilon, delta, max_per_user, pre_threshold)
    cache: dict[int, float] = {}
    kept = []
    for p in sorted(users_per_partition, key=str):
        n = int(users_per_partition[p])
        if n not in cache:
            cache[n] = float(s.probability_of_keep(n))
        if cache[n] > 0 and rng.random() < cache[n]:
            kept.append(p)
    return kept


def noisy_sums(sums: np.ndarray, epsilon: float, delta: float, sensitivity: float, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """``sums`` (partitions x statistics, the sum of the users' bounded profiles) plus Gaussian noise
    for L2 ``sensitivity``; returns them and the noise's standard deviation."""
    sigma = gaussian_sigma(epsilon, delta, sensitivity)
    return sums + rng.normal(0.0, sigma, size=sums.shape), sigma
