"""The one conformance check every estimator and every rewriter passes (in the style of
scikit-learn's ``check_estimator`` and river's): run by the test suite on every entry of the
registry, and usable on your own model or rewriter before you plug it in."""

from __future__ import annotations

import json
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..errors import InvalidInputError, NotFittedError, SelflearnError, StoreVersionError
from .base import Estimator
from .directory import CONFIG
from .registry import load_model

__all__ = ["EstimatorCase", "RewriterCase", "check_estimator", "check_rewriter", "same"]


@dataclass
class EstimatorCase:
    """How to exercise one estimator: ``make(random_state)`` builds it unfitted, ``fit_args`` is
    what ``fit`` takes, ``predict(model)`` answers on held-out input, ``bad_fit_args`` is input
    ``fit`` must refuse."""

    make: Callable[[int], Estimator]
    fit_args: tuple
    predict: Callable[[Estimator], Any]
    bad_fit_args: tuple
    atol: float = 1e-6


@dataclass
class RewriterCase:
    """``make()`` builds (or loads) the rewriter twice over; ``requests`` are (utterance, user,
    device, context); ``bad()`` must raise a :class:`SelflearnError` (e.g. loading a broken spec)."""

    make: Callable[[], Any]
    requests: list[tuple[str, str, dict, dict]]
    bad: Callable[[], Any] | None = None
    odd: tuple[str, ...] = field(default=("", "   ", "x" * 5000, "¿qué hora es?", "\x00\x1b[2J"))


def same(a: Any, b: Any, atol: float = 1e-6) -> bool:
    """Equal, with floats (and arrays of them) within ``atol``."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        if a.shape != b.shape:
            return False
        return bool(np.allclose(a, b, atol=atol, rtol=0)) if a.dtype.kind in "fc" else bool(np.array_equal(a, b))
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, (int, float)) and isinstance(b, (int, float)) and math.isclose(a, b, abs_tol=atol, rel_tol=0)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k], atol) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same(x, y, atol) for x, y in zip(a, b))
    if hasattr(a, "__dict__") and type(a) is type(b) and not isinstance(a, type):
        return same(vars(a), vars(b), atol)
    return a == b


def _refuses(exc_type, fn, what: str) -> SelflearnError:
    try:
        fn()
    except exc_type as exc:
        return exc
    raise AssertionError(f"{what}: expected {exc_type.__name__}")


def check_estimator(case: EstimatorCase, workdir: Path | None = None) -> None:
    """Raise AssertionError at the first rule the estimator breaks."""
    with tempfile.TemporaryDirectory() as tmp:
        _check_estimator(case, Path(workdir or tmp))


def _check_estimator(case: EstimatorCase, tmp: Path) -> None:
    model = case.make(0)
    name = type(model).__name__
    assert isinstance(model, Estimator), f"{name} must subclass selflearn.models.Estimator"
    assert model.component and model.fitted_attr, f"{name} must name its component and fitted attribute"
    params = model.get_params()
    assert type(model)(**params).get_params() == params, f"{name}: parameters must round-trip through the constructor"
    _refuses(NotFittedError, lambda: case.predict(model), f"{name} predicting unfitted")
    _refuses(NotFittedError, lambda: model.save(tmp / "unfitted"), f"{name} saving unfitted")
    assert not (tmp / "unfitted").exists(), f"{name}: a failed save must leave nothing behind"
    before = set(vars(model))
    assert model.fit(*case.fit_args) is model, f"{name}.fit must return self"
    new = sorted(k for k in set(vars(model)) - before if not k.endswith("_") and not k.startswith("_"))
    assert not new, f"{name}: learned attributes must end in '_' (got {new})"
    assert model.get_params() == params, f"{name}.fit must not change its parameters"
    assert str(getattr(model, "data_fingerprint_", "")).startswith("sha256:"), f"{name}.fit must record the data's fingerprint"
    first = case.predict(model)
    saved = model.save(tmp / "model")
    again = type(model).load(saved)
    assert same(case.predict(again), first, case.atol), f"{name}: a reload must answer as the trained model"
    assert again.get_params() == params, f"{name}: parameters must survive save/load"
    assert again.data_fingerprint_ == model.data_fingerprint_
    assert type(load_model(saved)) is type(model), f"{name}: load_model must find the class from config.json"
    model.save(saved)  # saving over a model replaces it whole
    assert same(case.predict(type(model).load(saved)), first, case.atol)
    config = json.loads((saved / CONFIG).read_text())
    for key in ("component", "format_version", "params", "data_fingerprint", "privacy", "selflearn_version"):
        assert key in config, f"{name}: config.json must record {key}"
    (saved / CONFIG).write_text(json.dumps({**config, "format_version": config["format_version"] + 1}))
    _refuses(StoreVersionError, lambda: type(model).load(saved), f"{name} loading another format version")
    (saved / CONFIG).write_text(json.dumps({**config, "component": "something-else"}))
    _refuses(InvalidInputError, lambda: type(model).load(saved), f"{name} loading another component")
    assert same(case.predict(case.make(0).fit(*case.fit_args)), first, case.atol), f"{name}: the same random_state must train the same model"
    exc = _refuses(SelflearnError, lambda: case.make(0).fit(*case.bad_fit_args), f"{name} fitting bad input")
    assert "; fix: " in str(exc), f"{name}: the error must name the value, the rule and the fix ({exc})"


def check_rewriter(case: RewriterCase) -> None:
    """Raise AssertionError at the first rule the rewriter breaks."""
    a, b = case.make(), case.make()
    name = type(a).__name__
    assert callable(getattr(a, "rewrite", None)), f"{name} must have rewrite(utterance, *, user_id, device, context)"
    for text, user, device, context in case.requests:
        got = a.rewrite(text, user_id=user, device=device, context=context)
        assert got is None or (isinstance(got, str) and got.strip()), f"{name}: a rewrite is None or a non-empty string (got {got!r})"
        assert got != text or got is None, f"{name}: rewriting {text!r} to itself must answer None"
        assert got == b.rewrite(text, user_id=user, device=device, context=context), f"{name}: two loads must answer alike for {text!r}"
    for r in (a, b):  # a rewriter that counts failed calls (HttpRewriter) must have answered every well-formed request
        assert getattr(r, "errors", 0) == 0, f"{name}: {r.errors} requests failed (a refused request passes through, but a well-formed one must not be refused)"
    for odd in case.odd:
        out = a.rewrite(odd, user_id="", device={}, context={})
        assert out is None or isinstance(out, str), f"{name}: odd input {odd[:20]!r} must pass through or be rewritten"
    if case.bad is not None:
        exc = _refuses(SelflearnError, case.bad, f"{name} given a bad spec")
        assert "; fix: " in str(exc), f"{name}: the error must name the value, the rule and the fix ({exc})"
