"""The signals' rephrase similarity in Python, for code that sees turns one at a time."""

from __future__ import annotations

from rapidfuzz.distance import Indel

__all__ = ["text_similarity"]


def text_similarity(a: str, b: str) -> float:
    """The signals' rephrase rule in Python: the larger of word-Jaccard and a normalised edit
    similarity (rapidfuzz's insert/delete form; the SQL uses Levenshtein, so borderline pairs can differ).
    The edit similarity looks at the first 1,000 characters (no request is longer; a hostile log line
    would otherwise cost time quadratic in its length)."""
    wa, wb = set(a.split()), set(b.split())
    jac = len(wa & wb) / max(len(wa | wb), 1)
    return max(jac, Indel.normalized_similarity(a[:1000], b[:1000]))
