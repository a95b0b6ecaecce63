"""The Typer application and what every command shares: consoles, error mapping, --version."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from selflearn import __version__
from selflearn.errors import SelflearnError
from selflearn.store.store import STORE_VERSION

__all__ = ["app", "out", "err", "fail", "StoreOpt"]

StoreOpt = Annotated[
    Path,
    typer.Option("--store", envvar="SELFLEARN_STORE", help="Store file (DuckDB).", show_default=True),
]

app = typer.Typer(
    name="selflearn",
    help="The self-learning layer for conversational assistants: find defects in interaction logs "
    "and learn to fix them without annotation.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)
out = Console()
err = Console(stderr=True)

def fail(exc: SelflearnError) -> typer.Exit:
    err.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
    return typer.Exit(exc.exit_code)


def _version(value: bool) -> None:
    if value:
        out.print(f"selflearn {__version__} (store version {STORE_VERSION})")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
) -> None:
    """The self-learning layer for conversational assistants."""


