"""CLI commands of failure point isolation: `selflearn fpi train | evaluate | apply | breakdown`.
Parse, call the library, print."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from selflearn.store.store import DEFAULT_STORE
from selflearn.taxonomy import COMPONENTS

from .app import DpDeltaOpt, DpEpsilonOpt, JsonOpt, StoreOpt, err, group, out, print_json

__all__ = ["fpi_app"]

fpi_app = group("fpi", "Failure point isolation: which component failed first (false wake, ASR, NLU, entity resolution, result).")

ModelOpt = Annotated[Path, typer.Option("--model", help="Failure-point model directory (from `selflearn fpi train`).")]
Threads = Annotated[int, typer.Option(help="CPU threads for torch.")]
AsJson = JsonOpt


@fpi_app.command("train")
def train_cmd(
    store: StoreOpt = Path(DEFAULT_STORE),
    labels: Annotated[Path | None, typer.Option(help="Annotated failure points (Parquet/CSV/JSONL: session_id, turn_index, failure_point). "
                                                     "Without: weak labels from the logs' signals and traces.")] = None,
    out_dir: Annotated[Path, typer.Option("--out", help="Model directory to write.")] = Path("fpi-model"),
    text: Annotated[bool, typer.Option(help="Read the turns' texts with MiniLM (--no-text: traces and context only).")] = True,
    epochs: Annotated[int, typer.Option(help="Training epochs.")] = 50,
    seed: Annotated[int, typer.Option(help="Training seed.")] = 0,
    dp_epsilon: DpEpsilonOpt = None,
    dp_delta: DpDeltaOpt = None,
    threads: Threads = 1,
    as_json: AsJson = False,
) -> None:
    """Train the failure-point classifier on the store's turns; write the model directory."""
    from selflearn.fpi import FailurePointModel, train_fpi
    from selflearn.fpi.isolation import open_store

    model = FailurePointModel(text=text, epochs=epochs, random_state=seed, threads=threads, dp_epsilon=dp_epsilon, dp_delta=dp_delta)
    with open_store(store) as st, err.status("training") as status:
        stats = train_fpi(st, out_dir, model, labels_path=labels, progress=lambda stage, done, total: status.update(f"training: {stage} {done}/{total}"))
    if as_json:
        print_json(stats)
    else:
        out.print(f"failure-point model → {out_dir}: {stats['turns']:,} turns ({stats['labels']}) in {stats['train_seconds']} s"
                  + (f"; user-level DP, epsilon {stats['privacy']['epsilon']}, delta {stats['privacy']['delta']:.2g}" if stats.get("privacy") else ""),
                  highlight=False)


@fpi_app.command("evaluate")
def evaluate_cmd(
    labels: Annotated[Path, typer.Option(help="Annotated failure points of the store's turns (Parquet/CSV/JSONL).")],
    store: StoreOpt = Path(DEFAULT_STORE),
    model: ModelOpt = Path("fpi-model"),
    rules: Annotated[bool, typer.Option(help="Score the confidence-threshold rules instead of the model.")] = False,
    threads: Threads = 1,
    as_json: AsJson = False,
) -> None:
    """Accuracy, macro-F1, per-class precision/recall/F1 and the confusion matrix on annotated turns."""
    from selflearn.fpi import FailurePointModel, evaluate_fpi
    from selflearn.fpi.isolation import open_store

    predictor = "rules" if rules else FailurePointModel.load(model, threads=threads)
    with open_store(store) as st:
        m = evaluate_fpi(predictor, st, labels)
    if as_json:
        print_json(m)
        return
    out.print(f"{m['turns']:,} turns: accuracy {m['accuracy']:.3f}, macro-F1 {m['macro_f1']:.3f}", highlight=False)
    for c, v in m["per_class"].items():
        out.print(f"{c:>18}: precision {v['precision']:.3f}, recall {v['recall']:.3f}, F1 {v['f1']:.3f} ({v['support']:,} turns)", highlight=False)


def _print_breakdown(b: dict, as_json: bool) -> None:
    if as_json:
        print_json(b)
        return
    out.print(f"{b['turns']:,} turns, {b['defects']:,} defective ({b['defect_rate']:.1%})", highlight=False)
    out.print("by component: " + ", ".join(f"{c} {v['turns']:,}" + (f" ({v['share_of_defects']:.0%})" if v["share_of_defects"] is not None else "")
                                       for c, v in b["by_component"].items()), highlight=False)
    for key in ("by_domain", "by_intent", "by_device_type", "by_day"):
        out.print(f"{key.replace('_', ' ')}:", highlight=False)
        for r in b[key]:
            parts = ", ".join(f"{c} {r[c]}" for c in COMPONENTS if r[c])
            out.print(f"  {r['key'] or '(none)':<28} {r['defects']:>6,} / {r['turns']:<7,} {parts}", highlight=False)


@fpi_app.command("apply")
def apply_cmd(
    store: StoreOpt = Path(DEFAULT_STORE),
    model: ModelOpt = Path("fpi-model"),
    threads: Threads = 1,
    as_json: AsJson = False,
) -> None:
    """Add a failure point to every turn in the store (table failure_points) and print the
    root-cause breakdown: per component, domain, intent, device type and day."""
    from selflearn.fpi import FailurePointModel, apply_fpi
    from selflearn.fpi.isolation import open_store

    m = FailurePointModel.load(model, threads=threads)
    with open_store(store) as st:
        b = apply_fpi(st, m)
    _print_breakdown(b, as_json)


@fpi_app.command("breakdown")
def breakdown_cmd(store: StoreOpt = Path(DEFAULT_STORE), as_json: AsJson = False) -> None:
    """Print the root-cause breakdown of failure points already in the store."""
    from selflearn.fpi import breakdown
    from selflearn.fpi.isolation import open_store

    with open_store(store) as st:
        b = breakdown(st)
    _print_breakdown(b, as_json)
