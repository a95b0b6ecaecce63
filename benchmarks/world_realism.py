"""The realism report of docs/world.md: simulate a run and measure the world against its truth.

Usage: python benchmarks/world_realism.py --world world --asr-corpus ../shared/data/asr/slurp_asr.jsonl \
           --users 2000 --days 14 --seed 0
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from selflearn.world.build import World
from selflearn.world.corpus import load_asr_corpus
from selflearn.world.realism import realism_report
from selflearn.world.experiments import simulate_to
from selflearn.world.simulate import SimConfig


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--world", type=Path, default=Path("world"))
    ap.add_argument("--asr-corpus", type=Path, default=None, help="to report WER with the corpus README's convention too")
    ap.add_argument("--users", type=int, default=2000)
    ap.add_argument("--days", type=int, default=14)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    world = World.load(args.world)
    corpus = load_asr_corpus(args.asr_corpus) if args.asr_corpus else None
    with tempfile.TemporaryDirectory() as tmp:
        simulate_to(Path(tmp), args.world, world, SimConfig(users=args.users, days=args.days, seed=args.seed))
        report = realism_report(world, Path(tmp), corpus)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
