"""The online model's global layer under user-level differential privacy.

Without DP the global layer holds every request k users said, with exact counts (train.build_global):
whether a user's requests are in it tells members from non-members (the privacy audit's "global
index: known requests" attack). With ``--dp-epsilon`` it is released by privacy.partition instead:

- a partition is a (request, meaning) pair: each user contributes, for up to ``max_texts`` of the
  requests they said (a seeded sample), the request with the meaning the assistant most often gave
  it for them, and a profile of shares: 1 (the user), the share of their turns of it that worked,
  the share a retry fixed with another meaning, and the contexts of its successes (device type,
  screen, hour bucket, location), each block summing to at most 1;
- the device types and locations the context columns name are chosen by partition selection too
  (each user contributing up to two of each): a location can be a user's own place name;
- which pairs enter: DP partition selection on the number of contributing users, none with fewer
  than k (``min_users``, pre-thresholding: the k-anonymity rule holds too);
- their summed profiles: the Gaussian mechanism.

A request's turns, successes and fixes are then counted in users (its contributing users, the sum
of their success shares, ...), its meaning is its kept pair with the most users (and, among those
that worked, the most success), and its context shares are the noisy sums over the noisy successes.
The budget of the layer: 45% selection, 10% the context columns, 45% the statistics (they add up).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict

import numpy as np

from ..privacy.kanon import K_DEFAULT
from ..privacy.partition import bound_contributions, gaussian_sigma, select_partitions
from .global_layer import assemble_global, context_width, fixed_by_retry, success_context
from .memory import GlobalMemory

__all__ = ["build_private_global", "SHARES", "CONTEXT_VALUES_PER_USER"]

SHARES = {"selection": 0.45, "columns": 0.10, "statistics": 0.45}
CONTEXT_VALUES_PER_USER = 2


def build_private_global(h, epsilon: float, delta: float, *, max_texts: int = 10, seed: int = 0,
                         strategy: str = "gaussian", min_users: int = K_DEFAULT) -> tuple[GlobalMemory, dict]:
    """The global layer of history ``h`` released with (``epsilon``, ``delta``)-DP at the user
    level, no pair entering with fewer than ``min_users`` users (pre-thresholding); returns it and
    what the release did (for the model's privacy record)."""
    rng = np.random.default_rng(seed)
    e = {k: epsilon * v for k, v in SHARES.items()}
    d = {k: delta * v for k, v in SHARES.items()}
    rows_of: dict[tuple, list[int]] = defaultdict(list)
    for k, r in enumerate(h.rows):
        rows_of[(r["user_id"], r["rewrite"] or r["text"])].append(k)
    items_of: dict[str, list] = defaultdict(list)
    for (u, text), ks in rows_of.items():
        items_of[u].append((text, Counter(h.rows[k]["meaning"] for k in ks).most_common(1)[0][0]))
    devices_of, places_of = defaultdict(set), defaultdict(set)
    for r in h.rows:
        devices_of[r["user_id"]].add(r["device_type"])
        if r["location"]:
            places_of[r["user_id"]].add(r["location"])
    columns = []
    for values_of in (devices_of, places_of):
        bounded = bound_contributions(values_of, CONTEXT_VALUES_PER_USER, rng)
        counts = Counter(v for vs in bounded.values() for v in vs)
        columns.append(sorted(select_partitions(counts, e["columns"] / 2, d["columns"] / 2, CONTEXT_VALUES_PER_USER, rng, strategy,
                                                pre_threshold=min_users), key=str))
    device_types, locations = columns
    bounded = bound_contributions(items_of, max_texts, rng)
    counts = Counter(p for ps in bounded.values() for p in ps)
    kept = select_partitions(counts, e["selection"], d["selection"], max_texts, rng, strategy, pre_threshold=min_users)
    at = {p: j for j, p in enumerate(kept)}
    width = 3 + context_width(device_types, locations)
    sums = np.zeros((len(kept), width))
    fixed = fixed_by_retry(h)
    for u, ps in bounded.items():
        for p in ps:
            if p not in at:
                continue
            ks = rows_of[(u, p[0])]
            v = np.zeros(width)
            v[0] = 1.0
            v[1] = sum(h.rows[k]["ok"] for k in ks) / len(ks)
            v[2] = sum(k in fixed for k in ks) / len(ks)
            for k in ks:
                if h.rows[k]["ok"]:
                    v[3:] += success_context(h.rows[k], device_types, locations) / len(ks)
            sums[at[p]] += v
    # each block of a profile sums to at most 1 (L2 <= 1): 3 scalars + 4 context blocks
    sensitivity = math.sqrt(7 * max_texts)
    sigma = gaussian_sigma(e["statistics"], d["statistics"], sensitivity)
    noisy = sums + rng.normal(0.0, sigma, size=sums.shape)
    g = _per_text(kept, noisy, device_types, locations)
    info = {"mechanism": "user-level DP release: Gaussian partition selection (python-dp) of (request, meaning) pairs, Gaussian noise on their statistics",
            "epsilon": epsilon, "delta": delta, "shares": SHARES, "max_texts_per_user": max_texts, "strategy": strategy, "min_users": min_users,
            "noise_sd": round(sigma, 3), "l2_sensitivity": round(sensitivity, 3), "pairs_kept": len(kept), "texts": len(g.texts),
            "device_types": len(device_types), "locations": len(locations), "unit": "user"}
    g.privacy = info
    return g, info


def _per_text(kept: list, noisy: np.ndarray, device_types: list[str], locations: list[str]) -> GlobalMemory:
    """Combine the kept (request, meaning) pairs' noisy sums into one row per request."""
    users = np.maximum(noisy[:, 0], 0.0)
    succ = np.clip(noisy[:, 1], 0.0, users)
    fix = np.clip(noisy[:, 2], 0.0, users - succ)
    ctx = np.maximum(noisy[:, 3:], 0.0)
    by_text: dict[str, list[int]] = defaultdict(list)
    for j, (text, _) in enumerate(kept):
        by_text[text].append(j)
    texts = sorted(by_text)
    turns, successes, fixes, worked, heard = [], [], [], [], []
    context = np.zeros((len(texts), ctx.shape[1]), np.float32)
    for i, text in enumerate(texts):
        js = by_text[text]
        n, s = users[js].sum(), succ[js].sum()
        turns.append(max(1, int(round(n))))
        successes.append(min(turns[-1], int(round(s))))
        fixes.append(min(turns[-1] - successes[-1], int(round(fix[js].sum()))))
        heard.append(kept[max(js, key=lambda j: users[j])][1])
        best = max(js, key=lambda j: succ[j])
        worked.append(kept[best][1] if successes[-1] > 0 and succ[best] > 0 else None)
        if s > 0:
            context[i] = np.clip(ctx[js].sum(0) / s, 0.0, 1.0)
    return assemble_global(texts, turns, successes, fixes, worked, heard, context, device_types, locations)
