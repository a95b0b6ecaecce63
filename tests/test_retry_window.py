"""The personal layer's retry window, learned from the gaps after failing requests."""

import numpy as np
import pytest

from selflearn.errors import InvalidInputError
from selflearn.online import OnlineConfig
from selflearn.online.retry_window import DEFAULT_WINDOW_S, gaps_after_failure, learn_retry_window
from selflearn.online.train import SIGNALS_RULE, History, personal_retry_rule


def _gaps(n_retry: int, n_next: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.uniform(3, 13.5, n_retry), rng.uniform(17, 95, n_next)])


def test_the_window_falls_between_retries_and_next_requests():
    assert 13.5 <= learn_retry_window(_gaps(7000, 3000)) <= 17.0
    # where the paces overlap, the window sits at the least dense point, whatever the mix
    rng = np.random.default_rng(2)
    both = np.concatenate([rng.lognormal(np.log(6), 0.3, 5000), rng.lognormal(np.log(40), 0.4, 5000)])
    assert 10.0 <= learn_retry_window(both) <= 22.0


def test_no_window_without_enough_gaps_or_without_fast_retries():
    assert learn_retry_window(_gaps(50, 50)) is None
    assert learn_retry_window(np.random.default_rng(1).uniform(60, 300, 1000)) is None  # everything slower than the cap


@pytest.mark.parametrize("kw, name", [({"bin_width": 0.0}, "bin_width"), ({"cap_s": 0}, "cap_s")])
def test_bad_settings_are_named(kw, name):
    with pytest.raises(InvalidInputError, match=name):
        learn_retry_window(_gaps(700, 300), **kw)


def _history(gaps_s: list[float], ok: list[bool]) -> History:
    rows, t = [], 0.0
    for k, (g, good) in enumerate(zip([0.0, *gaps_s], ok)):
        t += g
        rows.append({"session_id": "s1", "ts": t, "ok": good, "rewrite": "x" if k == 3 else None})
    return History(rows, {})


def test_gaps_are_taken_after_failing_requests_as_heard():
    # turns: fail, ok, fail, fail (rewritten: left out), ok — gaps after the failing ones as heard
    h = _history([5.0, 30.0, 8.0, 4.0], [False, True, False, False, True])
    assert gaps_after_failure(h).tolist() == [5.0, 8.0]


def test_training_uses_the_configured_or_the_learned_window():
    h = _history([5.0, 30.0, 8.0, 4.0], [False, True, False, False, True])
    assert personal_retry_rule(h, OnlineConfig(retry_window=12.5, retry_similarity=0.1)) == (12.5, 0.1, 0.0, False)
    # too few gaps to learn from: the signals' 45 s window, with the similarities chosen for it
    assert personal_retry_rule(h, OnlineConfig()) == (DEFAULT_WINDOW_S, 0.35, 0.6, False) == (*SIGNALS_RULE, False)
    rows = [{"session_id": f"s{k}", "ts": t, "ok": ok, "rewrite": None}
            for k, g in enumerate(_gaps(700, 300)) for t, ok in ((0.0, False), (float(g), True))]
    window, retry_similarity, fix_similarity, learned = personal_retry_rule(History(rows, {}), OnlineConfig())
    assert learned and 13.5 <= window <= 17.0 and retry_similarity == fix_similarity == 0.0
    for bad, name in (({"retry_window": 0.0}, "retry_window"), ({"retry_similarity": 1.5}, "retry_similarity")):
        with pytest.raises(InvalidInputError, match=name):
            OnlineConfig(**bad).check()
