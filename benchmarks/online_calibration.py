"""The online layers' serving thresholds: calibrated on the held-out logs, then (with ``--pilot-seed``)
the global layer's on served pilot traffic, and what each does in an A/B.

Simulates the mining period again (same world, users, days and seed as a kept model of
``online_results.py --keep``) and trains the ranker with that model's encoder (``encoder_from``: only the
layers and the ranker are trained again; without it the whole model is trained, as `selflearn online train`
makes it) under ``--calibrate`` (default: win-loss), printing each mode's
choice and the held-out win:loss curve the logs give. With ``--pilot-seed P``: a pilot — traffic of
its own (seed P, the days after mining) served by the table and the global layer at ``--floor`` —
is imported into a store of its own and the global layer's threshold is calibrated on it
(`selflearn online calibrate`). Then (unless ``--no-ab``) an A/B on the days after mining for each
``--ab-seeds``: none, the table, table + global, table + global + personal (the personal arm only on
the mining seed: the personal layer holds its users).

Usage: python benchmarks/online_calibration.py --world world [--encoder-from kept-model] --seed 0 --pilot-seed 1 --ab-seeds 0,2 [--keep DIR]

Training and calibration read the logs only; the truth is used by the A/B harness, for scoring.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from selflearn.online import OnlineConfig, OnlineRewriter, train_online
from selflearn.online.served import calibrate_on_served
from selflearn.rewrites.mining import mine
from selflearn.rewrites.table import TableRewriter
from selflearn.store.importer import import_files
from selflearn.store.store import Store
from selflearn.world.ab import ab_arms
from selflearn.world.build import World
from selflearn.world.experiments import simulate_to
from selflearn.world.simulate import SimConfig, load_nlu_for


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--world", type=Path, default=Path("world"))
    ap.add_argument("--encoder-from", type=Path, default=None, help="a kept online model trained on the same world, users, days and seed "
                                                                    "(default: none; the encoder is fine-tuned too: a whole `online train`)")
    ap.add_argument("--users", type=int, default=2000)
    ap.add_argument("--mine-days", type=int, default=14)
    ap.add_argument("--ab-days", type=int, default=14)
    ap.add_argument("--seed", type=int, default=0, help="the mining period's seed (the kept model's)")
    ap.add_argument("--ab-seeds", default=None, help="the A/B traffics' seeds (default: --seed; another gives traffic of its own, "
                                                     "whose users the personal layer has not seen)")
    ap.add_argument("--pilot-seed", type=int, default=None, help="calibrate the global layer's threshold on a pilot of this seed's traffic")
    ap.add_argument("--floor", type=float, default=0.2, help="the pilot serves the global layer's rewrites scoring at least this")
    ap.add_argument("--still-failing-loss", type=float, default=0.0)
    ap.add_argument("--calibrate", choices=("precision", "harm", "win-loss"), default="win-loss")
    ap.add_argument("--ratio", type=float, default=12.0, help="wins per loss (win-loss) or fixes per harm (harm)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-ab", action="store_true")
    ap.add_argument("--keep", type=Path, default=None, help="copy the model directory here")
    args = ap.parse_args()
    world = World.load(args.world)
    tmp = Path(tempfile.mkdtemp(prefix="online-calibration-"))
    out: dict = {"args": {k: str(v) for k, v in vars(args).items()}}
    try:
        simulate_to(tmp / "sim", args.world, world, SimConfig(users=args.users, days=args.mine_days, seed=args.seed))
        with Store(tmp / "s.duckdb") as st:
            import_files(st, [tmp / "sim" / "logs.jsonl"])
            mine(st, tmp / "rewrites.parquet")
            cfg = OnlineConfig(seed=args.seed, calibrate=args.calibrate, harm_ratio=args.ratio, still_failing_loss=args.still_failing_loss)
            stats = train_online(st, tmp / "model", table=tmp / "rewrites.parquet", config=cfg, threads=args.threads,
                                 encoder_from=args.encoder_from, progress=lambda s, *_: print("  ", time.strftime("%H:%M:%S"), s, flush=True))
        out["calibration"] = {k: stats[k] for k in ("threshold", "personal_threshold", "calibrate", "at_threshold", "harm_threshold",
                                                    "win_loss_threshold", "personal_win_loss_threshold", "win_loss_curve", "validation_requests")}
        if args.pilot_seed is not None:
            pilot = OnlineRewriter.load(tmp / "model", layers=("table", "global"), threshold=args.floor)
            simulate_to(tmp / "pilot", args.world, world, SimConfig(users=args.users, days=args.ab_days, seed=args.pilot_seed, first_day=args.mine_days),
                        rewriter=pilot)
            with Store(tmp / "pilot.duckdb") as st:
                import_files(st, [tmp / "pilot" / "logs.jsonl"])
                served = calibrate_on_served(tmp / "model", st, min_ratio=args.ratio, still_failing_loss=args.still_failing_loss, write=True)
            out["served_calibration"] = {**served, "pilot_decisions": dict(pilot.counts)}
            print("  ", time.strftime("%H:%M:%S"), "served calibration:", served["threshold"], served["at_threshold"], flush=True)
        if not args.no_ab:
            for ab_seed in [int(x) for x in (args.ab_seeds or str(args.seed)).split(",")]:
                arms = {"none": None, "table": TableRewriter.load(tmp / "rewrites.parquet"),
                        "table+global": OnlineRewriter.load(tmp / "model", layers=("table", "global")),
                        "table+global+personal": OnlineRewriter.load(tmp / "model")}
                if ab_seed != args.seed:  # the personal layer holds the mining period's users: not these
                    arms.pop("table+global+personal")
                key = f"seed {ab_seed}"
                out.setdefault("ab", {})[key] = ab_arms(world, SimConfig(users=args.users, days=args.ab_days, seed=ab_seed, first_day=args.mine_days), arms,
                                                        nlu_loader=load_nlu_for(args.world))
                out.setdefault("sources", {})[key] = {name: {"threshold": arm.threshold, "personal_threshold": arm.threshold_of("personal"), **arm.counts}
                                                      for name, arm in arms.items() if hasattr(arm, "counts")}
                print("  ", time.strftime("%H:%M:%S"), "A/B", key, flush=True)
        if args.keep:
            shutil.copytree(tmp / "model", args.keep, dirs_exist_ok=True)
    finally:
        shutil.rmtree(tmp)
    print(json.dumps(out, indent=2, default=str))


if __name__ == "__main__":
    main()
