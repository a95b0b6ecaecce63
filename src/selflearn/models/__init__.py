"""One estimator interface for every learned component: the base (:class:`Estimator`), the model
directory, the shared MiniLM backbone, the registry and the conformance check."""

from .base import RUNTIME_PARAMS, Estimator, Progress, fingerprint, no_progress
from .registry import ESTIMATORS, REWRITERS, estimator_class, load_model, register

__all__ = ["Estimator", "Progress", "fingerprint", "no_progress", "RUNTIME_PARAMS", "ESTIMATORS", "REWRITERS", "estimator_class",
           "load_model", "register"]
