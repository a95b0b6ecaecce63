"""The online model's global layer: per request, its turns, successes, fixes, meaning and the
contexts of its successes, aggregated over every user's logs (k-anonymous; under DP,
:mod:`.private_global` releases it instead)."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import TYPE_CHECKING

import numpy as np

from ..privacy.kanon import K_DEFAULT
from .memory import HOUR_BUCKETS, GlobalMemory, hour_bucket

if TYPE_CHECKING:
    from .train import History

__all__ = ["build_global", "assemble_global", "fixed_by_retry", "context_width", "success_context"]


def build_global(h: "History", min_users: int = K_DEFAULT) -> GlobalMemory:
    """Aggregate every request's turns (as heard; a rewritten turn counts for its rewrite). Only
    requests at least ``min_users`` distinct users said enter it (k-anonymity: the global layer is
    shared by every user; what fewer said stays in each user's personal layer). Under DP the
    private release of :mod:`.private_global` takes its place."""
    said: dict[str, set] = defaultdict(set)
    for r in h.rows:
        said[r["rewrite"] or r["text"]].add(r["user_id"])
    rows = [r for r in h.rows if len(said[r["rewrite"] or r["text"]]) >= min_users]
    device_types = sorted({r["device_type"] for r in rows})
    locations = sorted({r["location"] for r in rows if r["location"]})
    row: dict[str, int] = {}
    turns, succ, fix = Counter(), Counter(), Counter()
    heard: dict[int, Counter] = defaultdict(Counter)
    worked: dict[int, Counter] = defaultdict(Counter)
    ctx: dict[int, np.ndarray] = {}
    fixed_rows = fixed_by_retry(h)
    for k, r in enumerate(h.rows):
        if len(said[r["rewrite"] or r["text"]]) < min_users:
            continue
        i = row.setdefault(r["rewrite"] or r["text"], len(row))
        fix[i] += k in fixed_rows
        turns[i] += 1
        heard[i][r["meaning"]] += 1
        if r["ok"]:
            succ[i] += 1
            worked[i][r["meaning"]] += 1
            v = ctx.setdefault(i, np.zeros(context_width(device_types, locations), np.float32))
            v += success_context(r, device_types, locations)
    n = len(row)
    c = np.zeros((n, context_width(device_types, locations)), np.float32)
    for i, v in ctx.items():
        c[i] = v / max(succ[i], 1)
    return assemble_global(list(row), [turns[i] for i in range(n)], [succ[i] for i in range(n)], [fix[i] for i in range(n)],
                           [worked[i].most_common(1)[0][0] if worked[i] else None for i in range(n)],
                           [heard[i].most_common(1)[0][0] for i in range(n)], c, device_types, locations)


def fixed_by_retry(h: "History") -> set[int]:
    """Rows of failing requests a retry fixed with another meaning."""
    return {i for i, t in h.target.items() if h.rows[i]["meaning"] != h.rows[t]["meaning"]}


def context_width(device_types: list[str], locations: list[str]) -> int:
    return len(device_types) + 1 + HOUR_BUCKETS + len(locations)


def success_context(r: dict, device_types: list[str], locations: list[str]) -> np.ndarray:
    """One turn's context as the global layer counts it: device type, screen, hour bucket, location
    (one-hot blocks; a value outside the lists counts nowhere)."""
    v = np.zeros(context_width(device_types, locations), np.float32)
    nd = len(device_types)
    if r["device_type"] in device_types:
        v[device_types.index(r["device_type"])] = 1
    v[nd] = bool(r["has_screen"])
    v[nd + 1 + hour_bucket(r["hour"])] = 1
    if r["location"] in locations:
        v[nd + 1 + HOUR_BUCKETS + locations.index(r["location"])] = 1
    return v


def assemble_global(texts: list[str], turns, successes, fixes, worked_meaning: list[str | None], heard_meaning: list[str],
                    context: np.ndarray, device_types: list[str], locations: list[str]) -> GlobalMemory:
    """The global layer from per-text statistics (``context``: each text's share of its successes
    per device type, screen, hour bucket and location); requests that usually work are candidates."""
    n = len(texts)
    meanings: dict[str, int] = {}
    meaning = np.full(n, -1, np.int64)
    meaning_heard = np.full(n, -1, np.int64)
    for i in range(n):
        if worked_meaning[i] is not None:
            meaning[i] = meanings.setdefault(worked_meaning[i], len(meanings))
        meaning_heard[i] = meanings.setdefault(heard_meaning[i], len(meanings))
    c = np.asarray(context, np.float32).reshape(n, context_width(device_types, locations))
    nd = len(device_types)
    t_arr = np.asarray(turns, np.int64).reshape(n)
    s_arr = np.asarray(successes, np.int64).reshape(n)
    candidates = np.flatnonzero((s_arr >= 1) & (s_arr * 2 >= t_arr))  # requests that usually work
    return GlobalMemory(list(texts), t_arr, s_arr, meaning, meaning_heard, list(meanings), list(device_types), list(locations),
                        c[:, :nd], c[:, nd], c[:, nd + 1 : nd + 1 + HOUR_BUCKETS], c[:, nd + 1 + HOUR_BUCKETS :],
                        candidates, np.zeros((len(candidates), 384), np.float32), fixes=np.asarray(fixes, np.int64).reshape(n))
