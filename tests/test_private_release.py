"""The private release of shared statistics (privacy.partition) and the online model's private global layer."""

import math

import numpy as np
import pytest

from selflearn.errors import InvalidInputError
from selflearn.privacy.partition import bound_contributions, gaussian_sigma, keep_probability, select_partitions


def test_the_analytic_gaussian_sigma_meets_delta_exactly_and_beats_the_classic_bound():
    from scipy.stats import norm

    for eps, delta, sens in ((0.5, 1e-5, 1.0), (1.0, 1e-6, 3.0), (4.0, 1e-5, 2.0)):
        s = gaussian_sigma(eps, delta, sens)
        a, b = sens / (2 * s), eps * s / sens
        assert norm.cdf(a - b) - math.exp(eps) * norm.cdf(-a - b) == pytest.approx(delta, rel=1e-3)
        if eps < 1:  # the classic sqrt(2 ln(1.25/delta)) / eps holds for eps < 1 and is looser
            assert s < math.sqrt(2 * math.log(1.25 / delta)) * sens / eps
    assert gaussian_sigma(1.0, 1e-5, 2.0) == pytest.approx(2 * gaussian_sigma(1.0, 1e-5, 1.0), rel=1e-6)  # scales with sensitivity
    assert gaussian_sigma(8.0, 1e-5) < gaussian_sigma(1.0, 1e-5)
    with pytest.raises(InvalidInputError, match="epsilon > 0"):
        gaussian_sigma(0.0, 1e-5)


def test_contributions_are_bounded_per_user():
    rng = np.random.default_rng(0)
    got = bound_contributions({"a": [f"t{i}" for i in range(50)] + ["t0"] * 5, "b": ["x"]}, 5, rng)
    assert len(got["a"]) == 5 and len(set(got["a"])) == 5 and got["b"] == ["x"]
    with pytest.raises(InvalidInputError, match="max_per_user=0"):
        bound_contributions({"a": ["x"]}, 0, rng)


def test_partition_selection_keeps_what_many_users_said_and_never_what_one_did():
    assert 0 < keep_probability(1, 1.0, 1e-5, 5) < 1e-5  # without a pre-threshold: delta-small, not 0
    assert keep_probability(4, 1.0, 1e-5, 5, pre_threshold=5) == 0.0  # fewer than k users: never
    assert 0 < keep_probability(5, 1.0, 1e-5, 5, pre_threshold=5) < 1e-5
    assert keep_probability(1000, 1.0, 1e-5, 5) == pytest.approx(1.0)
    p = [keep_probability(n, 1.0, 1e-5, 5) for n in (10, 40, 80, 160)]
    assert p == sorted(p) and p[0] < p[-1]
    assert keep_probability(40, 8.0, 1e-5, 5) > keep_probability(40, 1.0, 1e-5, 5)  # more budget, more kept
    counts = {f"rare{i}": 1 for i in range(500)} | {"common": 2000}
    kept = select_partitions(counts, 1.0, 1e-5, 5, np.random.default_rng(0), pre_threshold=5)
    assert kept == ["common"]
    with pytest.raises(InvalidInputError, match="strategy='median'"):
        select_partitions(counts, 1.0, 1e-5, 5, np.random.default_rng(0), strategy="median")


def _history(n_users: int):
    from selflearn.online.train import History

    def row(user, text, ok, meaning, device="speaker"):
        return {"user_id": user, "text": text, "rewrite": None, "ok": ok, "meaning": meaning, "device_type": device, "has_screen": False,
                "location": None, "hour": 9}

    rows, target = [], {}
    for u in range(n_users):
        # everyone: the weather works (three times); "whats the whether" fails, a retry fixes it
        rows += [row(f"u{u}", "what's the weather", True, "weather|")] * 3
        rows += [row(f"u{u}", "whats the whether", False, "none|"), row(f"u{u}", "what's the weather", True, "weather|")]
        target[len(rows) - 2] = len(rows) - 1
        rows.append(row(f"u{u}", f"call my sister at {u:04d}", True, f"call|number={u:04d}", device="phone" if u == 0 else "speaker"))
    return History(rows, target)


def test_the_private_global_layer_holds_shared_requests_with_noisy_counts_and_no_ones_own():
    from selflearn.online.private_global import build_private_global

    h = _history(3000)
    g, info = build_private_global(h, 3.0, 1e-5, max_texts=3, seed=0)
    assert set(g.texts) == {"what's the weather", "whats the whether"}  # no user's own request
    w, f = g.row["what's the weather"], g.row["whats the whether"]
    sd = info["noise_sd"]
    assert abs(g.turns[w] - 3000) < 5 * sd and abs(g.successes[w] - 3000) < 5 * sd  # counted in users, not turns
    assert g.fixes[f] > 3000 - 5 * sd and g.successes[f] < 5 * sd
    assert g.meanings[g.meaning[w]] == "weather|" and g.meaning[f] == -1 and g.meanings[g.meaning_heard[f]] == "none|"
    assert g.candidates.tolist() == [w]  # the one that works
    assert g.device_types == ["speaker"]  # "phone" (one user) is no context column
    assert g.privacy is info and info["epsilon"] == 3.0 and info["unit"] == "user" and info["l2_sensitivity"] == pytest.approx(math.sqrt(21), abs=1e-3)
    # the same seed, the same release; another seed, other noise
    again, _ = build_private_global(h, 3.0, 1e-5, max_texts=3, seed=0)
    other, _ = build_private_global(h, 3.0, 1e-5, max_texts=3, seed=1)
    assert again.turns.tolist() == g.turns.tolist() and other.turns.tolist() != g.turns.tolist()


def test_a_private_global_layer_from_few_users_is_empty_and_round_trips(tmp_path):
    from selflearn.online.memory import GlobalMemory
    from selflearn.online.private_global import build_private_global

    g, info = build_private_global(_history(20), 1.0, 1e-4, seed=0)
    assert g.texts == [] and info["texts"] == 0
    g, _ = build_private_global(_history(3000), 3.0, 1e-5, seed=0)
    g.save(tmp_path / "g")
    back = GlobalMemory.load(tmp_path / "g")
    assert back.texts == g.texts and back.turns.tolist() == g.turns.tolist() and back.privacy == g.privacy
