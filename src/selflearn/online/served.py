"""The global layer's threshold, calibrated on traffic it served.

The held-out logs judge a rewrite that was never served: what its user meant is a guess, and whether
a turn worked is the signals' verdict, which misses defects (a misheard request the user let go looks
like one that worked) — so they make the layer's best rewrites look far worse than they are
(docs/results.md). Served traffic shows what a rewrite did: a pilot (a share of traffic, or a period)
is served at a low threshold, its logs are imported, and each turn the global layer rewrote is judged
by its own outcome against how often the request's words work as heard (the global layer's record
from the training logs):

- the rewritten turn worked: a **win** with the chance the words would have failed (1 - works), else
  harmless;
- it failed: **broken** with the chance the words would have worked (works), else **still failing**
  (a loss only when the failure moved to another component: ``still_failing_loss`` of one).

The score of each served rewrite is the model's own, recomputed from the logged request (the global
layer's decision needs no user history); turns the table or the personal layer rewrote, or that the
model would not rewrite so, are left out and counted. The threshold is the lowest at which the judged
wins outnumber the losses ``min_ratio`` to 1 (:func:`.calibration.choose_threshold_by_win_loss`).
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import numpy as np

from ..errors import InvalidInputError, explain
from ..models.directory import read_config, write_config
from ..signals import SignalConfig
from ..store.store import Store
from .calibration import choose_threshold_by_win_loss, win_loss_curve
from .online_rewriter import COMPONENT, MODEL_FORMAT, OnlineRewriter
from .replay import request_of
from .train import load_history

__all__ = ["served_outcome", "served_rewrites", "calibrate_on_served"]


def served_outcome(worked: bool, works: float) -> tuple[float, float, float]:
    """(win, broken, still failing) of one served rewrite, each a chance: ``worked``, the rewritten
    turn's outcome by the signals; ``works``, how often the request's words work as heard."""
    return (1.0 - works, 0.0, 0.0) if worked else (0.0, works, 1.0 - works)


def served_rewrites(rw: OnlineRewriter, h) -> tuple[dict[str, np.ndarray], Counter]:
    """The turns of ``h`` the global layer rewrote, with the model's score for each and their
    outcome; and how many rewritten turns were left out, by reason."""
    g = rw.global_
    plain: dict[str, list[int]] = {}
    for r in h.rows:  # how often each request worked when nothing rewrote it (for words the global layer lacks)
        if not r["rewrite"]:
            n = plain.setdefault(r["text"], [0, 0])
            n[0] += 1
            n[1] += bool(r["ok"])
    rows = [r for r in h.rows if r["rewrite"]]
    rw.warm([r["text"] for r in rows])
    skipped: Counter = Counter()
    out: dict[str, list] = {"score": [], "win": [], "broken": [], "still": []}
    for r in rows:
        req = request_of(r)
        if rw.table is not None and rw.table.rewrite(r["text"], context=req["context"]) == r["rewrite"]:
            skipped["the table's"] += 1
            continue
        texts, _, x = rw.candidates(r["text"], user_id="", **req)
        if not texts:
            skipped["no global candidate"] += 1
            continue
        s = rw.ranker.score(x)
        b = int(np.argmax(s))
        if texts[b] != r["rewrite"]:
            skipped["not the global layer's first choice"] += 1
            continue
        works = g.success_share(r["text"])
        if works is None and r["text"] in plain:
            works = plain[r["text"]][1] / plain[r["text"]][0]
        if works is None:
            skipped["words never heard unrewritten"] += 1
            continue
        win, broken, still = served_outcome(bool(r["ok"]), float(works))
        for k, v in (("score", float(s[b])), ("win", win), ("broken", broken), ("still", still)):
            out[k].append(v)
    return {k: np.array(v, float) for k, v in out.items()}, skipped


def calibrate_on_served(model_dir: Path, store: Store, *, min_ratio: float = 12.0, still_failing_loss: float = 0.0, min_rewrites: int = 20,
                        write: bool = False, signals: SignalConfig | None = None) -> dict:
    """Choose the global layer's threshold on the served traffic in ``store`` (see the module); with
    ``write``, save it in the model directory (its personal layer's threshold is kept, and the global
    layer decides from then on as for a user without history, as it was calibrated). Returns the
    statistics: the threshold, the judged wins and losses there, the curve, what was left out."""
    if not min_ratio > 0:
        raise InvalidInputError(explain(f"min_ratio={min_ratio}", "must be > 0", "use e.g. 12 (twelve wins per loss)"))
    if not 0.0 <= still_failing_loss <= 1.0:
        raise InvalidInputError(explain(f"still_failing_loss={still_failing_loss}", "must be in [0, 1]", "use e.g. 0.1"))
    started = time.perf_counter()
    model_dir = Path(model_dir)
    config = read_config(model_dir, component=COMPONENT, format_version=MODEL_FORMAT, fix="retrain it with `selflearn online train`")
    rw = OnlineRewriter.load(model_dir, layers=("table", "global"))
    h = load_history(store, signals)
    served, skipped = served_rewrites(rw, h)
    if not len(served["score"]):
        raise InvalidInputError(explain(f"{store.path}: {sum(skipped.values())} rewritten turns, none the global layer's",
                                        "calibrating needs turns this model's global layer rewrote",
                                        "serve the model to a share of traffic at a low threshold (`selflearn online serve --global-threshold 0.2`), then import those logs"))
    loss = served["broken"] + still_failing_loss * served["still"]
    threshold, at = choose_threshold_by_win_loss(served["score"], served["win"], loss, min_ratio=min_ratio, min_rewrites=min_rewrites)
    served_floor = float(served["score"].min())
    # the curve with broken and still-failing apart (what another still_failing_loss would give)
    curve = [{**p, "broken": b["losses"], "still_failing": f["losses"]} for p, b, f in zip(
        win_loss_curve(served["score"], served["win"], loss), win_loss_curve(served["score"], served["win"], served["broken"]),
        win_loss_curve(served["score"], served["win"], served["still"]))]
    stats = {"threshold": threshold, "before": config["learned"]["threshold"], "at_threshold": at, "served_rewrites": int(len(served["score"])),
             "lowest_score_served": served_floor, "left_out": dict(skipped), "min_ratio": min_ratio, "still_failing_loss": still_failing_loss,
             "curve": curve[:: max(1, len(curve) // 50)], "seconds": round(time.perf_counter() - started, 1)}
    if write:
        learned = {**config["learned"], "threshold": threshold}
        if learned.get("personal_threshold") is None:  # it had one threshold for both: the personal layer keeps it
            learned["personal_threshold"] = config["learned"]["threshold"]
        # the threshold was calibrated on scores without any user's history: the global layer decides on those
        write_config(model_dir, {**config, "learned": learned, "params": {**config["params"], "user_free_global": True},
                                 "served_calibration": {k: v for k, v in stats.items() if k not in ("curve", "seconds")} | {"store": str(store.path)}})
    return stats
