"""The absorbing-chain solver on hand-worked chains."""

from __future__ import annotations

import numpy as np
import pytest

from selflearn.rewrites.markov import DENSE_UP_TO, best_rewrites, solve_absorbing


def _solve(edges, n_t, n_a):
    src, dst, cnt = (np.array(x) for x in zip(*edges))
    return solve_absorbing(src, dst, cnt, n_transient=n_t, n_absorbing=n_a)


def test_a_chain_of_rephrases_ends_in_the_last_success():
    # u0 -> u1 -> success(u1); absorbing: S0=2, S1=3, FAIL=4
    b = _solve([(0, 1, 1), (1, 3, 1)], 2, 3).dense()
    assert b[0] == pytest.approx([0, 1, 0]) and b[1] == pytest.approx([0, 1, 0])


def test_several_absorbing_states():
    # u0: success 1x, rephrased to u1 3x; u1: success 2x, abandoned 2x
    chain = _solve([(0, 2, 1), (0, 1, 3), (1, 3, 2), (1, 4, 2)], 2, 3)
    b = chain.dense()
    assert b[0] == pytest.approx([0.25, 0.375, 0.375])
    assert b[1] == pytest.approx([0.0, 0.5, 0.5])
    assert b.sum(axis=1) == pytest.approx([1, 1])
    u, v, p, p_self, p_success, p_group = best_rewrites(chain, np.array([0, 1]), utterance_of_success=np.array([0, 1, -1]))
    assert list(u) == [0] and list(v) == [1]
    assert p == pytest.approx([0.375]) and p_self == pytest.approx([0.25]) and p_success == pytest.approx([0.625])
    assert p_group == pytest.approx(p)  # without meanings every utterance is its own group


def test_successes_with_the_same_meaning_pool_their_probability():
    # u0 ends in success(v1) 0.3, success(v2) 0.3, success(v3) 0.4; v1 and v2 mean the same
    chain = _solve([(0, 1, 3), (0, 2, 3), (0, 3, 4), (1, 5, 1), (2, 6, 1), (3, 7, 1)], 4, 4)
    succ, of_success = np.array([-1, 1, 2, 3]), np.array([-1, 1, 2, 3])
    u, v, p, _, p_success, p_group = best_rewrites(chain, succ, utterance_of_success=of_success)
    assert list(v) == [3] and p == pytest.approx([0.4])
    u, v, p, _, p_success, p_group = best_rewrites(chain, succ, utterance_of_success=of_success, meaning=np.array([0, 9, 9, 7]))
    assert list(v) == [1] and p == pytest.approx([0.3]) and p_group == pytest.approx([0.6]) and p_success == pytest.approx([1.0])


def test_cycles_are_solved_exactly():
    # u0 -> u1 or FAIL (1:1); u1 -> u0 or success(u1) (1:1): B1 = 1/2 + B0/2, B0 = B1/2 -> B1 = 2/3
    b = _solve([(0, 1, 1), (0, 4, 1), (1, 0, 1), (1, 3, 1)], 2, 3).dense()
    assert b[1, 1] == pytest.approx(2 / 3) and b[0, 1] == pytest.approx(1 / 3)
    assert b[0, 2] == pytest.approx(2 / 3)


def test_states_that_cannot_reach_absorption_are_dropped_and_their_mass_lost():
    # u2 <-> u3 is a closed loop; u4 goes there or to its own success; u0 has no edges at all
    chain = _solve([(2, 3, 1), (3, 2, 1), (4, 2, 1), (4, 9, 1)], 5, 5)
    assert sorted(chain.unreachable) == [2, 3]
    b = chain.dense()
    assert b[4, 4] == pytest.approx(0.5) and b[4].sum() == pytest.approx(0.5)
    assert not b[[0, 2, 3]].any()


def test_duplicate_edges_add_up_and_components_are_independent():
    edges = [(0, 3, 1), (0, 3, 1), (0, 4, 2), (1, 2, 1), (2, 5, 1)]
    b = _solve(edges, 3, 3).dense()
    assert b[0] == pytest.approx([0.5, 0.5, 0]) and b[1] == pytest.approx([0, 0, 1])


def test_large_components_use_the_sparse_series_and_agree():
    n = DENSE_UP_TO + 50  # a long chain u0 -> u1 -> ... -> u_{n-1} -> success, each step may fail
    edges = [(i, i + 1, 9) for i in range(n - 1)] + [(i, n + 1, 1) for i in range(n)] + [(n - 1, n, 9)]
    b = _solve(edges, n, 2).dense()
    assert b[n - 1, 0] == pytest.approx(0.9)
    assert b[0, 0] == pytest.approx(0.9**n, rel=1e-9)
    assert b.sum(axis=1) == pytest.approx(np.ones(n))


@pytest.mark.parametrize("edges", [[(0, 7, 1)], [(2, 0, 1)], [(0, 1, 0)]])
def test_bad_edges_are_rejected(edges):
    with pytest.raises(ValueError):
        _solve(edges, 2, 2)


def test_series_and_dense_solutions_agree_on_a_random_graph_with_cycles():
    from selflearn.rewrites import markov

    rng = np.random.default_rng(0)
    n_t, n_a = 300, 120
    src = rng.integers(0, n_t, 1500)
    dst = np.where(rng.random(1500) < 0.5, rng.integers(0, n_t, 1500), n_t + rng.integers(0, n_a, 1500))
    cnt = rng.integers(1, 5, 1500)
    dense = solve_absorbing(src, dst, cnt, n_transient=n_t, n_absorbing=n_a).dense()
    old = markov.DENSE_UP_TO
    markov.DENSE_UP_TO = 10
    try:
        series = solve_absorbing(src, dst, cnt, n_transient=n_t, n_absorbing=n_a).dense()
    finally:
        markov.DENSE_UP_TO = old
    assert np.abs(dense - series).max() < 1e-9
