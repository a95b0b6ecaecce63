"""CLI commands of ground-truth generation: `selflearn labels train | evaluate | apply | weak |
export-nlu`. Parse, call the library, print."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from selflearn.errors import InvalidInputError, explain
from selflearn.store.store import DEFAULT_STORE

from .app import DpDeltaOpt, DpEpsilonOpt, JsonOpt, err, group, out, print_json

__all__ = ["labels_app"]

labels_app = group("labels", "Generate labels (defect, goals, intent, slots) from feedback with a contextual model.")

StoreSrc = Annotated[Path | None, typer.Option("--store", help="Store whose sessions to use; labels come from its feedback signals (weak labels).")]
DataSrc = Annotated[Path | None, typer.Option("--data", help="Dialogue-format JSONL (docs/dialogue-format.md) with its own labels.")]
ModelOpt = Annotated[Path, typer.Option("--model", help="Label model directory (from `selflearn labels train`).")]
Limit = Annotated[int | None, typer.Option(help="Use only the first N dialogues.")]


def _source(store, data, limit):
    from selflearn.labels.training import load_source

    dialogues, bad = load_source(store=store, data=data, limit=limit)
    _quarantine(bad, Path(str(data) + ".quarantine.jsonl"), "lines")
    return dialogues


def _quarantine(bad: list[dict], path: Path, what: str) -> None:
    """Write the quarantined records (line, reason, raw) and say where, with the first reason."""
    if bad:
        path.write_text("".join(json.dumps(b) + "\n" for b in bad))
        err.print(f"{len(bad)} bad {what} quarantined → {path} (first: {bad[0]['reason']})", highlight=False, soft_wrap=True)


@labels_app.command("train")
def train_cmd(
    store: StoreSrc = None,
    data: DataSrc = None,
    valid: Annotated[Path | None, typer.Option("--valid", help="Dialogue-format JSONL to choose the checkpoint on and draw the curves on "
                                               "(default: 10% of the training dialogues, held out).")] = None,
    out_dir: Annotated[Path, typer.Option("--out", help="Model directory to write.")] = Path("label-model"),
    mode: Annotated[str, typer.Option(help="offline: label finished dialogues (later turns are read); online: estimate at turn t from "
                                           "turns up to t, as a live assistant must.")] = "offline",
    encoder: Annotated[str, typer.Option(help="finetune MiniLM, use it frozen (fast; no slot tagging), or auto (frozen unless the data "
                                              "has slot labels).")] = "auto",
    text_layers: Annotated[int, typer.Option(help="MiniLM layers kept when fine-tuning (1-6; fewer is faster).")] = 6,
    epochs: Annotated[int | None, typer.Option(help="Fine-tuning epochs (default: chosen from the data size).")] = None,
    pretrain_epochs: Annotated[int, typer.Option(help="Self-supervised pretraining epochs on corrupted dialogues (0: none).")] = 1,
    corruptions: Annotated[str, typer.Option(help="Pretraining corruptions, comma-separated: swap, shuffle, insert.")] = "swap,shuffle,insert",
    context: Annotated[bool, typer.Option(help="Dialogue-level Transformer over the turns (--no-context: each turn alone).")] = True,
    batch_turns: Annotated[int, typer.Option(help="Exchanges per optimiser step (dialogues are batched whole).")] = 80,
    class_weight: Annotated[str, typer.Option(help="balanced: weigh the satisfaction and dialogue-label classes by inverse frequency; none.")] = "balanced",
    patience: Annotated[int, typer.Option(help="Stop after this many validations without a gain in mean macro-F1.")] = 5,
    seed: Annotated[int, typer.Option(help="Seed of the split and training.")] = 0,
    dp_epsilon: DpEpsilonOpt = None,
    dp_delta: DpDeltaOpt = None,
    threads: Annotated[int, typer.Option(help="CPU threads for torch.")] = 1,
    limit: Limit = None,
    as_json: JsonOpt = False,
) -> None:
    """Pretrain on corrupted dialogues, fine-tune on the labels (weak ones from a store's signals,
    or a file's own), keep the checkpoint with the best validation macro-F1, draw precision/coverage
    curves on the validation dialogues; write the model directory."""
    from selflearn.labels import LabelModel
    from selflearn.labels.training import train_labels

    kinds = tuple(x.strip() for x in corruptions.split(",") if x.strip())
    model = LabelModel(mode=mode, encoder=encoder, text_layers=text_layers, epochs=epochs, pretrain_epochs=pretrain_epochs, corruptions=kinds,
                       context=context, batch_turns=batch_turns, class_weight=None if class_weight == "none" else class_weight,
                       patience=patience, dp_epsilon=dp_epsilon, dp_delta=dp_delta, random_state=seed, threads=threads)
    dialogues = _source(store, data, limit)
    held = _source(None, valid, None) if valid is not None else None
    with err.status("training") as status:
        stats = train_labels(dialogues, out_dir, model, valid=held, progress=lambda s, a, b: status.update(f"{s} {a}/{b}"))
    if as_json:
        print_json(stats)
    else:
        out.print(f"label model ({stats['mode']}, {stats['encoder']} encoder) → {out_dir}: {stats['dialogues']:,} dialogues, "
                  f"{stats['schedule']['epochs']} epochs of {stats['schedule']['steps_per_epoch']} steps, best at step {stats['best_step']}, "
                  f"{stats['train_seconds']} s; fine-tuning loss {stats['finetune_loss']}"
                  + (f"; user-level DP, epsilon {stats['privacy']['epsilon']}, delta {stats['privacy']['delta']:.2g}" if stats.get("privacy") else ""),
                  highlight=False)


@labels_app.command("import-uss")
def import_uss_cmd(
    file: Annotated[Path, typer.Argument(help="Rated dialogues in the USS text format (ROLE, text, action, ratings; blank line between dialogues).")],
    out_dir: Annotated[Path, typer.Option("--out", help="Directory for train.jsonl, valid.jsonl, test.jsonl (dialogue format).")] = Path("rated"),
    split: Annotated[str, typer.Option(help="Shares of train:valid:test, by dialogue.")] = "8:1:1",
    min_user_turns: Annotated[int, typer.Option(help="Keep dialogues with at least this many rated user turns.")] = 2,
    middle: Annotated[float, typer.Option(help="The scale's neutral rating: a turn's mean rating below it is dissatisfied, above satisfied.")] = 3.0,
    seed: Annotated[int, typer.Option(help="Seed of the split.")] = 0,
    as_json: JsonOpt = False,
) -> None:
    """Convert rated dialogues (USS, SIGIR 2021) to the dialogue format with the published protocol's
    split and three satisfaction classes per user turn (the OVERALL rating becomes the dialogue's label)."""
    from selflearn.labels.rated import import_rated

    summary = import_rated(file, out_dir, split=split, min_user_turns=min_user_turns, middle=middle, seed=seed)
    _quarantine(summary.pop("bad"), out_dir / "quarantine.jsonl", "dialogues")
    if as_json:
        print_json(summary)
        return
    parts = ", ".join(f"{k} {v['dialogues']:,} dialogues / {v['turns']:,} turns" for k, v in summary["parts"].items())
    out.print(f"{summary['kept']:,} of {summary['dialogues']:,} dialogues → {out_dir}: {parts}", highlight=False)


@labels_app.command("evaluate")
def evaluate_cmd(
    model: ModelOpt = Path("label-model"),
    store: StoreSrc = None,
    data: DataSrc = None,
    calibrate: Annotated[bool, typer.Option(help="Save these precision/coverage curves as the model's calibration (for `apply`).")] = False,
    predictions: Annotated[Path | None, typer.Option("--predictions", help="Write every turn's predictions and reference labels here (JSONL).")] = None,
    limit: Limit = None,
    threads: Annotated[int, typer.Option(help="CPU threads for torch.")] = 1,
    as_json: JsonOpt = False,
) -> None:
    """Score the model's labels against the data's labels, in the model's mode: accuracy, macro
    precision/recall (UAR)/F1, Cohen's kappa, Spearman's rho, AUC where binary, coverage at 90% and
    95% precision."""
    from selflearn.labels import LabelModel
    from selflearn.labels.training import evaluate_labels

    m = LabelModel.load(model, threads=threads)
    metrics = evaluate_labels(m, _source(store, data, limit), calibrate_to=model if calibrate else None, predictions_to=predictions)
    if as_json:
        print_json(metrics)
        return
    out.print(f"mode: {metrics['mode']}", highlight=False)
    for task, m_ in metrics.items():
        if not isinstance(m_, dict):
            continue
        if task == "intent_change":
            out.print(f"{task:>14}: accuracy {m_['accuracy']:.3f} on {m_['n']:,} intents the NLU did not say, "
                      f"coverage at 95% precision {m_['coverage_at']['0.95']:.1%}", highlight=False)
        elif task == "slots":
            out.print(f"{task:>14}: types F1 {m_['slot_types']['f1']:.3f}, values F1 {m_['slot_values']['f1']:.3f}, "
                      f"coverage at 95% precision {m_['coverage_at']['0.95']:.1%}", highlight=False)
        else:
            extra = "".join(f", {k} {m_[k]:.3f}" for k in ("kappa", "spearman", "auc") if m_.get(k) is not None)
            out.print(f"{task:>14}: accuracy {m_['accuracy']:.3f}, macro-F1 {m_['macro_f1']:.3f}, UAR {m_['uar']:.3f}{extra}, "
                      f"coverage at 95% precision {m_['coverage_at']['0.95']:.1%}", highlight=False)


@labels_app.command("apply")
def apply_cmd(
    model: ModelOpt = Path("label-model"),
    store: StoreSrc = None,
    data: DataSrc = None,
    out_file: Annotated[Path, typer.Option("--out", help="Dialogue-format JSONL to write, with the generated labels.")] = Path("labels.jsonl"),
    min_precision: Annotated[float, typer.Option(help="Keep each task's labels only where the calibration promises this precision.")] = 0.95,
    limit: Limit = None,
    threads: Annotated[int, typer.Option(help="CPU threads for torch.")] = 1,
    as_json: JsonOpt = False,
) -> None:
    """Label dialogues; write them with the labels that reach --min-precision, and print the
    share of turns each task labels."""
    from selflearn.labels import LabelModel, write_dialogues
    from selflearn.labels.training import apply_labels

    m = LabelModel.load(model, threads=threads)
    labelled, summary = apply_labels(m, _source(store, data, limit), min_precision=min_precision)
    write_dialogues(labelled, out_file)
    if as_json:
        print_json(summary)
    else:
        parts = ", ".join(f"{t} {v['coverage']:.1%}" for t, v in summary["tasks"].items())
        out.print(f"{summary['turns']:,} turns → {out_file}; labelled at >= {min_precision:.0%} precision: {parts}", highlight=False)


@labels_app.command("weak")
def weak_cmd(
    store: Annotated[Path, typer.Option("--store", envvar="SELFLEARN_STORE", help="Store whose sessions to export.")] = Path(DEFAULT_STORE),
    out_file: Annotated[Path, typer.Option("--out", help="Dialogue-format JSONL to write.")] = Path("weak.jsonl"),
    limit: Limit = None,
) -> None:
    """Export the store's sessions as dialogues with the feedback signals' labels alone."""
    from selflearn.labels import write_dialogues

    n = write_dialogues(_source(store, None, limit), out_file)
    out.print(f"{n:,} dialogues → {out_file}", highlight=False)


@labels_app.command("export-nlu")
def export_nlu_cmd(
    data: Annotated[Path, typer.Option("--data", help="Labelled dialogues (from `labels apply`).")],
    out_file: Annotated[Path, typer.Option("--out", help="JSONL of NLU training rows: text, intent, slots.")] = Path("nlu-train.jsonl"),
) -> None:
    """NLU training data from generated labels: turns of goals labelled successful, with their
    intent and slots."""
    from selflearn.labels.training import nlu_examples

    rows = nlu_examples(_source(None, data, None))
    if not rows:
        raise InvalidInputError(explain(str(data), "has no turn labelled goal_success=1 with an intent", "apply a model with those tasks first"))
    out_file.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out.print(f"{len(rows):,} NLU examples → {out_file}", highlight=False)
