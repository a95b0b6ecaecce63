"""Issue 8's figures: the same traffic through the world's assistant without and with teaching.

Users with hidden preferences say some requests for their own genre or cuisine without it (--vague-share)
and ask for places several states share; with teaching on, the assistant asks at teachable moments (one
question a day at most, backing off after two declines), users answer truthfully or decline (a per-user
propensity), one in ten says "learn my preferences" once, and what is learned is used by entity
resolution and the preference rewriter from the next turn. Ambiguous requests are compared from
--measure-from (the days before: learning).

Usage: python benchmarks/teach_results.py --world world --users 2000 --days 14 --measure-from 7
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from selflearn.world.build import World
from selflearn.world.simulate import SimConfig, load_nlu_for
from selflearn.world.teach_ab import teaching_ab
from selflearn.world.teaching import WORLD_MOMENTS


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--world", type=Path, default=Path("world"))
    ap.add_argument("--users", type=int, default=2000)
    ap.add_argument("--days", type=int, default=14)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--vague-share", type=float, default=0.5)
    ap.add_argument("--measure-from", type=int, default=7)
    ap.add_argument("--prompt-window-days", type=float, nargs="+", default=[1.0],
                    help="one run per window: at most one question per user within it")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    world = World.load(args.world)
    out = {}
    for window in args.prompt_window_days:
        started = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            r = teaching_ab(world, SimConfig(users=args.users, days=args.days, seed=args.seed, vague_share=args.vague_share),
                            Path(tmp) / "preferences.duckdb", nlu_loader=load_nlu_for(args.world), measure_from_day=args.measure_from,
                            moments=replace(WORLD_MOMENTS, prompt_window_days=window))
        r["seconds"] = round(time.perf_counter() - started, 1)
        out[f"one question per {window:g} day(s)"] = r
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
