"""Online rewriting (the keynote's "Online rewriting"): dense retrieval over a global index of
requests that work and each user's own history, a learned ranker, and a threshold chosen for
precision; the precomputed table is consulted first."""

from .encoder import BiEncoder, OnnxEncoder, SentenceEncoder, agreement, export_onnx
from .memory import GlobalMemory, PersonalMemory
from .ranker import Ranker, choose_threshold, precision_coverage
from .online_rewriter import LAYERS, Decision, OnlineRewriter
from .train import OnlineConfig, train_online

__all__ = ["BiEncoder", "OnnxEncoder", "SentenceEncoder", "agreement", "export_onnx", "GlobalMemory", "PersonalMemory",
           "Ranker", "choose_threshold", "precision_coverage", "LAYERS", "Decision", "OnlineRewriter", "OnlineConfig", "train_online"]
