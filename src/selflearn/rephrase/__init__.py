"""Rephrase detection: which later turn of a session restates a turn's request."""

from .examples import Example, load_examples, weak_label, with_distractors
from .model import ContextualRephraseDetector

__all__ = ["ContextualRephraseDetector", "Example", "load_examples", "weak_label", "with_distractors"]
