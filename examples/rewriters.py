"""Example rewriters for `selflearn world ab` (plug in your own the same way).

    selflearn world ab --rewriter examples.rewriters:StripFillers

A rewriter is any object with ``rewrite(utterance, *, user_id, device, context) -> str | None``;
returning None passes the utterance through unchanged.
"""

from __future__ import annotations

FILLERS = {"please", "alexa", "olly", "siri", "hey", "ok", "okay", "um", "uh"}


class StripFillers:
    """Drops wake words and politeness ("alexa please play jazz" → "play jazz"). A naive idea that
    the A/B harness can judge: does it help NLU, or hurt it?"""

    def rewrite(self, utterance: str, *, user_id: str, device: dict, context: dict) -> str | None:
        words = [w for w in utterance.split() if w not in FILLERS]
        if not words or len(words) == len(utterance.split()):
            return None
        return " ".join(words)
