"""The simulated assistant world: users, a real pipeline (wake word → ASR → [rewriter] → NLU →
entity resolution → result), logs in our schema, and hidden truth stored apart. It sits beside the
product: it imports the product's rewriter interface and models, the product never imports it.

Modules, in the order data flows: ``corpus`` (SLURP sentences, ASR corpus, normaliser) →
``asr_channel`` (live espeak-ng → Whisper) → ``nlu`` (the world's MiniLM intent + slot model) →
``catalogue`` (entities, fuzzy resolution) → ``surfaces`` (wordings and what ASR heard) → ``build``
(the one-time world build) → ``population`` (users) → ``records`` (turns in the log schema) →
``simulate`` (the run) → ``truth`` (hidden truth; evaluation only) and ``gold`` (reference labels
from it) → ``ab`` (paired A/B harness), ``realism`` (the realism report), ``teaching`` and
``teach_ab`` (users with hidden preferences, and their A/B), ``retrain`` (the NLU retrained on
generated labels), ``experiments`` (the CLI's world runs: build once, simulate, A/B, ASR channel).
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
