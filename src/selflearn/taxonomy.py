"""The pipeline's components, in the order a request passes them: the classes of failure point
isolation (the first component that failed in a turn, or ``correct``). Defined once here; the
failure-point model, the CLI and the simulated world's truth all use it."""

from __future__ import annotations

__all__ = ["FAILURE_POINTS", "COMPONENTS"]

FAILURE_POINTS = ("false_wake", "asr", "nlu", "entity_resolution", "result", "correct")
COMPONENTS = FAILURE_POINTS[:-1]  # those that can fail
