"""Contextual rephrase detection vs the pairwise baseline, against the world's truth.

Usage: python benchmarks/rephrase_results.py --world world --users 2000 --days 14 --seed 0 \
           --train 4000 --eval-sessions 5000

Simulates the traffic, imports it, computes signals, trains the span model on weak labels (half
weak positives, half weak negatives, sampled), then scores model, baseline and the weak labels
themselves on anchors from held-out sessions. The truth is read only for scoring.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import tempfile
import time
from pathlib import Path

from selflearn.metrics import prf
from selflearn.rephrase import (
    ContextualRephraseDetector,
    load_examples,
    weak_label,
    with_distractors,
)
from selflearn.signals import compute_signals
from selflearn.store.importer import import_files
from selflearn.store.store import Store
from selflearn.world.build import World
from selflearn.world.experiments import simulate_to
from selflearn.world.simulate import SimConfig
from selflearn.world.truth import read_truth


def score(examples, predictions, truth) -> dict:
    tp = fp = fn = 0
    for ex, k in zip(examples, predictions):
        true = [j for j, (ti, _, _) in enumerate(ex.following) if truth.get((ex.session_id, ti)) == ex.turn_index]
        if k >= 0 and k in true:
            tp += 1
        elif k >= 0:
            fp += 1
        if true and k not in true:
            fn += 1
    return {**prf(tp, fp, fn), "true_pairs": tp + fn}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--world", type=Path, default=Path("world"))
    ap.add_argument("--users", type=int, default=2000)
    ap.add_argument("--days", type=int, default=14)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--train", type=int, default=4000)
    ap.add_argument("--eval-sessions", type=int, default=5000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--distractors", type=float, default=0.0, help="share of training examples given a self-supervised distractor turn")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="rephrase-results-"))
    try:
        simulate_to(tmp / "sim", args.world, World.load(args.world), SimConfig(users=args.users, days=args.days, seed=args.seed))
        with Store(tmp / "s.duckdb") as st:
            import_files(st, [tmp / "sim" / "logs.jsonl"])
            compute_signals(st)
            con = st.reader()
            examples = load_examples(con)
            baseline = {(r[0], r[1]): r[2] for r in con.execute("SELECT session_id, turn_index, rephrase_candidate FROM signals").fetchall()}
            ids = st.pseudonyms()
        truth = {(r["session_id"], r["turn_index"]): r["rephrase_of"] for r in read_truth(tmp / "sim", ids).select(["session_id", "turn_index", "rephrase_of"]).to_pylist()}
    finally:
        shutil.rmtree(tmp)
    rng = random.Random(args.seed)
    sessions = sorted({e.session_id for e in examples})
    rng.shuffle(sessions)
    held_out = set(sessions[: args.eval_sessions])
    labelled = [(e, weak_label(e)) for e in examples if e.session_id not in held_out and e.following]
    pos = [x for x in labelled if x[1] is not None and x[1] >= 0]
    neg = [x for x in labelled if x[1] == -1]
    train = rng.sample(pos, args.train // 2) + rng.sample(neg, args.train // 2)
    model = ContextualRephraseDetector(epochs=1, random_state=args.seed, threads=args.threads)
    train_x, train_y = with_distractors([e for e, _ in train], [lab for _, lab in train], share=args.distractors, seed=args.seed)
    model.fit(train_x, train_y)
    evaluation = [e for e in examples if e.session_id in held_out and e.following]
    t0 = time.perf_counter()
    predicted = [k for k, _ in model.predict(evaluation)]
    pairs_s = len(evaluation) / (time.perf_counter() - t0)
    weak = [weak_label(e) for e in evaluation]
    print(json.dumps({
        "train_examples": len(train), "distractors": args.distractors, "train_seconds": round(model.train_seconds_, 1), "threads": args.threads,
        "eval_anchors": len(evaluation), "model_anchors_per_s": round(pairs_s, 1),
        "model": score(evaluation, predicted, truth),
        "pairwise_baseline": score(evaluation, [0 if baseline[(e.session_id, e.turn_index)] else -1 for e in evaluation], truth),
        "weak_labels": score(evaluation, [w if w is not None else -1 for w in weak], truth),
    }, indent=2))


if __name__ == "__main__":
    main()
