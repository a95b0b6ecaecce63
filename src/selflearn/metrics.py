"""The metrics every part of selflearn reports, in one place, on scikit-learn and NumPy: precision,
recall and F1 (from counts or labels), a classification report, AUC, the precision-coverage curve
(with sample weights) and the threshold for a precision, and the per-user paired bootstrap of an
A/B's relative reduction. Signals, rephrases, labels, failure points, the ranker's threshold, the A/B
harness and the benchmarks all use these, so a figure means the same thing everywhere."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["prf", "classification_report", "agreement", "auc", "precision_coverage", "thin", "threshold_for", "paired_bootstrap_reduction", "bootstrap_ratio"]


def prf(tp: float, fp: float, fn: float) -> dict:
    """Precision, recall and F1 from counts (0 where undefined)."""
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0}


def classification_report(y_true: Sequence, y_pred: Sequence, labels: Sequence, *, confusion_labels: Sequence | None = None) -> dict:
    """Accuracy, macro-F1 over ``labels``, per-class precision/recall/F1/support and (with
    ``confusion_labels``) the confusion matrix, rows the reference."""
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

    labels = list(labels)
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    mp, mr, mf, _ = precision_recall_fscore_support(y_true, y_pred, labels=labels, average="macro", zero_division=0)
    out = {"accuracy": float(accuracy_score(y_true, y_pred)), "macro_precision": float(mp), "macro_recall": float(mr),
           "macro_f1": float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
           "per_class": {c: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])} for i, c in enumerate(labels)}}
    if confusion_labels is not None:
        out["confusion"] = {"labels": list(confusion_labels), "matrix": confusion_matrix(y_true, y_pred, labels=list(confusion_labels)).tolist()}
    return out


def agreement(y_true: Sequence, y_pred: Sequence, labels: Sequence, *, order: Sequence | None = None) -> dict:
    """Cohen's kappa (scikit-learn) and, when the classes have an ``order``, Spearman's rho of the
    class ranks (SciPy: tied ranks averaged); None where undefined (a constant side)."""
    from scipy.stats import spearmanr
    from sklearn.metrics import cohen_kappa_score

    import warnings

    with warnings.catch_warnings():  # undefined cases (one class on both sides) come back as nan, reported as None
        warnings.simplefilter("ignore")
        kappa = float(cohen_kappa_score(y_true, y_pred, labels=list(labels))) if len(y_true) else None
    rho = None
    if order is not None and len(set(y_true)) > 1 and len(set(y_pred)) > 1:
        rank = {c: i for i, c in enumerate(order)}
        rho = float(spearmanr([rank[c] for c in y_true], [rank[c] for c in y_pred]).statistic)
    return {"kappa": None if kappa is None or np.isnan(kappa) else kappa, "spearman": rho}


def auc(y_true: Sequence[int], scores: Sequence[float]) -> float | None:
    """ROC AUC, or None when it is undefined (one class, or one distinct score)."""
    from sklearn.metrics import roc_auc_score

    if len(set(y_true)) != 2 or len(set(scores)) < 2:
        return None
    return float(roc_auc_score(y_true, scores))


def precision_coverage(scores: np.ndarray, correct: np.ndarray, total: float, *, weights: np.ndarray | None = None,
                       covered: np.ndarray | None = None) -> list[dict]:
    """The precision-coverage curve: for each distinct score taken as a threshold (highest first),
    ``count`` (items at or above it), ``precision`` (weighted share of them that are right) and
    ``coverage`` (weighted ``covered`` items at or above it over ``total``; by default every item
    counts, i.e. the share of ``total`` labelled or rewritten). ``weights`` undo a sample's
    over-representation of a kind of item (``total`` is then a weighted count too)."""
    scores = np.asarray(scores, float)
    if len(scores) == 0:
        return []
    order = np.argsort(-scores, kind="stable")
    w = np.ones(len(scores)) if weights is None else np.asarray(weights, float)[order]
    s, c = scores[order], np.asarray(correct, float)[order]
    v = np.ones(len(scores)) if covered is None else np.asarray(covered, float)[order]
    good, cov, n = np.cumsum(c * w), np.cumsum(v * w), np.cumsum(w)
    last = np.r_[s[1:] != s[:-1], True]
    return [{"threshold": float(s[i]), "count": int(i + 1), "precision": float(good[i] / n[i]), "coverage": float(cov[i] / max(total, 1e-12))}
            for i in np.flatnonzero(last)]


def thin(curve: list[dict], points: int = 50) -> list[dict]:
    """About ``points`` points of a curve, evenly spread over its item counts (for plots and files)."""
    if not curve:
        return []
    counts = np.array([p["count"] for p in curve])
    picks = np.linspace(1, counts[-1], min(points, int(counts[-1]))).astype(int)
    return [curve[i] for i in sorted({int(np.searchsorted(counts, k)) for k in picks})]


def threshold_for(curve: list[dict], min_precision: float, *, min_count: int = 0) -> dict | None:
    """The lowest threshold (widest coverage) whose precision is at least ``min_precision`` over at
    least ``min_count`` items; None when there is none."""
    ok = [p for p in curve if p["precision"] >= min_precision and p["count"] >= min_count]
    return max(ok, key=lambda p: p["count"]) if ok else None


def _user_resamples(n_users: int, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, n_users) counts: how often each user is drawn in each bootstrap resample of users."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(n_users, np.full(n_users, 1.0 / n_users), size=n_boot).astype(float)


def paired_bootstrap_reduction(users: np.ndarray, control: np.ndarray, treatment: np.ndarray, *, n_users: int, n_boot: int = 2000,
                               seed: int = 0) -> tuple[float, float, float, float, float, float]:
    """An A/B's rates, relative reduction and its 95% percentile CI, resampling users (a user's
    goals move together, so the CI allows for users who differ). ``control``/``treatment`` are 0/1
    per goal, ``users`` the goal's user index. Returns (control rate, treatment rate, reduction,
    ci_low, ci_high, share of resamples with no reduction)."""
    n_goals = np.bincount(users, minlength=n_users).astype(float)
    c = np.bincount(users, weights=control, minlength=n_users)
    t = np.bincount(users, weights=treatment, minlength=n_users)
    cr, tr = c.sum() / n_goals.sum(), t.sum() / n_goals.sum()
    red = (cr - tr) / cr if cr > 0 else 0.0
    draws = _user_resamples(n_users, n_boot, seed)
    bc, bt = draws @ c, draws @ t
    with np.errstate(invalid="ignore", divide="ignore"):
        reds = np.where(bc > 0, (bc - bt) / bc, 0.0)
    lo, hi = np.percentile(reds, [2.5, 97.5])
    return float(cr), float(tr), float(red), float(lo), float(hi), float((reds <= 0).mean())


def bootstrap_ratio(users: np.ndarray, numerator: np.ndarray, denominator: np.ndarray, *, n_users: int, n_boot: int = 2000,
                    seed: int = 0) -> tuple[float | None, float | None, float | None]:
    """A ratio of two per-goal counts (an A/B's wins to losses) and its 95% percentile CI,
    resampling users as :func:`paired_bootstrap_reduction` does. Returns (ratio, ci_low, ci_high);
    None where the denominator is 0 (a resample without losses has no finite ratio: it counts as
    above every finite one)."""
    num = np.bincount(users, weights=numerator, minlength=n_users)
    den = np.bincount(users, weights=denominator, minlength=n_users)
    if den.sum() == 0:
        return None, None, None
    draws = _user_resamples(n_users, n_boot, seed)
    bn, bd = draws @ num, draws @ den
    with np.errstate(invalid="ignore", divide="ignore"):
        ratios = np.where(bd > 0, bn / bd, np.inf)
    lo, hi = np.percentile(ratios, [2.5, 97.5], method="nearest")  # no interpolation between infinite ratios
    return float(num.sum() / den.sum()), float(lo), (float(hi) if np.isfinite(hi) else None)
