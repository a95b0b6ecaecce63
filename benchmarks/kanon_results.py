"""What k-anonymity costs: the mined table (and, with --online, the online rewriter) built with
k = 1, 5, 10 distinct users behind every shared text, A/B-tested on the same later traffic.

    .venv/bin/python benchmarks/kanon_results.py --world world --users 2000 --mine-days 14 --ab-days 14 --ks 1 5 10 [--online]

Prints one JSON object: per k, what was mined or indexed and what was withheld, and the A/B of
every arm against no rewriting (first-attempt defect reduction, win:loss).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import torch

from selflearn.online import OnlineConfig, train_online
from selflearn.online.online_rewriter import OnlineRewriter
from selflearn.rewrites.mining import mine
from selflearn.rewrites.table import MiningConfig, TableRewriter
from selflearn.store.importer import import_files
from selflearn.store.store import Store
from selflearn.world.ab import ab_arms
from selflearn.world.build import World
from selflearn.world.experiments import simulate_to
from selflearn.world.simulate import SimConfig, load_nlu_for


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--world", type=Path, default=Path("world"))
    ap.add_argument("--users", type=int, default=2000)
    ap.add_argument("--mine-days", type=int, default=14)
    ap.add_argument("--ab-days", type=int, default=14)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ks", type=int, nargs="+", default=[1, 5, 10])
    ap.add_argument("--online", action="store_true", help="also train the online rewriter at each k and A/B it")
    ap.add_argument("--max-pairs", type=int, default=20_000)
    ap.add_argument("--examples", type=int, default=30_000)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    say = lambda s: print("  ", time.strftime("%H:%M:%S"), s, flush=True)  # noqa: E731
    world = World.load(args.world)
    tmp = Path(tempfile.mkdtemp(prefix="kanon-results-"))
    out: dict = {"args": {k: str(v) for k, v in vars(args).items()}, "mined": {}, "online": {}}
    try:
        say("simulate")
        simulate_to(tmp / "sim", args.world, world, SimConfig(users=args.users, days=args.mine_days, seed=args.seed))
        arms: dict = {"none": None}
        with Store(tmp / "s.duckdb") as st:
            import_files(st, [tmp / "sim" / "logs.jsonl"])
            for k in args.ks:
                say(f"mine k={k}")
                stats = mine(st, tmp / f"rewrites-k{k}.parquet", mining=MiningConfig(min_users=k))
                out["mined"][k] = {key: stats[key] for key in ("rewrites", "candidates", "withheld_by_k_anonymity")}
                arms[f"table k={k}"] = TableRewriter.load(tmp / f"rewrites-k{k}.parquet")
                if args.online:
                    say(f"online k={k}")
                    cfg = OnlineConfig(max_pairs=args.max_pairs, examples=args.examples, seed=args.seed, min_users=k)
                    trained = train_online(st, tmp / f"model-k{k}", table=tmp / f"rewrites-k{k}.parquet", config=cfg, threads=args.threads)
                    rw = OnlineRewriter.load(tmp / f"model-k{k}")
                    out["online"][k] = {"global_texts": len(rw.global_.texts), "global_candidates": int(len(rw.global_.candidates)),
                                        "threshold": trained.get("threshold"), "validation_precision": trained.get("validation_precision")}
                    arms[f"table+global+personal k={k}"] = rw
        say("A/B")
        started = time.perf_counter()
        out["ab"] = ab_arms(world, SimConfig(users=args.users, days=args.ab_days, seed=args.seed, first_day=args.mine_days), arms,
                            nlu_loader=load_nlu_for(args.world))
        out["ab_seconds"] = round(time.perf_counter() - started, 1)
    finally:
        shutil.rmtree(tmp)
    print(json.dumps(out, indent=2, default=str))


if __name__ == "__main__":
    main()
