"""Simulation throughput after the one-time world build.

Usage: python benchmarks/simulate_bench.py --world world --users 10000 --days 14

Runs, on the same traffic: (1) the engine alone (no output), (2) the full
`simulate` path writing logs.jsonl and the truth Parquet. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import tempfile
import time
from pathlib import Path

from selflearn.world.build import World
from selflearn.world.experiments import simulate_to
from selflearn.world.simulate import SimConfig, Simulator


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--world", type=Path, default=Path("world"))
    ap.add_argument("--users", type=int, default=10_000)
    ap.add_argument("--days", type=int, default=14)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    t0 = time.perf_counter()
    world = World.load(args.world)
    load_s = time.perf_counter() - t0
    cfg = SimConfig(users=args.users, days=args.days, seed=args.seed)

    t0 = time.perf_counter()
    sim = Simulator(world, cfg)
    n = [0]
    sim.run(None, lambda turn, truth: n.__setitem__(0, n[0] + 1))
    engine_s = time.perf_counter() - t0

    out = Path(tempfile.mkdtemp(prefix="simbench-"))
    try:
        t0 = time.perf_counter()
        summary = simulate_to(out, args.world, world, cfg)
        full_s = time.perf_counter() - t0
        size = (out / "logs.jsonl").stat().st_size
    finally:
        shutil.rmtree(out)
    print(json.dumps({
        "machine": f"{platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}",
        "users": args.users, "days": args.days, "turns": summary["turns"],
        "world_load_s": round(load_s, 2),
        "engine_turns_per_s": round(n[0] / engine_s),
        "simulate_with_output_turns_per_s": round(summary["turns"] / full_s),
        "simulate_with_output_s": round(full_s, 1),
        "logs_mb": round(size / 1e6, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }, indent=2))


if __name__ == "__main__":
    main()
