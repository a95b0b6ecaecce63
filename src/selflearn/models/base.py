"""The one base of every learned component (the estimator contract of scikit-learn).

- Parameters are the constructor's keyword arguments, stored as given (``get_params``/``set_params``
  come from :class:`sklearn.base.BaseEstimator`); learned state ends in ``_``.
- ``fit(...)`` returns ``self``; it starts with :meth:`Estimator._start`, which seeds Python, NumPy
  and torch from ``random_state`` and pins torch to ``threads`` (the two runtime settings every model
  shares).
- One not-fitted check (:meth:`Estimator._check_fitted`) and one progress protocol
  (:data:`Progress`: ``progress(stage, done, total)``).
- A saved model is a directory (:mod:`selflearn.models.directory`): ``config.json`` names the
  component and its format version (checked on every load), the parameters, a fingerprint of the
  training data and the privacy metadata; weights sit beside it. A model overrides three small
  hooks: :meth:`_learned` (JSON state), :meth:`_save_weights` and :meth:`_restore`.
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterable

import numpy as np
from sklearn.base import BaseEstimator

from ..errors import NotFittedError, explain
from .directory import read_config, replace_dir, write_config

__all__ = ["Estimator", "Progress", "fingerprint", "no_progress", "RUNTIME_PARAMS"]

#: ``progress(stage, done, total)``: a named stage ("pretrain", "train", "epoch", ...) and how far it is
Progress = Callable[[str, int, int], None]
#: parameters that change how a model runs, not what it learns: not saved, given again on load
RUNTIME_PARAMS = ("threads",)


def no_progress(stage: str, done: int, total: int) -> None:
    """The default :data:`Progress`: says nothing."""


def fingerprint(*parts: Iterable[Any]) -> str:
    """A SHA-256 over the training data (each item's ``repr``, in order): two models with the same
    fingerprint saw the same data. It identifies the data without holding any of it."""
    h = hashlib.sha256()
    for part in parts:
        for item in part:
            h.update(repr(item).encode("utf-8", "surrogatepass"))
            h.update(b"\x1e")
        h.update(b"\x1d")
    return "sha256:" + h.hexdigest()


class Estimator(BaseEstimator):
    """Base of every selflearn model. Subclasses set :attr:`component` (the registry name),
    :attr:`format_version`, :attr:`fitted_attr` (set by ``fit``) and :attr:`fix` (how to get a
    model: shown when one is missing or stale)."""

    component: ClassVar[str] = ""
    format_version: ClassVar[int] = 1
    fitted_attr: ClassVar[str] = ""
    fix: ClassVar[str] = "fit it first"
    uses_torch: ClassVar[bool] = True  # seed torch and pin its threads in fit

    # -- the shared parts of fit ---------------------------------------------------------------
    def _start(self, *data: Iterable[Any]) -> random.Random:
        """Seed every generator from ``random_state``, pin torch's threads, record the data's
        fingerprint; returns the Python RNG the model shuffles with."""
        seed = int(getattr(self, "random_state", 0) or 0)
        np.random.seed(seed % 2**32)
        if self.uses_torch:
            import torch

            torch.manual_seed(seed)
            torch.set_num_threads(int(getattr(self, "threads", 1) or 1))
        self.data_fingerprint_ = fingerprint(*data) if data else None
        self.privacy_ = None  # a private training run records epsilon, delta and its accountant here
        return random.Random(seed)

    def _threads(self) -> None:
        """Pin torch to ``threads`` before inference."""
        import torch

        torch.set_num_threads(int(getattr(self, "threads", 1) or 1))

    def _check_fitted(self) -> None:
        if getattr(self, self.fitted_attr, None) is None:
            name = type(self).__name__
            raise NotFittedError(explain(name, "is not fitted", f"call fit() or {name}.load(directory)"))

    def __sklearn_is_fitted__(self) -> bool:
        return getattr(self, self.fitted_attr, None) is not None

    # -- the model directory -----------------------------------------------------------------
    def saved_params(self) -> dict:
        """The parameters a saved model records (runtime settings such as ``threads`` are not)."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.get_params(deep=False).items() if k not in RUNTIME_PARAMS}

    def save(self, directory: str | Path) -> Path:
        """Write the model directory; an existing one is replaced only once the new one is complete."""
        self._check_fitted()
        with replace_dir(Path(directory)) as tmp:
            self._save_weights(tmp)
            write_config(tmp, {"component": self.component, "format_version": self.format_version, "params": self.saved_params(),
                               "data_fingerprint": getattr(self, "data_fingerprint_", None), "privacy": getattr(self, "privacy_", None),
                               "learned": self._learned()})
        return Path(directory)

    @classmethod
    def load(cls, directory: str | Path, **runtime: Any):
        """The model saved in ``directory``; ``runtime`` gives settings such as ``threads``."""
        config = cls._upgrade(Path(directory))
        config = config or read_config(Path(directory), component=cls.component, format_version=cls.format_version, fix=cls.fix)
        params = {k: (tuple(v) if isinstance(getattr(cls(), k, None), tuple) else v) for k, v in config["params"].items()}
        model = cls(**params, **runtime)
        model.data_fingerprint_ = config.get("data_fingerprint")
        model.privacy_ = config.get("privacy")
        model._restore(Path(directory), config.get("learned") or {})
        return model

    # -- what a model overrides --------------------------------------------------------------
    @classmethod
    def _upgrade(cls, directory: Path) -> dict | None:
        """The config of a directory an older selflearn saved, in today's layout (or None: read it as is)."""
        return None

    def _learned(self) -> dict:
        """Learned state that is not weights, as JSON."""
        return {}

    def _save_weights(self, directory: Path) -> None:
        """Write the weights (and tokenizer) into ``directory``."""

    def _restore(self, directory: Path, learned: dict) -> None:
        """Set the learned state from ``learned`` and the weights in ``directory``."""
        raise NotImplementedError
