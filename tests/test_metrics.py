"""The one metrics module: each function against a hand-worked case or scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest

from selflearn import metrics


def test_prf_from_counts():
    assert metrics.prf(8, 2, 8) == pytest.approx({"precision": 0.8, "recall": 0.5, "f1": 2 * 0.8 * 0.5 / 1.3})
    assert metrics.prf(0, 0, 0) == {"precision": 0.0, "recall": 0.0, "f1": 0.0}


def test_classification_report_and_auc():
    r = metrics.classification_report(["a", "a", "b", "c"], ["a", "b", "b", "c"], ["a", "b", "c"], confusion_labels=["a", "b", "c"])
    assert r["accuracy"] == 0.75 and r["per_class"]["a"] == {"precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3), "support": 2}
    assert r["confusion"]["matrix"] == [[1, 1, 0], [0, 1, 0], [0, 0, 1]]
    assert metrics.auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == 0.75
    assert metrics.auc([1, 1], [0.2, 0.3]) is None and metrics.auc([0, 1], [0.5, 0.5]) is None


def test_precision_coverage_ties_weights_and_threshold():
    curve = metrics.precision_coverage(np.array([0.9, 0.8, 0.8, 0.1]), np.array([1, 1, 0, 0]), 4)
    assert [(p["threshold"], p["count"], p["precision"], p["coverage"]) for p in curve] == [(0.9, 1, 1.0, 0.25), (0.8, 3, 2 / 3, 0.75), (0.1, 4, 0.5, 1.0)]
    weighted = metrics.precision_coverage(np.array([0.9, 0.5]), np.array([1, 0]), 3.0, weights=np.array([1.0, 2.0]), covered=np.array([1, 0]))
    assert [p["precision"] for p in weighted] == [1.0, pytest.approx(1 / 3)] and weighted[-1]["coverage"] == pytest.approx(1 / 3)
    assert metrics.threshold_for(curve, 0.6)["threshold"] == 0.8
    assert metrics.threshold_for(curve, 0.6, min_count=4) is None and metrics.threshold_for(curve, 1.01) is None
    assert metrics.thin(curve, 2) == [curve[0], curve[2]] and metrics.thin([], 5) == []


def test_paired_bootstrap_reduction():
    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(200), 10)
    control = (rng.random(2000) < 0.3).astype(float)
    treatment = control * (rng.random(2000) > 0.2)  # a fifth of the defects fixed
    cr, tr, red, lo, hi, p0 = metrics.paired_bootstrap_reduction(users, control, treatment, n_users=200, n_boot=500)
    assert tr < cr and lo < red < hi and 0.1 < red < 0.3 and p0 == 0.0
    assert metrics.paired_bootstrap_reduction(users, control, control, n_users=200, n_boot=200)[2] == 0.0


def test_bootstrap_ratio_of_wins_to_losses():
    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(200), 10)
    wins = (rng.random(2000) < 0.24).astype(float)
    losses = ((rng.random(2000) < 0.02) & (wins == 0)).astype(float)
    ratio, lo, hi = metrics.bootstrap_ratio(users, wins, losses, n_users=200, n_boot=500)
    assert ratio == wins.sum() / losses.sum() and lo < ratio < hi and 5 < ratio < 30
    assert metrics.bootstrap_ratio(users, wins, np.zeros(2000), n_users=200) == (None, None, None)
    few = np.zeros(2000)
    few[0] = 1  # one loss: most resamples have none, so the interval has no finite top
    r, lo, hi = metrics.bootstrap_ratio(users, wins, few, n_users=200, n_boot=500)
    assert r == wins.sum() and hi is None and lo <= r
