"""CLI commands of ground-truth generation: `selflearn labels train | evaluate | apply | weak |
export-nlu`. Parse, call the library, print."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from selflearn.errors import InvalidInputError, explain
from selflearn.store.store import DEFAULT_STORE

from .app import JsonOpt, err, group, out, print_json

__all__ = ["labels_app"]

labels_app = group("labels", "Generate labels (defect, goals, intent, slots) from feedback with a contextual model.")

StoreSrc = Annotated[Path | None, typer.Option("--store", help="Store whose sessions to use; labels come from its feedback signals (weak labels).")]
DataSrc = Annotated[Path | None, typer.Option("--data", help="Dialogue-format JSONL (docs/dialogue-format.md) with its own labels.")]
ModelOpt = Annotated[Path, typer.Option("--model", help="Label model directory (from `selflearn labels train`).")]
Limit = Annotated[int | None, typer.Option(help="Use only the first N dialogues.")]


def _source(store, data, limit):
    from selflearn.labels.training import load_source

    dialogues, bad = load_source(store=store, data=data, limit=limit)
    if bad:
        q = Path(str(data) + ".quarantine.jsonl")
        q.write_text("".join(json.dumps(b) + "\n" for b in bad))
        err.print(f"{len(bad)} bad lines quarantined → {q} (first: {bad[0]['reason']})", highlight=False, soft_wrap=True)
    return dialogues


@labels_app.command("train")
def train_cmd(
    store: StoreSrc = None,
    data: DataSrc = None,
    out_dir: Annotated[Path, typer.Option("--out", help="Model directory to write.")] = Path("label-model"),
    text_layers: Annotated[int, typer.Option(help="MiniLM layers kept in the turn encoder (1-6; fewer is faster).")] = 6,
    epochs: Annotated[int, typer.Option(help="Multi-task fine-tuning epochs.")] = 2,
    pretrain_epochs: Annotated[int, typer.Option(help="Self-supervised pretraining epochs on corrupted dialogues (0: none).")] = 1,
    corruptions: Annotated[str, typer.Option(help="Pretraining corruptions, comma-separated: swap, shuffle, insert.")] = "swap,shuffle,insert",
    context: Annotated[bool, typer.Option(help="Dialogue-level Transformer over the turns (--no-context: each turn alone).")] = True,
    batch_size: Annotated[int, typer.Option(help="Dialogues per step.")] = 32,
    seed: Annotated[int, typer.Option(help="Seed of the split and training.")] = 0,
    threads: Annotated[int, typer.Option(help="CPU threads for torch.")] = 1,
    limit: Limit = None,
    as_json: JsonOpt = False,
) -> None:
    """Pretrain on corrupted dialogues, fine-tune on the labels (weak ones from a store's signals,
    or a file's own), draw precision/coverage curves on 10% held out; write the model directory."""
    from selflearn.labels import LabelModel
    from selflearn.labels.training import train_labels

    kinds = tuple(x.strip() for x in corruptions.split(",") if x.strip())
    model = LabelModel(text_layers=text_layers, epochs=epochs, pretrain_epochs=pretrain_epochs, corruptions=kinds, context=context,
                       batch_size=batch_size, random_state=seed, threads=threads)
    dialogues = _source(store, data, limit)
    with err.status("training") as status:
        stats = train_labels(dialogues, out_dir, model, progress=lambda s, a, b: status.update(f"{s} {a}/{b}"))
    if as_json:
        print_json(stats)
    else:
        out.print(f"label model → {out_dir}: {stats['dialogues']:,} dialogues in {stats['train_seconds']} s; "
                  f"fine-tuning loss {stats['finetune_loss']}", highlight=False)


@labels_app.command("evaluate")
def evaluate_cmd(
    model: ModelOpt = Path("label-model"),
    store: StoreSrc = None,
    data: DataSrc = None,
    calibrate: Annotated[bool, typer.Option(help="Save these precision/coverage curves as the model's calibration (for `apply`).")] = False,
    limit: Limit = None,
    threads: Annotated[int, typer.Option(help="CPU threads for torch.")] = 1,
    as_json: JsonOpt = False,
) -> None:
    """Score the model's labels against the data's labels: accuracy, macro-F1, per-class
    precision/recall, AUC where binary, coverage at 90% and 95% precision."""
    from selflearn.labels import LabelModel
    from selflearn.labels.training import evaluate_labels

    m = LabelModel.load(model, threads=threads)
    metrics = evaluate_labels(m, _source(store, data, limit), calibrate_to=model if calibrate else None)
    if as_json:
        print_json(metrics)
        return
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
            auc = f", AUC {m_['auc']:.3f}" if "auc" in m_ else ""
            out.print(f"{task:>14}: accuracy {m_['accuracy']:.3f}, macro-F1 {m_['macro_f1']:.3f}{auc}, "
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
