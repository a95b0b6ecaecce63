"""The privacy audit's figures: one world run split by user into training logs (with canaries
planted) and a reference of other users; each model (the failure-point, label and rephrase models, the online model's encoder)
trained on the training logs as the product trains it, without DP and with user-level DP at each
epsilon; `selflearn privacy audit` of each (membership inference at the record and user level,
canary exposure and inversion), side by side.

Usage: python benchmarks/privacy_audit.py --world world --users 1000 --days 7 --epsilons inf 8 3 1 --models fpi labels

The simulator's truth is not read: training uses weak labels from the logs, as in the product.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import tempfile
import time
from pathlib import Path

import torch

from selflearn.fpi.isolation import train_fpi
from selflearn.fpi.model import FailurePointModel
from selflearn.labels import LabelModel
from selflearn.labels.training import train_labels
from selflearn.labels.weak import store_dialogues
from selflearn.rephrase import ContextualRephraseDetector
from selflearn.rewrites.mining import mine, train_rephrase_model
from selflearn.governance.audit import AuditConfig, audit_model, audit_online
from selflearn.errors import InvalidInputError
from selflearn.online import OnlineConfig, OnlineRewriter, train_online
from selflearn.privacy.canaries import CanaryFormat, make_canaries, plant, save_canaries
from selflearn.store.importer import import_files
from selflearn.store.store import Store
from selflearn.world.build import World
from selflearn.world.experiments import simulate_to
from selflearn.world.simulate import SimConfig


def split_logs(logs: Path, train: Path, reference: Path, share: float, seed: int) -> list[dict]:
    """Users in ``share`` of the hash space go to the training logs (returned, to plant into)."""
    keep = []
    with open(logs) as f, open(reference, "w") as ref:
        for line in f:
            r = json.loads(line)
            h = int(hashlib.sha256(f"split:{seed}:{r['user_id']}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
            if h < share:
                keep.append(r)
            else:
                ref.write(line)
    return keep


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--world", type=Path, default=Path("world"))
    ap.add_argument("--users", type=int, default=1000)
    ap.add_argument("--days", type=int, default=7)
    ap.add_argument("--train-share", type=float, default=0.4, help="users whose logs train the model; the rest are the reference")
    ap.add_argument("--epsilons", nargs="+", default=["inf", "8", "3", "1"])
    ap.add_argument("--shadows", type=int, default=4)
    ap.add_argument("--per-repetition", type=int, default=2, help="canaries per number of repetitions (1, 4, 16)")
    ap.add_argument("--epochs", type=int, default=50)
    ap.add_argument("--max-users", type=int, default=500)
    ap.add_argument("--models", nargs="+", default=["fpi"], choices=["fpi", "labels", "rephrase", "online"])
    ap.add_argument("--with-table", action="store_true", help="online: mine a rewrite table on the training users, serve it first, audit its texts too")
    ap.add_argument("--label-epochs", type=int, default=None, help="the label model's epochs (default: as many as its schedule picks)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None, help="also write the results here after each model (a long run keeps what it finished)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="privacy-audit-"))
    out: dict = {"args": {k: str(v) for k, v in vars(args).items()}, "runs": {}}
    say = lambda s: print("  ", time.strftime("%H:%M:%S"), s, flush=True)  # noqa: E731
    try:
        world = World.load(args.world)
        simulate_to(tmp / "sim", args.world, world, SimConfig(users=args.users, days=args.days, seed=args.seed))
        records = split_logs(tmp / "sim" / "logs.jsonl", tmp / "train.jsonl", tmp / "reference.jsonl", args.train_share, args.seed)
        fmt = CanaryFormat()
        canaries = make_canaries(fmt, per_repetition=args.per_repetition, seed=args.seed)
        planted = plant(records, canaries, seed=args.seed)
        with open(tmp / "train.jsonl", "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in planted)
        save_canaries(tmp / "canaries.json", fmt, canaries)
        out["canaries"] = {"format": fmt.template, "alphabet": fmt.alphabet, "length": fmt.length,
                           "per_repetition": args.per_repetition, "users_each": 1, "planted_turns": len(planted) - len(records)}
        with Store(tmp / "train.duckdb") as st, Store(tmp / "reference.duckdb") as ref:
            import_files(st, [tmp / "train.jsonl"])
            import_files(ref, [tmp / "reference.jsonl"])
            out["data"] = {"train_users": len({r["user_id"] for r in records}), "train_turns": len(planted),
                           "reference_users": args.users - len({r["user_id"] for r in records})}
            for name in args.models:
                for eps in args.epsilons:
                    e = None if eps == "inf" else float(eps)
                    say(f"train {name} epsilon={eps}")
                    d = tmp / f"{name}-{eps}"
                    if name == "fpi":
                        stats = train_fpi(st, d, FailurePointModel(epochs=args.epochs, dp_epsilon=e, random_state=args.seed, threads=args.threads))
                        model = FailurePointModel.load(d, threads=args.threads)
                    elif name == "labels":
                        stats = train_labels(store_dialogues(st), d, LabelModel(dp_epsilon=e, epochs=args.label_epochs, random_state=args.seed,
                                                                                threads=args.threads))
                        model = LabelModel.load(d, threads=args.threads)
                    elif name == "online":  # under DP a third of the budget each: the global layer, the encoder, the ranker
                        try:
                            table = None
                            if args.with_table:  # the mined table it serves first (k-anonymous, the same at every epsilon): audited too
                                table = tmp / "rewrites.parquet"
                                if not table.exists():
                                    mine(st, table)
                            stats = train_online(st, d, table=table, config=OnlineConfig(seed=args.seed, dp_epsilon=e), threads=args.threads)
                        except InvalidInputError as exc:  # too few users for the private global layer at this epsilon: say so, go on
                            out["runs"][f"{name} {eps}"] = {"refused": str(exc)}
                            print(json.dumps({"done": f"{name} {eps}", "refused": str(exc)}), flush=True)
                            continue
                        model = OnlineRewriter.load(d, threads=args.threads)
                    else:
                        stats = train_rephrase_model(st, d, seed=args.seed, threads=args.threads, dp_epsilon=e)
                        model = ContextualRephraseDetector.load(d, threads=args.threads)
                    say(f"audit {name} epsilon={eps}")
                    cfg = AuditConfig(shadows=args.shadows, max_users=args.max_users, seed=args.seed)
                    if name == "online":
                        report = audit_online(model, model_dir=d, store=st, reference=ref, canaries=tmp / "canaries.json", config=cfg,
                                              progress=lambda s: say("  " + s), threads=args.threads)
                    else:
                        report = audit_model(model, st, ref, canaries=tmp / "canaries.json", config=cfg, progress=lambda s: say("  " + s))
                    report["train"] = {k: stats.get(k) for k in ("turns", "dialogues", "train_seconds", "privacy", "biencoder", "global_texts", "global_candidates")}
                    out["runs"][f"{name} {eps}"] = report
                    print(json.dumps({"done": f"{name} {eps}", "seconds": report["seconds"],
                                      **{k: report[k] for k in ("user_advantage", "user_advantage_heldout", "user_advantage_heldout_ci95", "worst_attack")}}),
                          flush=True)
                    if args.out:
                        args.out.write_text(json.dumps(out, indent=1, default=str))
    finally:
        shutil.rmtree(tmp)
    print(json.dumps(out, indent=2, default=str))


if __name__ == "__main__":
    main()
