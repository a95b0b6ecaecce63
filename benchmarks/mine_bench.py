"""Signals + Markov mining throughput on a store of about 1M simulated turns.

Usage: python benchmarks/mine_bench.py --world world --users 11800 --days 14

Simulates the traffic, imports it into a fresh store (not timed here; see import_bench.py), then
times `compute_signals` and `mine_rewrites` separately. Prints one JSON object.
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

from selflearn.rewrites.table import mine_rewrites
from selflearn.signals import compute_signals
from selflearn.store.importer import import_files
from selflearn.store.store import Store
from selflearn.world.build import World
from selflearn.world.experiments import simulate_to
from selflearn.world.simulate import SimConfig


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--world", type=Path, default=Path("world"))
    ap.add_argument("--users", type=int, default=11_800)
    ap.add_argument("--days", type=int, default=14)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="minebench-"))
    try:
        simulate_to(tmp / "sim", args.world, World.load(args.world), SimConfig(users=args.users, days=args.days))
        with Store(tmp / "s.duckdb") as st:
            report = import_files(st, [tmp / "sim" / "logs.jsonl"])
            (tmp / "sim" / "logs.jsonl").unlink()
            t0 = time.perf_counter()
            n = compute_signals(st)
            sig_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            table, stats = mine_rewrites(st)
            mine_s = time.perf_counter() - t0
    finally:
        shutil.rmtree(tmp)
    total = sig_s + mine_s
    print(json.dumps({
        "machine": f"{platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}",
        "turns": n, "imported": report.imported,
        "signals_s": round(sig_s, 2), "mining_s": round(mine_s, 2),
        "turns_per_min_signals_plus_mining": round(n / total * 60),
        "utterances": stats["utterances"], "edges": stats["edges"], "rewrites": stats["rewrites"],
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }, indent=2))


if __name__ == "__main__":
    main()
