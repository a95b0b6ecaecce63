"""Utility and training time under user-level differential privacy, epsilon in {inf, 8, 3, 1}, on the
same world data, side by side in one run.

    .venv/bin/python benchmarks/dp_results.py --world world --users 1000 --eval-users 300 --days 7

Models: ``--models fpi labels rephrase online nlu``. Failure points: the model trained on the run's annotated failure points (accuracy, macro-F1 on a
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
from selflearn.signals import compute_signals
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
    ap.add_argument("--fpi-dp", type=json.loads, default={}, help='extra FailurePointModel settings under DP, e.g. \'{"dp_examples_per_user": 1}\'')
    ap.add_argument("--models", nargs="+", default=["fpi", "labels"], choices=["fpi", "labels", "rephrase", "online", "nlu"])
    ap.add_argument("--rephrase-train", type=int, default=4000, help="weakly labelled examples for the rephrase model")
    ap.add_argument("--ab-days", type=int, default=7, help="online: A/B days after the training days")
    ap.add_argument("--max-pairs", type=int, default=10_000)
    ap.add_argument("--examples", type=int, default=15_000)
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
                if "rephrase" in args.models:
                    compute_signals(st)
                data[name] = {"turns": store_turns(st) if "fpi" in args.models else None,
                              "dialogues": store_dialogues(st) if {"labels", "nlu"} & set(args.models) else None,
                              "plain": store_dialogues(st, weak_labels=False) if "labels" in args.models else None, "ids": ids}
        if "fpi" in args.models:
            train, y = labelled(data["train"]["turns"], read_failure_labels(tmp / "train" / "truth" / "turns.parquet", data["train"]["ids"]))
            test, y_test = labelled(data["eval"]["turns"], read_failure_labels(tmp / "eval" / "truth" / "turns.parquet", data["eval"]["ids"]))
            out["fpi"] = {"train_turns": len(train), "train_users": len({t.user_id for t in train}), "by_epsilon": {}}
            for eps in args.epsilons:
                say(f"fpi epsilon={eps}")
                dp = {} if eps == INF else {"dp_epsilon": eps, **args.fpi_dp}
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
        if "rephrase" in args.models:
            _rephrase(args, tmp, out, say)
        if "online" in args.models:
            _online(args, world, tmp, out, say)
        if "nlu" in args.models:
            _nlu(args, world, data["train"]["dialogues"], tmp, out, say)
        for name in ("fpi", "labels", "rephrase", "online", "nlu"):
            runs = out.get(name, {}).get("by_epsilon", {})
            base = runs.get(str(INF))
            if base:
                for r in runs.values():
                    r["time_ratio_to_non_dp"] = round(r["train_seconds"] / max(base["train_seconds"], 1e-9), 2)
    finally:
        shutil.rmtree(tmp)
    print(json.dumps(out, indent=2, default=str))


def _rephrase(args, tmp: Path, out: dict, say) -> None:
    """The span model on weak labels of the training run; F1 of its pairs against the evaluation run's truth."""
    import random

    from rephrase_results import score

    from selflearn.rephrase import ContextualRephraseDetector, load_examples, weak_label

    with Store(tmp / "train.duckdb") as st:
        examples = load_examples(st.reader())
    with Store(tmp / "eval.duckdb") as st:
        evaluation = [e for e in load_examples(st.reader()) if e.following]
        ids = st.pseudonyms()
    truth = {(r["session_id"], r["turn_index"]): r["rephrase_of"]
             for r in read_truth(tmp / "eval", ids).select(["session_id", "turn_index", "rephrase_of"]).to_pylist()}
    rng = random.Random(args.seed)
    labelled = [(e, weak_label(e)) for e in examples if e.following]
    pos = [x for x in labelled if x[1] is not None and x[1] >= 0]
    neg = [x for x in labelled if x[1] == -1]
    n = min(args.rephrase_train // 2, len(pos), len(neg))
    train = rng.sample(pos, n) + rng.sample(neg, n)
    out["rephrase"] = {"train_examples": len(train), "train_users": len({e.user_id for e, _ in train}), "eval_anchors": len(evaluation), "by_epsilon": {}}
    for eps in args.epsilons:
        say(f"rephrase epsilon={eps}")
        dp = {} if eps == INF else {"dp_epsilon": eps}
        started = time.perf_counter()
        model = ContextualRephraseDetector(epochs=1, random_state=args.seed, threads=args.threads, **dp).fit([e for e, _ in train], [y for _, y in train])
        seconds = time.perf_counter() - started
        out["rephrase"]["by_epsilon"][str(eps)] = {**score(evaluation, [k for k, _ in model.predict(evaluation)], truth),
                                                   "train_seconds": round(seconds, 1), "privacy": model.privacy_}


def _online(args, world, tmp: Path, out: dict, say) -> None:
    """The online rewriter (table + global + personal) trained at each epsilon on the training run, A/B
    on the same users' next days, beside the table alone; at epsilon < inf its global layer is a private release and its
    encoder's adapter and ranker train privately (a third of the budget each)."""
    from selflearn.online import OnlineConfig, train_online
    from selflearn.online.online_rewriter import OnlineRewriter
    from selflearn.errors import InvalidInputError
    from selflearn.rewrites.mining import mine
    from selflearn.rewrites.table import TableRewriter
    from selflearn.world.ab import ab_arms
    from selflearn.world.simulate import load_nlu_for

    arms: dict = {"none": None}
    out["online"] = {"by_epsilon": {}}
    with Store(tmp / "train.duckdb") as st:
        mine(st, tmp / "rewrites.parquet")
        for eps in args.epsilons:
            say(f"online epsilon={eps}")
            cfg = OnlineConfig(max_pairs=args.max_pairs, examples=args.examples, seed=args.seed, dp_epsilon=None if eps == INF else eps)
            started = time.perf_counter()
            try:
                stats = train_online(st, tmp / f"online-{eps}", table=tmp / "rewrites.parquet", config=cfg, threads=args.threads)
            except InvalidInputError as exc:  # too few users for the private global layer at this epsilon: say so, go on
                out["online"]["by_epsilon"][str(eps)] = {"refused": str(exc)}
                continue
            rw = OnlineRewriter.load(tmp / f"online-{eps}")
            out["online"]["by_epsilon"][str(eps)] = {"train_seconds": round(time.perf_counter() - started, 1), "privacy": rw.dp,
                                                     "global_texts": stats["global_texts"], "global_candidates": stats["global_candidates"],
                                                     "biencoder": stats["biencoder"].get("note", "fine-tuned")}
            arms[f"online eps={eps}"] = rw
    arms["table"] = TableRewriter.load(tmp / "rewrites.parquet")
    say("online A/B")
    ab = ab_arms(world, SimConfig(users=args.users, days=args.ab_days, seed=args.seed + 20, first_day=args.days), arms,
                 nlu_loader=load_nlu_for(args.world))
    out["online"]["table alone"] = {k: ab["vs_control"]["table"][k] for k in ("relative_reduction", "ci_low", "ci_high", "wins", "losses", "win_loss_ratio")}
    for eps in args.epsilons:
        if f"online eps={eps}" not in arms:
            continue
        r = ab["vs_control"][f"online eps={eps}"]
        out["online"]["by_epsilon"][str(eps)].update({k: r[k] for k in ("relative_reduction", "ci_low", "ci_high", "wins", "losses", "win_loss_ratio")})


def _nlu(args, world, dialogues, tmp: Path, out: dict, say) -> None:
    """The world NLU retrained one epoch on its own training sentences plus the NLU rows the training
    run's weakly labelled dialogues give (`labels export-nlu`), at each epsilon (the rows privately,
    its own sentences plainly); intent accuracy on what the recogniser heard for the goals the NLU
    never trained on. The control: the same epoch without the rows."""
    from selflearn.labels.training import nlu_examples
    from selflearn.world.nlu import JointNLU
    from selflearn.world.retrain import retrain_world_nlu

    rows = nlu_examples(dialogues)
    held = {(tid, world.sentences[s["goal"]]["intent"]) for s, per in zip(world.surfaces, world.heard)
            if not world.sentences[s["goal"]]["in_nlu_train"] for tid, _ in per}
    held = sorted(held)
    texts, gold = [world.texts[t] for t, _ in held], [i for _, i in held]

    def accuracy(nlu_dir: Path) -> float:
        pred = JointNLU.load(nlu_dir, threads=args.threads).predict(texts)
        return sum(p.intent == g for p, g in zip(pred, gold)) / len(gold)

    out["nlu"] = {"rows": len(rows), "row_users": len({u for r in rows for u in r["users"]}), "eval_texts": len(texts),
                  "original_accuracy": accuracy(Path(args.world) / "nlu"), "by_epsilon": {}}
    for name, r, eps in [("control", [], None)] + [(str(e), rows, None if e == INF else e) for e in args.epsilons]:
        say(f"nlu {name}")
        stats = retrain_world_nlu(args.world, r, tmp / f"nlu-{name}", epochs=1, seed=args.seed, threads=args.threads, dp_epsilon=eps)
        entry = {"intent_accuracy": accuracy(tmp / f"nlu-{name}" / "nlu"), "train_seconds": stats["train_seconds"], "privacy": stats.get("privacy")}
        if name == "control":
            out["nlu"]["control"] = entry
        else:
            out["nlu"]["by_epsilon"][name] = entry


if __name__ == "__main__":
    main()
