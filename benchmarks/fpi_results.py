"""Issue 7's quality figures in one run: failure point isolation on a held-out world run.

1. Two world runs of different users and traffic seeds: the first's truth table is the annotated
   training set (kept apart: only `FailurePointModel.fit` and the rules' threshold search see it),
   the second is evaluated against its own truth.
2. Beside the model: the confidence-threshold rules (thresholds tuned on the training truth), the
   weak labels themselves (signals and traces, no truth), the model trained on those weak labels
   (a team without annotations), and the model without its text encoder (traces and context only).
3. A confusion-matrix plot of the model (docs/img/fpi-confusion.png).

Usage: python benchmarks/fpi_results.py --world world --train-users 2000 --eval-users 500 --days 7
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import torch

from selflearn.fpi import CLASSES, FailurePointModel, RuleBaseline, fpi_metrics, read_failure_labels, store_turns, weak_failure_points
from selflearn.fpi.isolation import apply_fpi, labelled
from selflearn.store.importer import import_files
from selflearn.store.store import Store
from selflearn.world.build import World
from selflearn.world.experiments import simulate_to
from selflearn.world.simulate import SimConfig


def _brief(m: dict) -> dict:
    return {"accuracy": round(m["accuracy"], 4), "macro_f1": round(m["macro_f1"], 4),
            "per_class": {c: {k: round(v[k], 4) if k != "support" else v[k] for k in ("precision", "recall", "f1", "support")} for c, v in m["per_class"].items()},
            "confusion": m["confusion"]["matrix"]}


def _plot(matrix: list[list[int]], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    m = np.array(matrix, dtype=float)
    share = m / np.maximum(m.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(6.4, 5.4))
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    names = [c.replace("entity_resolution", "entity res.").replace("_", " ") for c in CLASSES]
    ax.set_xticks(range(len(CLASSES)), names, rotation=30, ha="right")
    ax.set_yticks(range(len(CLASSES)), names)
    for i in range(len(CLASSES)):
        for j in range(len(CLASSES)):
            if m[i, j]:
                ax.text(j, i, f"{int(m[i, j]):,}\n{share[i, j]:.0%}", ha="center", va="center", fontsize=7,
                        color="white" if share[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted failure point")
    ax.set_ylabel("true failure point (world truth)")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--world", type=Path, default=Path("world"))
    ap.add_argument("--train-users", type=int, default=2000)
    ap.add_argument("--eval-users", type=int, default=500)
    ap.add_argument("--days", type=int, default=7)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=50)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--plot", type=Path, default=Path("docs/img/fpi-confusion.png"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    world = World.load(args.world)
    tmp = Path(tempfile.mkdtemp(prefix="fpi-results-"))
    out: dict = {"args": {k: str(v) for k, v in vars(args).items()}}
    say = lambda s: print("  ", time.strftime("%H:%M:%S"), s, flush=True)  # noqa: E731
    try:
        data = {}
        for name, users, seed in (("train", args.train_users, args.seed + 10), ("eval", args.eval_users, args.seed + 11)):
            say(f"simulate {name}: {users} users x {args.days} days")
            simulate_to(tmp / name, args.world, world, SimConfig(users=users, days=args.days, seed=seed))
            with Store(tmp / f"{name}.duckdb") as st:
                import_files(st, [tmp / name / "logs.jsonl"])
                turns = store_turns(st)
                ids = st.pseudonyms()
            data[name] = labelled(turns, read_failure_labels(tmp / name / "truth" / "turns.parquet", ids))
        (train, y_train), (test, y_test) = data["train"], data["eval"]
        out["data"] = {"train_turns": len(train), "eval_turns": len(test),
                       "eval_classes": {c: y_test.count(c) for c in CLASSES}}
        results = {}
        say("rules")
        rules = RuleBaseline().fit(train, y_train)
        results["rules (thresholds tuned on the training truth)"] = fpi_metrics(y_test, rules.predict(test))
        out["rule_thresholds"] = rules.thresholds_
        results["weak labels (signals and traces, no truth)"] = fpi_metrics(y_test, weak_failure_points(test))
        weak_train = weak_failure_points(train)
        out["weak_label_accuracy_on_training_run"] = round(sum(a == b for a, b in zip(weak_train, y_train)) / len(y_train), 4)
        variants = {"model trained on the truth": (y_train, {}),
                    "model trained on the truth, no text": (y_train, {"text": False}),
                    "model trained on weak labels (no truth)": (weak_train, {})}
        for name, (labels, kw) in variants.items():
            say(f"train {name}")
            model = FailurePointModel(epochs=args.epochs, random_state=args.seed, threads=args.threads, **kw).fit(train, labels)
            started = time.perf_counter()
            results[name] = fpi_metrics(y_test, model.predict(test))
            results[name]["train_seconds"] = model.train_seconds_
            results[name]["predict_seconds"] = round(time.perf_counter() - started, 1)
            if name == "model trained on the truth":
                best = model
        for name, m in results.items():
            out[name] = _brief(m) | {k: m[k] for k in ("train_seconds", "predict_seconds") if k in m}
        m = results["model trained on the truth"]
        _plot(m["confusion"]["matrix"], f"Failure point isolation, held-out world run ({m['turns']:,} turns): "
              f"accuracy {m['accuracy']:.1%}", args.plot)
        out["plot"] = str(args.plot)
        say("apply to the evaluation store")
        with Store(tmp / "eval.duckdb") as st:
            b = apply_fpi(st, best)
        out["breakdown_eval_run"] = {k: b[k] for k in ("turns", "defects", "defect_rate", "by_component")} | {"by_device_type": b["by_device_type"]}
    finally:
        shutil.rmtree(tmp)
    print(json.dumps(out, indent=2, default=str))


if __name__ == "__main__":
    main()
