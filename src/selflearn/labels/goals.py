"""Goal-level labels composed from the per-turn heads: the intent of a goal, carried back from its
successful last turn to the failed attempts before it.

The per-turn intent head learns, above all, to repeat what the NLU said (its intent is an input
feature and is right on most turns), so its confident labels teach the NLU nothing new. What the
keynote's loop needs are the failed attempts labelled with what the user wanted, which the session
shows: the user retried until the assistant understood. Here that is read off the model's own
segmentation (``same_goal``) and goal-success probabilities: a turn's *goal intent* is the intent
of the last turn of its predicted goal, with confidence the product of every link's probability,
the goal's success and that intent's confidence. It gets its own precision/coverage curve, so a
team calibrates it on an annotated sample like any other task.
"""

from __future__ import annotations

__all__ = ["carry_goal_intents"]


def carry_goal_intents(rows: list[dict]) -> list[dict]:
    """``rows`` (one dialogue's predictions, in turn order) with ``goal_intent`` set to
    ``(intent, confidence)`` on every turn followed by a later turn of its predicted goal (a link
    of ``same_goal`` >= 0.5), and to None elsewhere (a goal's last turn has its own intent)."""
    out = [dict(r, goal_intent=None) for r in rows]
    end = len(rows) - 1
    chain = 1.0  # product of the links from turn t+1 to the goal's end
    for t in range(len(rows) - 2, -1, -1):
        link = rows[t + 1].get("same_goal")
        if link is None or link < 0.5:
            end, chain = t, 1.0
            continue
        chain *= link
        last = rows[end]
        if last.get("intent") is None or last.get("goal_success") is None:
            continue
        intent, conf = last["intent"]
        out[t]["goal_intent"] = (intent, chain * last["goal_success"] * conf)
    return out
