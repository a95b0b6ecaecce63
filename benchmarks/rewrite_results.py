"""Issue 4's quality figures in one run: signals vs truth, the pairwise rephrase baseline, the
mined table, and an A/B on the days after mining.

Usage: python benchmarks/rewrite_results.py --world world --users 2000 --mine-days 14 --ab-days 14 --seed 0
       [--rephrase-model]   # train the contextual model on the mining period's weak labels and mine with it

Mining uses logs only; the truth is read here, for evaluation, after the fact.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

import duckdb

from selflearn.metrics import prf
from selflearn.rewrites.mining import mine, train_rephrase_model
from selflearn.signals import evaluate_defect_score
from selflearn.store.importer import import_files
from selflearn.store.store import Store
from selflearn.world.build import World
from selflearn.world.experiments import run_ab, simulate_to
from selflearn.world.simulate import SimConfig
from selflearn.world.truth import read_truth


def rephrase_scores(con: duckdb.DuckDBPyConnection, truth) -> dict:
    """Pairwise baseline (signals.rephrase_candidate: time gap + similarity) against the truth:
    a true pair is (turn, next turn) where the next turn's rephrase_of is this turn."""
    con.register("_t", truth)
    tp, fp, fn = con.execute(
        """SELECT sum((s.rephrase_candidate AND n.rephrase_of = s.turn_index)::int),
                  sum((s.rephrase_candidate AND n.rephrase_of IS DISTINCT FROM s.turn_index)::int),
                  sum((NOT s.rephrase_candidate AND n.rephrase_of = s.turn_index)::int)
           FROM signals s LEFT JOIN _t n ON n.session_id = s.session_id AND n.turn_index = s.next_turn"""
    ).fetchall()[0]
    return {**prf(tp, fp, fn), "true_pairs": tp + fn}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--world", type=Path, default=Path("world"))
    ap.add_argument("--users", type=int, default=2000)
    ap.add_argument("--mine-days", type=int, default=14)
    ap.add_argument("--ab-days", type=int, default=14)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rephrase-model", action="store_true", help="mine with the contextual rephrase model")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    world = World.load(args.world)
    tmp = Path(tempfile.mkdtemp(prefix="rewrite-results-"))
    try:
        simulate_to(tmp / "sim", args.world, world, SimConfig(users=args.users, days=args.mine_days, seed=args.seed))
        with Store(tmp / "s.duckdb") as st:
            import_files(st, [tmp / "sim" / "logs.jsonl"])
            model = None
            if args.rephrase_model:
                trained = train_rephrase_model(st, tmp / "model", examples=4000, seed=args.seed, threads=args.threads)
                model = tmp / "model"
            stats = mine(st, tmp / "rewrites.parquet", rephrase_model=model, threads=args.threads)
            if model is not None:
                stats["rephrase_model"] = trained
            truth = read_truth(tmp / "sim", st.pseudonyms())
            con = st.reader()
            signals = evaluate_defect_score(con, truth, thresholds=(0.3, 0.5, 0.7))
            baseline = rephrase_scores(con, truth)
        ab = run_ab(args.world, world, SimConfig(users=args.users, days=args.ab_days, seed=args.seed, first_day=args.mine_days),
                    treatment=str(tmp / "rewrites.parquet"))
    finally:
        shutil.rmtree(tmp)
    print(json.dumps({"mining": stats, "defect_score": signals, "rephrase_pairwise_baseline": baseline, "ab_after_mining": ab}, indent=2))


if __name__ == "__main__":
    main()
