"""Every estimator and every rewriter selflearn ships, by name. A new model or rewriter is one
entry here (or one :func:`register` call, as the simulated world does for its NLU) and then passes
the one conformance check (:mod:`selflearn.models.checks`) that the test suite runs on every entry."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

from ..errors import InvalidInputError, UnreadableInputError, explain
from .directory import CONFIG

__all__ = ["ESTIMATORS", "REWRITERS", "register", "estimator_class", "load_model"]

#: component name -> "module:Class" (imported only when used)
ESTIMATORS: dict[str, str] = {
    "rephrase-detector": "selflearn.rephrase.model:ContextualRephraseDetector",
    "biencoder": "selflearn.online.encoder:BiEncoder",
    "ranker": "selflearn.online.ranker:Ranker",
    "label-model": "selflearn.labels.model:LabelModel",
    "failure-point-model": "selflearn.fpi.model:FailurePointModel",
    "failure-point-rules": "selflearn.fpi.rules:RuleBaseline",
}

#: rewriter name -> "module:Class"
REWRITERS: dict[str, str] = {
    "no-op": "selflearn.rewriters:NoOpRewriter",
    "http": "selflearn.rewriters:HttpRewriter",
    "table": "selflearn.rewrites.table:TableRewriter",
    "preferences": "selflearn.teach.preference_rewriter:PreferenceRewriter",
    "online": "selflearn.online.online_rewriter:OnlineRewriter",
}


def register(component: str, target: str | type) -> None:
    """Add an estimator defined outside the product (``module:Class`` or the class itself)."""
    ESTIMATORS[component] = target if isinstance(target, str) else f"{target.__module__}:{target.__qualname__}"


def estimator_class(component: str) -> type:
    target = ESTIMATORS.get(component)
    if target is None:
        raise InvalidInputError(explain(f"component={component!r}", f"must be one of {sorted(ESTIMATORS)}", "pass a directory saved by selflearn"))
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def load_model(directory: str | Path, **runtime):
    """Whatever model ``directory`` holds (its ``config.json`` names the component)."""
    try:
        component = json.loads((Path(directory) / CONFIG).read_text()).get("component")
    except (OSError, ValueError, AttributeError) as exc:
        raise UnreadableInputError(explain(str(directory), f"must be a model directory with a readable {CONFIG}", "pass a directory saved by selflearn")) from exc
    return estimator_class(component).load(directory, **runtime)
