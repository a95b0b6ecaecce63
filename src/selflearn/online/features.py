"""Ranking features of (request, candidate rewrite) pairs: pure functions over plain values.

Every feature is in [0, 1] or a log count, and 0 means "no evidence", so a user without history
or a request never seen before gets the same features as the global layer alone would."""

from __future__ import annotations

import math
from functools import lru_cache

import jellyfish
import numpy as np
from rapidfuzz import fuzz

__all__ = ["FEATURES", "phonetic_key", "query_features", "candidate_features", "smoothed_rate", "as_matrix"]

FEATURES = (
    # the request, from the global layer (fix rate: of its failures, the share a retry fixed with
    # another meaning; a request that fails and is never fixed has nothing a rewrite can reach)
    "q_known", "q_log_turns", "q_success", "q_fix_rate",
    # the request as heard now: the recogniser's confidence (0 when the caller does not say)
    "q_asr_confidence",
    # the request, from this user's own history
    "u_q_log_attempts", "u_q_success",
    # the candidate against the request
    "retrieval_cosine", "fuzzy_ratio", "fuzzy_token_set", "phonetic_ratio", "length_ratio", "same_meaning_as_q",
    # the candidate, globally
    "c_log_turns", "c_success",
    # the candidate, for this user
    "u_c_log_successes", "u_c_recency", "u_pair_log_served", "u_pair_fail_share", "u_pair_log_fixed",
    # context: how much of the candidate's success happened in this context
    "ctx_device", "ctx_screen", "ctx_hour", "ctx_location",
)
RECENCY_DAYS = 7.0


@lru_cache(maxsize=200_000)
def phonetic_key(text: str) -> str:
    """Metaphone code of each word, space-joined: 'wilkerson' and 'wilkinson' come out close."""
    return " ".join(jellyfish.metaphone(w) for w in text.split() if w)


def smoothed_rate(successes: float, attempts: float) -> float:
    """(s + 1) / (n + 2): 0.5 without evidence."""
    return (successes + 1.0) / (attempts + 2.0)


def query_features(q_turns: int, q_successes: int, u_attempts: int, u_successes: int, asr_confidence: float | None = None,
                   q_fixes: int = 0) -> list[float]:
    conf = float(asr_confidence) if isinstance(asr_confidence, (int, float)) and 0.0 <= asr_confidence <= 1.0 else 0.0
    return [float(q_turns > 0), math.log1p(q_turns), smoothed_rate(q_successes, q_turns), smoothed_rate(q_fixes, max(q_turns - q_successes, 0)), conf,
            math.log1p(u_attempts), smoothed_rate(u_successes, u_attempts)]


def candidate_features(query: str, candidate: str, *, cosine: float, same_meaning: bool, c_turns: int, c_successes: int,
                       u_successes: int, u_last_ts: float | None, now: float, served: int, failed: int,
                       fixed: int, ctx_device: float, ctx_screen: float, ctx_hour: float, ctx_location: float) -> list[float]:
    lq, lc = len(query.split()), len(candidate.split())
    recency = math.exp(-max(0.0, now - u_last_ts) / (RECENCY_DAYS * 86400)) if u_last_ts is not None and u_successes > 0 else 0.0
    return [cosine, fuzz.ratio(query, candidate) / 100, fuzz.token_set_ratio(query, candidate) / 100,
            fuzz.ratio(phonetic_key(query), phonetic_key(candidate)) / 100, min(lq, lc) / max(lq, lc, 1), float(same_meaning),
            math.log1p(c_turns), smoothed_rate(c_successes, c_turns) if c_turns else 0.0,
            math.log1p(u_successes), recency, math.log1p(served), failed / served if served else 0.0,
            math.log1p(fixed), ctx_device, ctx_screen, ctx_hour, ctx_location]


def as_matrix(q: list[float], rows: list[list[float]]) -> np.ndarray:
    """One row per candidate: the request's features then the candidate's."""
    if not rows:
        return np.zeros((0, len(FEATURES)), np.float32)
    return np.hstack([np.tile(np.array(q, np.float32), (len(rows), 1)), np.array(rows, np.float32)])
