"""`selflearn report write`: parses, calls selflearn.report, prints the path, maps errors to exit codes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from selflearn.store.store import DEFAULT_STORE

from .app import StoreOpt, group, out

__all__ = ["report_cmd"]


report_app = group("report", "The morning report: one self-contained HTML page.")


@report_app.command("write")
def report_cmd(
    store: StoreOpt = Path(DEFAULT_STORE),
    out_path: Annotated[Path, typer.Option("--out", help="The HTML file to write (self-contained: opens offline).")] = Path("selflearn-report.html"),
    rewrites: Annotated[Path | None, typer.Option(help="A rewrite table (`selflearn rewrites mine`) to show with its wins and losses in these logs.")] = None,
    ab: Annotated[list[Path] | None, typer.Option(help="A/B results (`selflearn world ab --json` output); repeat for several.")] = None,
    labels_model: Annotated[Path | None, typer.Option(help="A label model directory whose precision/coverage curves to plot.")] = None,
    audit: Annotated[list[Path] | None, typer.Option(help="A privacy audit (`selflearn privacy audit --out`); repeat for several.")] = None,
    top: Annotated[int, typer.Option(min=1, max=100, help="Rows in each top-N table.")] = 10,
    min_users: Annotated[int, typer.Option(min=1, help="k-anonymity: show a request's words only when this many distinct users said it.")] = 5,
) -> None:
    """Write the morning report: defect rate over time and by domain, intent and device; top defects with
    example sessions; rewrites with wins, losses and support; A/B results with CIs; the failure-point
    breakdown; label precision/coverage curves; privacy audits (membership ROC curves, canary exposure)."""
    from selflearn.report import write_report

    info = write_report(store, out_path, rewrites=rewrites, ab=ab or [], labels_model=labels_model, audits=audit or [], top=top, min_users=min_users)
    out.print(f"wrote {out_path} ({info['bytes'] / 1e6:.1f} MB, {info['turns']:,} turns)", highlight=False)
