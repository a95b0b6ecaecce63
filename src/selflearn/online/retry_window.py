"""How soon after a failing request a user's next turn is a retry of it, learned from the logs.

The turn after a failing request in the same session is either a retry of it or the user's next
request, and the two come at different paces: a retry follows within seconds, a next request after
the user has taken in the answer. A mixture of two log-normal components (scikit-learn's
``GaussianMixture`` on log seconds) locates the two paces in the gaps after failing requests; the
retry window ends where such gaps are rarest between them (the valley of their histogram: the
Gaussian components' tails do not fit real paces well enough to draw the boundary by posterior).

The gaps after requests that *worked* are no clean reference for a next request's pace: a request
the signals took for working but that did not work is retried at a retry's pace.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..errors import InvalidInputError, explain

if TYPE_CHECKING:
    from .train import History

__all__ = ["gaps_after_failure", "learn_retry_window", "DEFAULT_WINDOW_S"]

DEFAULT_WINDOW_S = 45.0  # the signals' rephrase window: what the personal layer uses when none can be learned


def gaps_after_failure(h: "History") -> np.ndarray:
    """Seconds from each failing request (as heard: a turn the assistant rewrote is left out) to
    the next turn in its session."""
    last: dict[str, dict] = {}
    gaps = []
    for r in h.rows:
        prev = last.get(r["session_id"])
        if prev is not None and not prev["rewrite"] and not prev["ok"]:
            gaps.append(r["ts"] - prev["ts"])
        last[r["session_id"]] = r
    return np.asarray(gaps, np.float64)


def learn_retry_window(gaps, *, cap_s: float = DEFAULT_WINDOW_S, min_turns: int = 200, bin_width: float = 0.05,
                       seed: int = 0) -> float | None:
    """The retry window in seconds (at most ``cap_s``): where the gaps after failing requests are
    rarest between the retries' pace and the next requests' (the two components of a log-normal
    mixture locate the two; the boundary is the least dense point between them, in a histogram of
    log seconds with bins ``bin_width`` wide, smoothed over three bins: the middle of the least
    dense stretch). ``None`` when fewer than ``min_turns`` gaps are given or the faster pace is no
    faster than ``cap_s`` (nothing to tell apart)."""
    from sklearn.mixture import GaussianMixture

    if not cap_s > 0:
        raise InvalidInputError(explain(f"cap_s={cap_s}", "must be > 0 seconds", "use e.g. 45"))
    if not 0.0 < bin_width <= 0.5:
        raise InvalidInputError(explain(f"bin_width={bin_width}", "must be in (0, 0.5] (log seconds)", "use e.g. 0.05"))
    x = np.asarray(gaps, np.float64)
    z = np.log(x[np.isfinite(x) & (x > 0)])
    if len(z) < min_turns:
        return None
    lo, hi = np.sort(GaussianMixture(2, random_state=seed).fit(z[:, None]).means_.ravel())
    hi = min(hi, float(np.log(cap_s)))
    if hi - lo < 3 * bin_width:
        return None
    edges = np.arange(lo, hi + bin_width, bin_width)
    counts = np.histogram(z, bins=edges)[0].astype(np.float64)
    smooth = np.convolve(np.pad(counts, 1, mode="edge"), [0.25, 0.5, 0.25], mode="valid")
    first = int(np.argmin(smooth))
    last = first
    while last + 1 < len(smooth) and smooth[last + 1] == smooth[first]:
        last += 1
    return float(np.exp((edges[first] + edges[last + 1]) / 2))
