"""Teachable AI: preferences users teach, teachable moments the assistant senses."""

from .moments import SLOT_KINDS, Moment, MomentConfig, answer_moment, teachable_moment
from .preferences import KINDS, OUTCOMES, PROVENANCE, Preference, Preferences
from .preference_rewriter import PreferenceRewriter, apply_preferences
from .teaching import QUESTIONS, START_PHRASES, Teacher, TeachingReply, parse_statement

__all__ = ["KINDS", "OUTCOMES", "PROVENANCE", "Preference", "Preferences", "parse_statement", "Teacher", "TeachingReply", "QUESTIONS",
           "START_PHRASES", "PreferenceRewriter", "apply_preferences", "SLOT_KINDS", "Moment", "MomentConfig", "teachable_moment",
           "answer_moment"]
