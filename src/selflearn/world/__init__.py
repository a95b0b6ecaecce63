"""The simulated assistant world: users, a real pipeline (wake word → ASR → [rewriter] → NLU →
entity resolution → result), logs in our schema, and hidden truth stored apart.

Modules, in the order data flows: ``corpus`` (SLURP sentences, ASR corpus, normaliser) →
``asr_channel`` (live espeak-ng → Whisper) → ``nlu`` (the world's MiniLM intent + slot model) →
``catalogue`` (entities, fuzzy resolution) → ``surfaces`` (wordings and what ASR heard) → ``build``
(the one-time world build) → ``population`` (users) → ``simulate`` (the run) → ``truth`` (hidden
truth; evaluation only) → ``ab`` (paired A/B harness) and ``realism`` (the realism report).
"""

from .ab import ab_test
from .build import World, WorldConfig, build_world
from ..rewriters import HttpRewriter, NoOpRewriter, Rewriter, load_rewriter
from .simulate import FAILURE_POINTS, SimConfig, Simulator

__all__ = [
    "FAILURE_POINTS",
    "HttpRewriter",
    "NoOpRewriter",
    "Rewriter",
    "SimConfig",
    "Simulator",
    "World",
    "WorldConfig",
    "ab_test",
    "build_world",
    "load_rewriter",
]
