"""Utility and training time under user-level differential privacy, epsilon in {inf, 8, 3, 1}, on the
same world data, side by side in one run.

    .venv/bin/python benchmarks/dp_results.py --world world --users 1000 --eval-users 300 --days 7

Failure points: the model trained on the run's annotated failure points (accuracy, macro-F1 on a
held-out run). Labels: the label model with the frozen MiniLM encoder (the efficient mode) trained on
weak labels, scored against the held-out run's truth (defect AUC, coverage at 95% precision,
accuracy). Each model at each epsilon: its time, and the time ratio to the same model without DP.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import torch

from selflearn.fpi import FailurePointModel, fpi_metrics, read_failure_labels, store_turns
from selflearn.fpi.isolation import labelled
from selflearn.labels import LabelModel
from selflearn.labels.evaluate import evaluate_predictions, reference_targets
from selflearn.labels.weak import store_dialogues
from selflearn.store.importer import import_files
from selflearn.store.store import Store
from selflearn.world.build import World
from selflearn.world.experiments import simulate_to
from selflearn.world.gold import attach_truth
from selflearn.world.simulate import SimConfig
from selflearn.world.truth import read_truth

INF = float("inf")


def _no_slots(dialogues):
    for d in dialogues:
        for e in d.exchanges:
            e.labels.pop("slots", None)
    return dialogues


def _label_brief(m: dict) -> dict:
    d = m["defect"]
    return {"defect_accuracy": d.get("accuracy"), "defect_auc": d.get("auc"), "defect_coverage_at": d.get("coverage_at"),
            "goal_success_accuracy": m.get("goal_success", {}).get("accuracy"), "intent_accuracy": m.get("intent", {}).get("accuracy")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--world", type=Path, default=Path("world"))
    ap.add_argument("--users", type=int, default=1000)
    ap.add_argument("--eval-users", type=int, default=300)
    ap.add_argument("--days", type=int, default=7)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epsilons", type=float, nargs="+", default=[INF, 8.0, 3.0, 1.0])
    ap.add_argument("--fpi-epochs", type=int, default=10)
    ap.add_argument("--models", nargs="+", default=["fpi", "labels"], choices=["fpi", "labels"])
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    say = lambda s: print("  ", time.strftime("%H:%M:%S"), s, flush=True)  # noqa: E731
    world = World.load(args.world)
    tmp = Path(tempfile.mkdtemp(prefix="dp-results-"))
    out: dict = {"args": {k: str(v) for k, v in vars(args).items()}}
    try:
        data = {}
        for name, users, seed in (("train", args.users, args.seed + 20), ("eval", args.eval_users, args.seed + 21)):
            say(f"simulate {name}")
            simulate_to(tmp / name, args.world, world, SimConfig(users=users, days=args.days, seed=seed))
            with Store(tmp / f"{name}.duckdb") as st:
                import_files(st, [tmp / name / "logs.jsonl"])
                ids = st.pseudonyms()
                data[name] = {"turns": store_turns(st) if "fpi" in args.models else None,
                              "dialogues": store_dialogues(st) if "labels" in args.models else None,
                              "plain": store_dialogues(st, weak_labels=False) if "labels" in args.models else None, "ids": ids}
        if "fpi" in args.models:
            train, y = labelled(data["train"]["turns"], read_failure_labels(tmp / "train" / "truth" / "turns.parquet", data["train"]["ids"]))
            test, y_test = labelled(data["eval"]["turns"], read_failure_labels(tmp / "eval" / "truth" / "turns.parquet", data["eval"]["ids"]))
            out["fpi"] = {"train_turns": len(train), "train_users": len({t.user_id for t in train}), "by_epsilon": {}}
            for eps in args.epsilons:
                say(f"fpi epsilon={eps}")
                dp = {} if eps == INF else {"dp_epsilon": eps, "lr": 1e-2}
                started = time.perf_counter()
                model = FailurePointModel(epochs=args.fpi_epochs, random_state=args.seed, threads=args.threads, **dp).fit(train, y)
                seconds = time.perf_counter() - started
                m = fpi_metrics(y_test, model.predict(test))
                out["fpi"]["by_epsilon"][str(eps)] = {"accuracy": m["accuracy"], "macro_f1": m["macro_f1"], "train_seconds": round(seconds, 1),
                                                      "privacy": model.privacy_}
        if "labels" in args.models:
            train_d = _no_slots(data["train"]["dialogues"])
            gold = attach_truth(data["eval"]["plain"], read_truth(tmp / "eval", data["eval"]["ids"]))
            ref = reference_targets(gold)
            out["labels"] = {"train_dialogues": len(train_d), "train_users": len({d.user for d in train_d}), "by_epsilon": {}}
            for eps in args.epsilons:
                say(f"labels epsilon={eps}")
                dp = {} if eps == INF else {"dp_epsilon": eps}
                started = time.perf_counter()
                model = LabelModel(encoder="frozen", random_state=args.seed, threads=args.threads, **dp).fit(train_d)
                seconds = time.perf_counter() - started
                m = evaluate_predictions(model.predict(gold), ref)
                out["labels"]["by_epsilon"][str(eps)] = {**_label_brief(m), "train_seconds": round(seconds, 1), "privacy": model.privacy_}
        for name in ("fpi", "labels"):
            runs = out.get(name, {}).get("by_epsilon", {})
            base = runs.get(str(INF))
            if base:
                for r in runs.values():
                    r["time_ratio_to_non_dp"] = round(r["train_seconds"] / max(base["train_seconds"], 1e-9), 2)
    finally:
        shutil.rmtree(tmp)
    print(json.dumps(out, indent=2, default=str))


if __name__ == "__main__":
    main()
