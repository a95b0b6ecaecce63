"""Rephrase-detection examples from the store: each turn with the turns that follow it, and weak
labels from the feedback signals (never the truth).

An example is an anchor turn and up to ``max_following`` later turns of its session within
``window_s`` seconds, each with its time gap. The weak label names the following turn that is the
anchor's rephrase, or none: when the anchor looks defective (defect score >= ``defect_at``) the
first following turn within ``retry_s`` seconds is taken as the retry of the same request; when the
anchor looks fine, there is no rephrase. Anchors in between are left unlabelled.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from ..signals.feedback import DEFECT_AT

__all__ = ["Example", "load_examples", "weak_label", "with_distractors"]


@dataclass(frozen=True)
class Example:
    session_id: str
    turn_index: int
    text: str
    following: tuple[tuple[int, str, float], ...]  # (turn_index, text, gap in seconds)
    defect_score: float
    user_id: str = ""  # the speaker's pseudonym: the unit of differential privacy


def load_examples(con: duckdb.DuckDBPyConnection, *, max_following: int = 3, window_s: float = 120.0, where: str = "true") -> list[Example]:
    """Examples for the turns of the ``signals`` table that match ``where`` (SQL over its columns;
    the following turns are always taken from the whole session). Run ``compute_signals`` first."""
    leads = ", ".join(
        f"lead(turn_index, {k}) OVER w AS i{k}, lead(asr_text, {k}) OVER w AS t{k}, epoch(lead(ts, {k}) OVER w) - epoch(ts) AS g{k}"
        for k in range(1, max_following + 1)
    )
    cur = con.execute(
        f"""SELECT * EXCLUDE (keep) FROM (
              SELECT session_id, turn_index, asr_text, defect_score, {leads}, ({where}) AS keep, user_id
              FROM signals
              WINDOW w AS (PARTITION BY session_id ORDER BY turn_index))
            WHERE keep ORDER BY session_id, turn_index"""
    )
    out = []
    for row in cur.fetchall():
        sid, ti, text, score = row[:4]
        following = []
        for k in range(max_following):
            i, t, g = row[4 + 3 * k : 7 + 3 * k]
            if i is None or g > window_s:
                break
            following.append((int(i), t, float(g)))
        out.append(Example(sid, int(ti), text, tuple(following), float(score), row[-1]))
    return out


def weak_label(ex: Example, *, defect_at: float = DEFECT_AT, fine_below: float = 0.2, retry_s: float = 30.0) -> int | None:
    """Index into ``ex.following`` of the weak rephrase, -1 for none, None for unlabelled."""
    if ex.defect_score >= defect_at:
        if ex.following and ex.following[0][2] <= retry_s:
            return 0
        return -1
    if ex.defect_score < fine_below:
        return -1
    return None


def with_distractors(examples: list[Example], labels: list[int], *, share: float, seed: int = 0) -> tuple[list[Example], list[int]]:
    """Self-supervised corruption: into ``share`` of the examples insert an utterance from another
    session as an extra following turn (random position, its gap between its neighbours'). It is
    never the rephrase, so the model must read the words, not only the position and the timing."""
    import random

    rng = random.Random(seed)
    pool = [e.text for e in examples if e.text]
    out_e, out_l = [], []
    for ex, lab in zip(examples, labels):
        if not pool or rng.random() >= share:
            out_e.append(ex)
            out_l.append(lab)
            continue
        pos = rng.randint(0, len(ex.following))
        before = ex.following[pos - 1][2] if pos else 0.0
        after = ex.following[pos][2] if pos < len(ex.following) else before + 30.0
        fake = (-1, rng.choice(pool), round(rng.uniform(before, after), 1))
        following = ex.following[:pos] + (fake,) + ex.following[pos:]
        out_e.append(Example(ex.session_id, ex.turn_index, ex.text, following, ex.defect_score, ex.user_id))
        out_l.append(lab + 1 if lab >= pos else lab)
    return out_e, out_l
