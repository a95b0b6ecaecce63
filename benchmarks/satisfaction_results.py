"""Satisfaction estimation on human-rated dialogues (USS: ReDial, CCPE) in one run.

For each domain: `selflearn labels import-uss` (the published protocol: dialogues with >= 2 user
turns, 8:1:1 split by dialogue, 3 classes from the mean rating), then per mode (offline: finished
dialogues; online: turn t from turns up to t) `selflearn labels train --data train --valid valid`
in a child process (wall time and peak RSS from /usr/bin/time), and `labels evaluate` on the test
split: accuracy, macro P/R/F1, UAR, Cohen's kappa, Spearman's rho; beside it the most-common-class
baseline (the training split's majority class on every test turn).

--no-context: also the online model without the dialogue Transformer (each turn alone, with the
reply it reacts to). --finetune-epochs E: also the online model with MiniLM fine-tuned (E epochs).

--scaling N [N ...]: the same online training on N dialogues (the training split repeated under new
ids when N exceeds it), to show how time and peak memory grow with the data set.

Usage: python benchmarks/satisfaction_results.py --uss ../shared/data/uss --threads 2 [--scaling 500 5000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from selflearn.labels import evaluate_predictions, read_dialogues, reference_targets, write_dialogues
from selflearn.labels.dialogues import Dialogue
from selflearn.labels.rated import import_rated

METRICS = ("accuracy", "macro_precision", "macro_recall", "macro_f1", "uar", "kappa", "spearman")


def _child(args: list[str], threads: int) -> tuple[dict, float, float]:
    """Run `selflearn ARGS` under /usr/bin/time: (its JSON output, wall seconds, peak RSS in MB)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    with tempfile.NamedTemporaryFile("r", suffix=".time") as t:
        started = time.perf_counter()
        r = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", t.name, sys.executable, "-m", "selflearn.cli.main", *args],
                           capture_output=True, text=True, env=env)
        wall = time.perf_counter() - started
        if r.returncode:
            raise SystemExit(f"selflearn {' '.join(args)} failed:\n{r.stderr[-3000:]}")
        peak_kb = float(Path(t.name).read_text().split()[-1])
    return json.loads(r.stdout), round(wall, 1), round(peak_kb / 1024, 1)


def _brief(m: dict) -> dict:
    return {k: m.get(k) for k in METRICS}


def _majority(train: list[Dialogue], test: list[Dialogue]) -> dict:
    top = Counter(e.labels["satisfaction"] for d in train for e in d.exchanges).most_common(1)[0][0]
    pred = [[{"satisfaction": (top, 1.0)} for _ in d.exchanges] for d in test]
    return {"class": top, **_brief(evaluate_predictions(pred, reference_targets(test), curves=False)["satisfaction"])}


def _repeat(dialogues: list[Dialogue], n: int) -> list[Dialogue]:
    return [Dialogue(f"{d.dialogue_id}~{k // len(dialogues)}", d.exchanges, d.label) for k, d in
            ((k, dialogues[k % len(dialogues)]) for k in range(n))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--uss", type=Path, required=True, help="directory of the USS files (ReDial.txt, CCPE.txt)")
    ap.add_argument("--domains", nargs="+", default=["ReDial", "CCPE"])
    ap.add_argument("--modes", nargs="*", default=["offline", "online"])
    ap.add_argument("--no-context", action="store_true", help="also the online model without dialogue context")
    ap.add_argument("--finetune-epochs", type=int, default=0, help="also the online model with MiniLM fine-tuned for this many epochs")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0, help="seed of the split (and of training, unless --train-seeds)")
    ap.add_argument("--train-seeds", type=int, nargs="*", default=None, help="train each model once per seed (same split): run-to-run spread")
    ap.add_argument("--scaling", type=int, nargs="*", default=[], help="also train (online) on these numbers of dialogues")
    ap.add_argument("--work", type=Path, default=None, help="keep the converted data and models here (default: a temporary directory)")
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="satisfaction-"))
    say = lambda s: print("  ", time.strftime("%H:%M:%S"), s, file=sys.stderr, flush=True)  # noqa: E731
    out: dict = {"args": {k: str(v) for k, v in vars(args).items()}, "domains": {}}
    for dom in args.domains:
        data = work / dom
        summary = import_rated(args.uss / f"{dom}.txt", data, seed=args.seed)
        summary.pop("bad")
        train, _ = read_dialogues(data / "train.jsonl")
        test, _ = read_dialogues(data / "test.jsonl")
        res = out["domains"][dom] = {"data": summary["parts"], "majority": _majority(train, test)}
        seeds = args.train_seeds or [args.seed]
        runs = {(mode if len(seeds) == 1 else f"{mode}, seed {s}"): ["--mode", mode, "--seed", str(s)] for mode in args.modes for s in seeds}
        if args.no_context:
            runs["online, no context"] = ["--mode", "online", "--no-context", "--seed", str(args.seed)]
        if args.finetune_epochs:
            runs[f"online, MiniLM fine-tuned ({args.finetune_epochs} epochs)"] = ["--mode", "online", "--encoder", "finetune",
                                                                                  "--epochs", str(args.finetune_epochs), "--seed", str(args.seed)]
        for name, flags in runs.items():
            say(f"{dom} {name}: train")
            tag = name.replace(" ", "_").replace(",", "").replace("(", "").replace(")", "")
            model = data / f"model-{tag}"
            stats, wall, rss = _child(["labels", "train", "--data", str(data / "train.jsonl"), "--valid", str(data / "valid.jsonl"), *flags,
                                       "--out", str(model), "--threads", str(args.threads), "--json"], args.threads)
            say(f"{dom} {name}: evaluate")
            ev, _, _ = _child(["labels", "evaluate", "--model", str(model), "--data", str(data / "test.jsonl"),
                               "--predictions", str(data / f"predictions-{tag}.jsonl"), "--threads", str(args.threads), "--json"], args.threads)
            res[name] = {"test": _brief(ev["satisfaction"]), "dialogue_label_test": _brief(ev.get("dialogue_label", {})),
                         "valid": _brief(stats["validation"].get("satisfaction", {})), "schedule": stats["schedule"], "best_step": stats["best_step"],
                         "encoder": stats["encoder"], "train_seconds": stats["train_seconds"], "wall_seconds": wall, "peak_rss_mb": rss}
    if args.scaling:
        dom = args.domains[0]
        train, _ = read_dialogues(work / dom / "train.jsonl")
        out["scaling"] = {"domain": dom, "runs": []}
        for n in args.scaling:
            path = work / f"scaling-{n}.jsonl"
            write_dialogues(_repeat(train, n), path)
            say(f"scaling: {n} dialogues")
            stats, wall, rss = _child(["labels", "train", "--data", str(path), "--valid", str(work / dom / "valid.jsonl"), "--mode", "online",
                                       "--out", str(work / f"model-scaling-{n}"), "--threads", str(args.threads), "--json"], args.threads)
            out["scaling"]["runs"].append({"dialogues": n, "turns": sum(len(d.exchanges) for d in _repeat(train, n)), "schedule": stats["schedule"],
                                           "train_seconds": stats["train_seconds"], "wall_seconds": wall, "peak_rss_mb": rss})
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
