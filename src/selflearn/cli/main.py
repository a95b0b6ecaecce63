"""The ``selflearn`` command. It parses, calls the library, prints, and maps errors to exit codes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from selflearn.logs.formats import FORMATS
from selflearn.store.export import export_turns
from selflearn.store.importer import import_files
from selflearn.store.stats import store_stats
from selflearn.store.store import DEFAULT_STORE, Store

from .app import JsonOpt, StoreOpt, app, err, error, group, out, plain, print_json

__all__ = ["app", "main"]

store_app = group("store", "The store of interaction logs: import, export, statistics, migrate.")


@store_app.command("import")
def import_cmd(
    files: Annotated[list[Path], typer.Argument(help="Log files: .jsonl[.gz], .csv[.gz], .parquet, or Rasa exports.")],
    store: StoreOpt = Path(DEFAULT_STORE),
    fmt: Annotated[
        str | None, typer.Option("--format", help=f"Read every file as this format ({'|'.join(FORMATS)}); "
                                 "default: from each file's name.")
    ] = None,
    quarantine: Annotated[
        Path | None, typer.Option(help="Where rejected records go (JSONL, appended). Default: next to the store.")
    ] = None,
    keep_raw_text: Annotated[
        bool, typer.Option(help="Also keep each turn's unscrubbed texts (table raw_text) where your policy allows it; "
                           "turns, and so every model, table and report, keep only scrubbed text either way.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Validate and import interaction logs. Bad records are quarantined with a reason, never dropped.

    Each file is imported atomically, and importing the same file twice adds nothing. Exits non-zero only
    when nothing at all could be imported. User, device and session ids are stored as keyed pseudonyms
    (the key file beside the store, or $SELFLEARN_PSEUDONYM_KEY), and e-mails, phone numbers, cards, IP
    addresses and long numbers in the texts as placeholders (docs/privacy.md).
    """
    with Store(store) as st, Progress(
        TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=err, transient=True, disable=as_json,
    ) as bar:
        task = bar.add_task("importing", total=None)

        def tick(path: str, n: int) -> None:
            bar.update(task, advance=n, description=plain(f"importing {Path(path).name}"))

        report = import_files(st, files, fmt=fmt, quarantine_path=quarantine, progress=tick, keep_raw_text=keep_raw_text)
    if as_json:
        print_json(report.as_dict())
    else:
        table = Table("file", "format", "imported", "duplicates", "quarantined", "seconds", title="import")
        for f in report.files:
            table.add_row(f.path, f.format or "-", str(f.imported), str(f.duplicates), str(f.quarantined),
                          f"{f.seconds:.2f}")
        out.print(table)
        for f in report.files:
            if f.error:
                error(f.error)
        out.print(f"imported {report.imported}, duplicates {report.duplicates}, quarantined {report.quarantined}"
                  + (f" (reasons in {report.quarantine_path})" if report.quarantined else ""), highlight=False)
        scrubbed = report.scrubbed
        if scrubbed:
            out.print("scrubbed: " + ", ".join(f"{n} {kind}" for kind, n in scrubbed.items()), highlight=False)
    if not report.ok:
        raise typer.Exit(2)


@store_app.command("export")
def export_cmd(
    output: Annotated[Path, typer.Argument(help="Output file: .jsonl, .jsonl.gz or .parquet.")],
    store: StoreOpt = Path(DEFAULT_STORE),
    fmt: Annotated[str | None, typer.Option("--format", help="jsonl|parquet; default: from the name.")] = None,
) -> None:
    """Write every turn in the store to a file (JSONL in the log format, or flat Parquet)."""
    with Store(store, read_only=True) as st, Progress(
        TextColumn("exporting"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=err, transient=True,
    ) as bar:
        task = bar.add_task("exporting", total=None)
        n = export_turns(st, output, fmt, progress=lambda k: bar.update(task, advance=k))
    out.print(f"exported {n} turns to {output}", highlight=False)


@store_app.command("stats")
def stats_cmd(
    store: StoreOpt = Path(DEFAULT_STORE),
    top: Annotated[int, typer.Option(min=1, help="How many intents and device types to list.")] = 10,
    as_json: JsonOpt = False,
) -> None:
    """Counts, date range, top intents and devices, and feedback-signal counts."""
    with Store(store, read_only=True) as st:
        s = store_stats(st, top=top)
    if as_json:
        print_json(s)
        return
    summary = Table("", "", title=f"store {s['store']}", show_header=False)
    for key in ("turns", "sessions", "users", "devices", "first_turn", "last_turn", "turns_without_nlu",
                "imports", "quarantined_total"):
        summary.add_row(key.replace("_", " "), str(s[key]))
    for key, value in s["feedback"].items():
        summary.add_row(f"feedback: {key.replace('_', ' ')}", str(value))
    out.print(summary)
    for key, title in (("top_intents", "intent"), ("top_device_types", "device type")):
        table = Table(title, "turns", title=f"top {title}s")
        for row in s[key]:
            table.add_row(str(row["name"]), str(row["turns"]))
        out.print(table)


@store_app.command("migrate")
def migrate_cmd(store: StoreOpt = Path(DEFAULT_STORE)) -> None:
    """Upgrade a store written by an older selflearn to this version's layout (one transaction)."""
    if not Path(store).exists():
        error(f"{store}: no store at this path; fix: check --store")
        raise typer.Exit(2)
    with Store(store) as st:
        out.print(f"{store} is at store version {st.version}", highlight=False)


from . import fpi, labels, online, privacy, report, rewrites, teach, world  # noqa: E402,F401  (each registers its nouns)


def main() -> None:
    """The console script."""
    app()


if __name__ == "__main__":
    main()
