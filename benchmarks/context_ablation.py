"""What each context feature adds to the online ranker: one online model trained on a mining period,
then the ranker (and the layers) retrained with each group of context features held at 0, reusing
the fine-tuned encoder; every variant measured the same way on held-out users' logs (no truth):
the precision and coverage at its own threshold, the area under its precision-coverage curve, and
the global layer's first-choice recall on failing requests. ``--ab`` adds an A/B of the full
rewriter per variant on the days after (the world's truth scores it).

Usage: python benchmarks/context_ablation.py --world world --users 2000 --mine-days 14 --seed 0 [--ab --ab-days 14]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from selflearn.online import OnlineConfig, OnlineRewriter, train_online
from selflearn.online.evaluate import ranked_recall
from selflearn.online.train import held_out, load_history
from selflearn.rewrites.mining import mine
from selflearn.store.importer import import_files
from selflearn.store.store import Store
from selflearn.world.ab import ab_arms
from selflearn.world.build import World
from selflearn.world.experiments import simulate_to
from selflearn.world.simulate import SimConfig, load_nlu_for

CONTEXT = {"device type": ("ctx_device",), "screen": ("ctx_screen",), "hour": ("ctx_hour",), "location (room)": ("ctx_location",),
           "recognition confidence": ("q_asr_confidence",),
           "the user's previous turns": ("u_q_log_attempts", "u_q_success", "u_c_log_successes", "u_c_recency", "u_pair_log_served",
                                         "u_pair_fail_share", "u_pair_log_fixed")}


def curve_area(curve: list[dict]) -> float:
    """Area under precision against coverage (the curve is sampled highest threshold first)."""
    pts = sorted((c["coverage"], c["precision"] or 0.0) for c in curve)
    return float(np.trapezoid([p for _, p in pts], [c for c, _ in pts])) if len(pts) > 1 else 0.0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--world", type=Path, default=Path("world"))
    ap.add_argument("--users", type=int, default=2000)
    ap.add_argument("--mine-days", type=int, default=14)
    ap.add_argument("--ab", action="store_true")
    ap.add_argument("--ab-days", type=int, default=14)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--k-phonetic", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    say = lambda s: print("  ", time.strftime("%H:%M:%S"), s, flush=True)  # noqa: E731
    world = World.load(args.world)
    tmp = Path(tempfile.mkdtemp(prefix="context-ablation-"))
    out: dict = {"args": {k: str(v) for k, v in vars(args).items()}, "variants": {}}
    variants = {"all features": (), **{f"without {k}": v for k, v in CONTEXT.items()},
                "without any context (all of the above)": tuple(f for v in CONTEXT.values() for f in v)}
    arms: dict = {"none": None}
    try:
        say("simulate, mine")
        simulate_to(tmp / "sim", args.world, world, SimConfig(users=args.users, days=args.mine_days, seed=args.seed))
        with Store(tmp / "s.duckdb") as st:
            import_files(st, [tmp / "sim" / "logs.jsonl"])
            mine(st, tmp / "rewrites.parquet")
            h = load_history(st)
            val = {r["user_id"] for r in h.rows if held_out(r["user_id"], OnlineConfig().validation_share, args.seed)}
            for k, (name, ignore) in enumerate(variants.items()):
                say(name)
                model = tmp / f"model{k}"
                cfg = OnlineConfig(seed=args.seed, k_phonetic=args.k_phonetic, ignore_features=ignore)
                stats = train_online(st, model, table=tmp / "rewrites.parquet", config=cfg, threads=args.threads,
                                     encoder_from=None if k == 0 else tmp / "model0")
                at = stats["at_threshold"]
                out["variants"][name] = {"ignored": list(ignore), "threshold": stats["threshold"], "precision_at_threshold": at["precision"],
                                         "coverage_at_threshold": at["coverage"], "curve_area": curve_area(stats["curve"]),
                                         "ranked": ranked_recall(OnlineRewriter.load(model, layers=("global",)), h, users=val, seed=args.seed)}
                print(json.dumps({name: out["variants"][name]}), flush=True)
                arms[name] = OnlineRewriter.load(model)
        if args.ab:
            say("A/B")
            res = ab_arms(world, SimConfig(users=args.users, days=args.ab_days, seed=args.seed, first_day=args.mine_days), arms,
                          nlu_loader=load_nlu_for(args.world))
            out["ab"] = {n: {k: res["vs_control"][n][k] for k in ("relative_reduction", "ci_low", "ci_high", "wins", "losses", "win_loss_ratio",
                                                                  "first_attempts_rewritten")} for n in res["vs_control"]}
    finally:
        shutil.rmtree(tmp)
    print(json.dumps(out, indent=2, default=str))


if __name__ == "__main__":
    main()
