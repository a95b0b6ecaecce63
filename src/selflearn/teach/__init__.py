"""Teachable AI: preferences users teach, teachable moments the assistant senses."""

from .preferences import KINDS, OUTCOMES, PROVENANCE, Preference, Preferences

__all__ = ["KINDS", "OUTCOMES", "PROVENANCE", "Preference", "Preferences"]
