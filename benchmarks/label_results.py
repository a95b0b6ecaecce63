"""Issue 6's quality figures in one run.

1. Two world runs: one to train on (its logs and feedback signals only: weak labels), one to
   evaluate on (another traffic seed), scored against the second run's hidden truth.
2. Per task: the feedback heuristics alone (the weak labels as they are), the context-free turn
   classifier, the contextual model; and an ablation of the pretraining corruptions.
3. Precision/coverage curves (docs/img/labels-precision-coverage.png).
4. Closing the loop (--nlu-loop): the contextual model, calibrated on the evaluation run's labels
   (a labelled sample, as a team would annotate), labels the training run (or a larger run of the
   same population: --harvest-users) at --min-precision; its NLU rows retrain the world's NLU; an
   A/B on the days after compares the original NLU with: the same extra training without new rows
   (control), the NLU retrained on the feedback heuristics' own labels (the baseline), and the NLU
   retrained on the generated labels.

Usage: python benchmarks/label_results.py --world world --users 600 --days 7 --seed 0 [--ablation] [--nlu-loop]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import torch

from selflearn.labels import LabelModel, evaluate_predictions, labels_as_predictions, reference_targets, store_dialogues
from selflearn.labels.training import apply_labels, evaluate_labels, nlu_examples, train_labels
from selflearn.store.importer import import_files
from selflearn.store.store import Store
from selflearn.world.ab import ab_worlds
from selflearn.world.build import World
from selflearn.world.gold import attach_truth
from selflearn.world.retrain import retrain_world_nlu
from selflearn.world.experiments import simulate_to
from selflearn.world.simulate import SimConfig, load_nlu_for
from selflearn.world.truth import read_truth

TASKS = ("defect", "goal_success", "same_goal", "intent", "goal_intent", "slots")


def _brief(m: dict) -> dict:
    out = {}
    for t in TASKS:
        if t not in m:
            continue
        x = m[t]
        if t == "slots":
            out[t] = {"types_f1": x["slot_types"]["f1"], "values_f1": x["slot_values"]["f1"], "turn_exact": x["turn_exact"],
                      "n": x["n"], "coverage_at": x["coverage_at"]}
        else:
            out[t] = {k: x.get(k) for k in ("n", "coverage_of_reference", "accuracy", "macro_f1", "precision", "recall", "f1", "auc", "coverage_at")
                      if x.get(k) is not None}
    return out


def _plot(curves: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = [t for t in ("defect", "goal_success", "same_goal", "intent") if any(t in c for c in curves.values())]
    fig, axes = plt.subplots(1, len(tasks), figsize=(4 * len(tasks), 3.6), sharey=True)
    for ax, t in zip(axes, tasks):
        for name, c in curves.items():
            if t in c:
                ax.plot([p["coverage"] for p in c[t]], [p["precision"] for p in c[t]], label=name,
                        marker="o" if len(c[t]) == 1 else None, ls="none" if len(c[t]) == 1 else "-")
        ax.axhline(0.95, color="grey", lw=0.8, ls="--")
        ax.set_title(t.replace("_", " "))
        ax.set_xlabel("coverage (share of turns labelled)")
        ax.set_xlim(0, 1)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("precision against the world's truth")
    axes[0].legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--world", type=Path, default=Path("world"))
    ap.add_argument("--users", type=int, default=600)
    ap.add_argument("--days", type=int, default=7)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--text-layers", type=int, default=6)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ablation", action="store_true", help="also train without pretraining and with swaps only")
    ap.add_argument("--online", action="store_true", help="also the contextual model in online mode (turn t from turns up to t)")
    ap.add_argument("--no-context-free", action="store_true", help="skip the context-free baseline (e.g. to re-run only the loop)")
    ap.add_argument("--nlu-loop", action="store_true", help="retrain the world's NLU on the generated labels and A/B it")
    ap.add_argument("--ab-days", type=int, default=7)
    ap.add_argument("--harvest-users", type=int, default=None, help="users of the run the model labels for the NLU and of the A/B (default --users)")
    ap.add_argument("--nlu-epochs", type=int, default=1)
    ap.add_argument("--min-precision", type=float, nargs="+", default=[0.95], help="one NLU arm per precision the labels are applied at")
    ap.add_argument("--nlu-base-share", type=float, default=1.0, help="share of the NLU's own training sentences mixed in")
    ap.add_argument("--nlu-dp-epsilon", type=float, default=None, help="retrain the NLU on the generated rows with user-level DP at this epsilon")
    ap.add_argument("--arms", nargs="+", default=["heuristics", "generated", "corrections"],
                    choices=["heuristics", "generated", "corrections"], help="NLU arms beside the control")
    ap.add_argument("--retrain-seeds", type=int, nargs="+", default=[0],
                    help="retrain the control and every arm once per seed (retraining noise is of the order of the effects)")
    ap.add_argument("--plot", type=Path, default=Path("docs/img/labels-precision-coverage.png"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    world = World.load(args.world)
    tmp = Path(tempfile.mkdtemp(prefix="label-results-"))
    out: dict = {"args": {k: str(v) for k, v in vars(args).items()}}
    say = lambda s: print("  ", time.strftime("%H:%M:%S"), s, flush=True)  # noqa: E731
    try:
        for name, seed in (("train", args.seed), ("eval", args.seed + 1)):
            say(f"simulate {name}")
            simulate_to(tmp / name, args.world, world, SimConfig(users=args.users, days=args.days, seed=seed))
            with Store(tmp / f"{name}.duckdb") as st:
                import_files(st, [tmp / name / "logs.jsonl"])
        with Store(tmp / "train.duckdb") as st:
            train = store_dialogues(st)
        with Store(tmp / "eval.duckdb") as st:
            weak = {d.dialogue_id: d for d in store_dialogues(st)}
            plain = store_dialogues(st, weak_labels=False)
            ids = st.pseudonyms()
        gold = attach_truth(plain, read_truth(tmp / "eval", ids))
        ref = reference_targets(gold)
        out["data"] = {"train_dialogues": len(train), "train_turns": sum(len(d.exchanges) for d in train),
                       "eval_dialogues": len(gold), "eval_turns": sum(len(d.exchanges) for d in gold)}
        say("heuristics")
        heur = evaluate_predictions(labels_as_predictions([weak[d.dialogue_id] for d in gold]), ref)
        out["feedback heuristics"] = _brief(heur)
        variants = {"contextual": {}} if args.no_context_free else {"contextual": {}, "context-free": {"context": False}}
        if args.online:
            variants["contextual, online"] = {"mode": "online"}
        if args.ablation:
            variants["contextual, no pretraining"] = {"pretrain_epochs": 0}
            variants["contextual, swap-only pretraining"] = {"corruptions": ("swap",)}
        curves = {"feedback heuristics": {t: heur[t]["curve"] for t in TASKS if t in heur and t != "slots"}}
        for name, kw in variants.items():
            say(f"train {name}")
            model = LabelModel(text_layers=args.text_layers, epochs=args.epochs, random_state=args.seed, threads=args.threads, **kw)
            stats = train_labels(train, tmp / name.replace(" ", "_").replace(",", ""), model)
            say(f"evaluate {name}")
            m = evaluate_predictions(model.predict(gold), ref)
            out[name] = {**_brief(m), "train_seconds": stats["train_seconds"], "pretrain_loss": stats["pretrain_loss"],
                         "finetune_loss": stats["finetune_loss"]}
            curves[name] = {t: m[t]["curve"] for t in TASKS if t in m and t != "slots"}
            if name == "contextual":
                best = model
        _plot({k: v for k, v in curves.items() if k in ("feedback heuristics", "context-free", "contextual")}, args.plot)
        out["plot"] = str(args.plot)
        if args.nlu_loop:
            _nlu_loop(args, world, best, gold, train, tmp, out, say)
    finally:
        shutil.rmtree(tmp)
    print(json.dumps(out, indent=2, default=str))


def _nlu_loop(args, world: World, best: LabelModel, gold: list, train: list, tmp: Path, out: dict, say) -> None:
    # thresholds from a labelled set (here the evaluation run's truth, as a team would annotate a
    # sample): precision against the weak labels says little where they are silent (failed goals)
    say("calibrate on the evaluation run's labels")
    evaluate_labels(best, gold, calibrate_to=tmp / "contextual")
    users = args.harvest_users or args.users
    harvest = train
    if users != args.users:  # a larger run of the same population, labelled by the model trained on the first
        say(f"simulate the harvest run ({users} users)")
        simulate_to(tmp / "harvest", args.world, world, SimConfig(users=users, days=args.days, seed=args.seed))
        with Store(tmp / "harvest.duckdb") as st:
            import_files(st, [tmp / "harvest" / "logs.jsonl"])
            harvest = store_dialogues(st)
    rows = {"same extra training (control)": []}
    if "heuristics" in args.arms:
        rows["feedback heuristics' labels"] = nlu_examples(harvest)
    loop = out["nlu_loop"] = {"apply": {}}
    say(f"label {len(harvest)} dialogues")
    preds = best.predict(harvest)
    for p in args.min_precision:
        labelled, loop["apply"][str(p)] = apply_labels(best, harvest, min_precision=p, predictions=preds)
        if "generated" in args.arms:
            rows[f"generated labels at {p:.0%} precision"] = nlu_examples(labelled)
        if "corrections" in args.arms:
            rows[f"generated labels at {p:.0%} precision, corrections only"] = nlu_examples(labelled, corrections_only=True)
    loop["nlu_rows"] = {k: len(v) for k, v in rows.items()}
    loop["nlu_rows_with_slots"] = {k: sum(r["slots"] is not None for r in v) for k, v in rows.items()}
    worlds = {"original NLU": (world, load_nlu_for(args.world))}
    pairs = []
    for seed in args.retrain_seeds:
        tag = f" (seed {seed})" if len(args.retrain_seeds) > 1 else ""
        for i, (name, r) in enumerate(rows.items()):
            say(f"retrain NLU: {name}{tag} ({len(r)} rows)")
            d = tmp / f"w-variant-{seed}-{i}"
            loop.setdefault("retrained", {})[name + tag] = retrain_world_nlu(args.world, r, d, epochs=args.nlu_epochs, base_share=args.nlu_base_share,
                                                                             dp_epsilon=args.nlu_dp_epsilon if r else None,
                                                                             seed=seed, threads=args.threads, progress=lambda s, *_: say(s))
            worlds[f"NLU + {name}{tag}"] = (World.load(d), load_nlu_for(d))
            if i:
                pairs.append((f"NLU + same extra training (control){tag}", f"NLU + {name}{tag}"))
    say("A/B")
    ab = ab_worlds(worlds, SimConfig(users=users, days=args.ab_days, seed=args.seed, first_day=args.days), pairs=pairs)
    keep = ("control_defect_rate", "treatment_defect_rate", "relative_reduction", "ci_low", "ci_high", "wins", "losses", "goals",
            "failure_points", "failure_point_reductions")
    loop["ab"] = {n: {k: r[k] for k in keep} for n, r in ab["vs_control"].items()}
    loop["ab_vs_same_extra_training"] = {n: {k: r[k] for k in keep} for n, r in ab["pairs"].items()}


if __name__ == "__main__":
    main()
