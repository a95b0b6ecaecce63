"""User-level differentially private training: the settings' rules, the sampler, the private
median, and DP-SGD on the failure-point model (budget recorded, kept on save/load, still learns)."""

from __future__ import annotations

import numpy as np
import pytest

from selflearn.errors import InvalidInputError
from selflearn.models.private import UserSampler, check_dp, private_median


def test_dp_settings_rules():
    assert check_dp(None, None, 10) is None
    assert check_dp(8, None, 100) == (8.0, 1 / 1000)
    for eps in (0, -1, float("inf"), True):
        with pytest.raises(InvalidInputError, match="dp_epsilon"):
            check_dp(eps, None, 100)
    with pytest.raises(InvalidInputError, match=r"must be in \(0, 1/n\)"):
        check_dp(8, 0.01, 100)
    with pytest.raises(InvalidInputError, match="needs dp_epsilon"):
        check_dp(None, 1e-5, 100)
    with pytest.raises(InvalidInputError, match="at least 2 users"):
        check_dp(8, None, 1)


def test_each_sampled_user_gives_one_example():
    users = ["a"] * 50 + ["b"] * 2 + ["c"]
    s = UserSampler(users, 2, np.random.default_rng(0))
    assert s.n_users == 3 and s.q == pytest.approx(2 / 3)
    for _ in range(200):
        ix = s.batch()
        owners = [users[i] for i in ix]
        assert len(owners) == len(set(owners))  # never two rows of one user in a step


def test_private_median_is_near_the_median_and_random_at_tiny_epsilon():
    rng = np.random.default_rng(0)
    norms = rng.lognormal(0.0, 0.3, 2000)
    picks = [private_median(norms, 1.0, rng) for _ in range(50)]
    assert all(0.7 < p < 1.4 for p in picks)
    wild = {round(private_median(norms, 1e-6, rng), 3) for _ in range(50)}
    assert len(wild) > 10  # almost no budget: almost uniform over the grid


@pytest.fixture(scope="module")
def runs(fpi_runs):
    return fpi_runs


def test_the_failure_point_model_trains_privately_and_records_the_budget(runs, tmp_path):
    from selflearn.fpi import FailurePointModel, fpi_metrics

    train, y, _, _ = runs["train"]
    test, y_test, _, _ = runs["eval"]
    small = {"epochs": 6, "hidden": 64, "text_dim": 64, "batch_size": 128}
    model = FailurePointModel(**small, dp_epsilon=8.0, lr=1e-2).fit(train, y)
    p = model.privacy_
    assert p["unit"] == "user" and p["users"] == len({t.user_id for t in train}) and p["steps"] > 0
    assert p["epsilon"] <= 8.0 * 1.02 and p["delta"] == pytest.approx(1 / (10 * p["users"])) and p["noise_multiplier"] > 0
    acc = fpi_metrics(y_test, model.predict(test))["accuracy"]
    majority = max(y_test.count(c) for c in set(y_test)) / len(y_test)
    assert acc > majority  # it still learns something under DP
    model.save(tmp_path / "m")
    assert FailurePointModel.load(tmp_path / "m").privacy_ == p  # the spent budget travels with the model
    with pytest.raises(InvalidInputError, match="dp_delta"):
        FailurePointModel(**small, dp_epsilon=1.0, dp_delta=0.5).fit(train, y)


def test_the_rephrase_model_trains_privately_over_its_top_layer(tmp_path):
    from test_rephrase import _toy

    from selflearn.rephrase import ContextualRephraseDetector

    exs, labels = _toy(64)
    m = ContextualRephraseDetector(epochs=2, batch_size=16, dp_epsilon=8.0, random_state=0).fit(exs, labels)
    p = m.privacy_
    assert p["unit"] == "user" and p["users"] == 64 and p["epsilon"] <= 8.0 * 1.02 and p["clipping"] == "ghost"
    assert len(m.predict(exs[:4])) == 4
    m.save(tmp_path / "r")
    assert ContextualRephraseDetector.load(tmp_path / "r").privacy_ == p
    assert all(q.requires_grad for q in m.module_.parameters())  # a later plain fine-tune may train them all again


def test_the_ranker_trains_privately_and_scores_like_a_ranker():
    from selflearn.online.features import FEATURES
    from selflearn.online.ranker import Ranker

    rng = np.random.default_rng(0)
    x = rng.normal(size=(4000, len(FEATURES)))
    y = (x[:, 0] + 0.5 * x[:, 1] + rng.normal(scale=0.5, size=4000) > 0).astype(int)
    users = [f"u{i % 400}" for i in range(4000)]
    r = Ranker(dp_epsilon=8.0).fit(x, y, users=users)
    s = r.score(x)
    assert r.privacy_["users"] == 400 and r.privacy_["epsilon"] <= 8.0 * 1.02
    assert ((s > 0.5) == y).mean() > 0.8  # the signal survives the noise
    with pytest.raises(InvalidInputError, match="user of every row"):
        Ranker(dp_epsilon=8.0).fit(x, y)


def test_the_online_rewriter_trains_its_ranker_privately(online_model, tmp_path):
    from selflearn.models.directory import describe
    from selflearn.online import OnlineConfig, train_online
    from selflearn.online.online_rewriter import OnlineRewriter
    from selflearn.store.store import Store

    with Store(online_model["dir"] / "s.duckdb") as st:
        train_online(st, tmp_path / "dp", table=online_model["table"],
                     config=OnlineConfig(max_pairs=256, examples=600, batch_size=32, min_precision=0.8, dp_epsilon=8.0))
    p = describe(tmp_path / "dp")["privacy"]
    assert p["unit"] == "user" and p["epsilon"] <= 8.0 * 1.02 and p["pseudonym_key"] and "encoder not fine-tuned" in p["trained_with_dp"]
    rw = OnlineRewriter.load(tmp_path / "dp")  # the merged record still names the key
    assert rw.ids is not None and rw.decide("play some jazz", user_id="u1") is not None
