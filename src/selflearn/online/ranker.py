"""The learned ranker: a small MLP (scikit-learn) over the ranking features, served with numpy,
and the rewrite threshold chosen for a precision target."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import metrics
from ..errors import InvalidInputError, explain
from ..models.base import Estimator
from ..models.private import DpSettings, PrivateSGD, check_dp, user_passes
from .features import FEATURES

__all__ = ["Ranker", "choose_threshold", "choose_threshold_by_harm", "precision_coverage"]


class Ranker(Estimator):
    """P(candidate is the rewrite that works | features). ``fit`` trains a one-hidden-layer MLP on
    standardised features; ``score`` runs it in numpy (microseconds for a request's candidates)."""

    component = "ranker"
    format_version = 2  # 2: the shared model directory; max_iter saved
    fitted_attr = "w1_"
    fix = "train it with `selflearn online train`"
    uses_torch = False

    def __init__(self, *, hidden: int = 32, alpha: float = 1e-4, max_iter: int = 200, dp_epsilon: float | None = None,
                 dp_delta: float | None = None, dp_epochs: int = 20, ignore: tuple[str, ...] = (), random_state: int = 0):
        self.hidden = hidden
        self.alpha = alpha
        self.max_iter = max_iter
        self.dp_epsilon = dp_epsilon  # user-level differential privacy (models.private); None: off
        self.dp_delta = dp_delta
        self.dp_epochs = dp_epochs  # passes over the rows (in user-sampled steps) under DP
        self.ignore = ignore  # features the ranker never sees (held at 0 in training, no weight in serving: ablations)
        self.random_state = random_state

    def _mask(self) -> np.ndarray:
        """1 for the features used, 0 for the ignored ones."""
        unknown = sorted(set(self.ignore) - set(FEATURES))
        if unknown:
            raise InvalidInputError(explain(f"ignore={unknown}", f"must name ranking features ({', '.join(FEATURES)})", "e.g. ignore=('ctx_hour',)"))
        return np.array([f not in self.ignore for f in FEATURES], np.float32)

    def fit(self, x: np.ndarray, y: np.ndarray, users: list[str] | None = None) -> "Ranker":
        """Train on candidate rows ``x`` (labels ``y``); ``users`` (one per row: whose request it
        was) is needed under DP, where the same MLP is trained with user-level DP-SGD instead."""
        from sklearn.neural_network import MLPClassifier

        x, y = np.asarray(x, np.float64), np.asarray(y, int)
        if x.ndim != 2 or x.shape[1] != len(FEATURES) or len(x) != len(y):
            raise InvalidInputError(explain(f"x {x.shape}, y {y.shape}", f"need (n, {len(FEATURES)}) features and n labels", "build them with the rewriter's candidates()"))
        if len(set(y.tolist())) < 2:
            raise InvalidInputError(explain(f"labels {sorted(set(y.tolist()))}", "the ranker needs positives and negatives", "train on more logs"))
        if self.dp_epsilon is not None and (users is None or len(users) != len(y)):
            raise InvalidInputError(explain(f"users={'None' if users is None else len(users)}", "DP training needs the user of every row",
                                            "pass users=[...] (one per row)"))
        dp = check_dp(self.dp_epsilon, self.dp_delta, len(set(users or ())))
        mask = self._mask()
        x = x * mask
        self._start(map(tuple, x), y.tolist())
        # under DP no statistic of the data leaves un-noised: the features are in [0, 1] or log counts
        # by construction, so they are used as they are
        self.mean_ = x.mean(0) if dp is None else np.zeros(x.shape[1])
        self.scale_ = np.where(x.std(0) > 1e-9, x.std(0), 1.0) if dp is None else np.ones(x.shape[1])
        self.threshold_ = 0.5
        if dp is not None:
            self._fit_private((x - self.mean_) / self.scale_, y, users, dp)
            self.w1_[mask == 0] = 0.0  # an ignored feature has no weight: what a caller sends for it changes nothing
            return self
        mlp = MLPClassifier(hidden_layer_sizes=(self.hidden,), alpha=self.alpha, random_state=self.random_state, max_iter=self.max_iter,
                            early_stopping=True, n_iter_no_change=10)
        mlp.fit((x - self.mean_) / self.scale_, y)
        self.w1_, self.w2_ = mlp.coefs_[0].astype(np.float32), mlp.coefs_[1].astype(np.float32)
        self.b1_, self.b2_ = mlp.intercepts_[0].astype(np.float32), mlp.intercepts_[1].astype(np.float32)
        self.w1_[mask == 0] = 0.0
        return self

    def _fit_private(self, z: np.ndarray, y: np.ndarray, users: list[str], dp: tuple[float, float]) -> None:
        """The same one-hidden-layer MLP, trained with user-level DP-SGD: each step, every sampled
        user's mean gradient over up to 32 of their candidate rows, clipped as one."""
        import torch

        from ..models.private import RowLoss

        torch.manual_seed(self.random_state)
        net = torch.nn.Sequential(torch.nn.Linear(z.shape[1], self.hidden), torch.nn.ReLU(), torch.nn.Linear(self.hidden, 1))
        n_users, k = len(set(users)), 32
        settings = DpSettings(*dp, users_per_step=min(n_users, 512), epochs=user_passes(users, k, self.dp_epochs),
                              clipping="user", examples_per_user=k)
        opt = torch.optim.Adam(net.parameters(), lr=1e-2, weight_decay=self.alpha)
        private = PrivateSGD(net, opt, users, settings, seed=self.random_state)
        xt, yt = torch.tensor(z, dtype=torch.float32), torch.tensor(y, dtype=torch.float32)
        bce = torch.nn.BCEWithLogitsLoss(reduction="none")
        rows = RowLoss(lambda ix: (xt[torch.from_numpy(ix)], yt[torch.from_numpy(ix)]), lambda call, x, target: bce(call(x).squeeze(-1), target))
        private.make_private(rows)
        for _ in range(private.steps):
            private.step(rows)
        state = {k: v.detach().numpy() for k, v in net.state_dict().items()}
        self.w1_, self.b1_ = state["0.weight"].T.astype(np.float32).copy(), state["0.bias"].astype(np.float32)
        self.w2_, self.b2_ = state["2.weight"].T.astype(np.float32).copy(), state["2.bias"].astype(np.float32)
        self.privacy_ = private.spent

    def score(self, x: np.ndarray) -> np.ndarray:
        self._check_fitted()
        z = (np.asarray(x, np.float32) - self.mean_.astype(np.float32)) / self.scale_.astype(np.float32)
        h = np.maximum(z @ self.w1_ + self.b1_, 0.0)
        return (1.0 / (1.0 + np.exp(-(h @ self.w2_ + self.b2_)))).ravel()

    def _learned(self) -> dict:
        return {"features": list(FEATURES), "threshold_": float(self.threshold_)}

    def _save_weights(self, directory: Path) -> None:
        from safetensors.numpy import save_file

        save_file({"w1": self.w1_, "b1": self.b1_, "w2": self.w2_, "b2": self.b2_, "mean": self.mean_.astype(np.float64),
                   "scale": self.scale_.astype(np.float64)}, str(directory / "model.safetensors"))

    def _restore(self, directory: Path, learned: dict) -> None:
        from safetensors.numpy import load_file

        if learned.get("features") != list(FEATURES):
            raise InvalidInputError(explain(f"features {learned.get('features')}", "must match this version's ranking features", "retrain with `selflearn online train`"))
        w = load_file(str(directory / "model.safetensors"))
        self.w1_, self.b1_, self.w2_, self.b2_, self.mean_, self.scale_ = w["w1"], w["b1"], w["w2"], w["b2"], w["mean"], w["scale"]
        self.threshold_ = learned["threshold_"]


def precision_coverage(scores: np.ndarray, correct: np.ndarray, fixable: float, weights: np.ndarray | None = None,
                       fixed: np.ndarray | None = None) -> list[dict]:
    """For each distinct threshold (highest first): rewrites made, their precision, and coverage
    (fixes / requests that had a fix). ``scores``/``correct`` per request: the top candidate's score
    and whether rewriting to it is right (or harmless); ``fixed``: whether it fixes a failing
    request (default: ``correct``); ``weights`` undo a sample's over-representation of a kind of
    request (``fixable`` is then a weighted count too). :func:`selflearn.metrics.precision_coverage`
    with the rewriter's names."""
    return [_as_rewrites(p) for p in _curve(scores, correct, fixable, weights, fixed)]


def _curve(scores, correct, fixable, weights, fixed) -> list[dict]:
    return metrics.precision_coverage(scores, correct, fixable, weights=weights, covered=correct if fixed is None else fixed)


def _as_rewrites(point: dict) -> dict:
    """A curve point with the rewriter's name for its count."""
    return {"threshold": point["threshold"], "rewrites": point["count"], "precision": point["precision"], "coverage": point["coverage"]}


def choose_threshold(scores: np.ndarray, correct: np.ndarray, fixable: float, *, min_precision: float, min_rewrites: int = 20,
                     weights: np.ndarray | None = None, fixed: np.ndarray | None = None) -> tuple[float, dict]:
    """The lowest threshold whose rewrites are at least ``min_precision`` right (the most coverage
    at that precision); 1.0 (never rewrite) when none is."""
    if not 0.0 < min_precision <= 1.0:
        raise InvalidInputError(explain(f"min_precision={min_precision}", "must be in (0, 1]", "use e.g. 0.9"))
    best = metrics.threshold_for(_curve(np.asarray(scores, float), np.asarray(correct, bool), fixable, weights, fixed), min_precision,
                                 min_count=min_rewrites)
    if best is None:
        return 1.0, {"threshold": 1.0, "rewrites": 0, "precision": None, "coverage": 0.0}
    return best["threshold"], _as_rewrites(best)


def choose_threshold_by_harm(scores: np.ndarray, fixed: np.ndarray, harmful: np.ndarray, *, min_ratio: float,
                             weights: np.ndarray | None = None, min_rewrites: int = 20) -> tuple[float, dict]:
    """The lowest threshold at which fixes outnumber harm (rewrites of requests that worked, to
    another meaning) at least ``min_ratio`` to 1 — wrong rewrites of requests that were failing
    anyway cost nothing here. 1.0 (never rewrite) when no threshold qualifies."""
    if min_ratio <= 0:
        raise InvalidInputError(explain(f"min_ratio={min_ratio}", "must be > 0", "use e.g. 12 (twelve fixes per broken request)"))
    order = np.argsort(-np.asarray(scores, float), kind="stable")
    w = np.ones(len(order)) if weights is None else np.asarray(weights, float)[order]
    s = np.asarray(scores, float)[order]
    fix = np.cumsum(np.asarray(fixed, float)[order] * w)
    harm = np.cumsum(np.asarray(harmful, float)[order] * w)
    last = np.r_[s[1:] != s[:-1], True]
    best = None
    for i in np.flatnonzero(last):
        if i + 1 >= min_rewrites and fix[i] >= min_ratio * harm[i]:
            best = {"threshold": float(s[i]), "rewrites": int(i + 1), "fixes": float(fix[i]), "harm": float(harm[i])}
    if best is None:
        return 1.0, {"threshold": 1.0, "rewrites": 0, "fixes": 0.0, "harm": 0.0}
    return best["threshold"], best
