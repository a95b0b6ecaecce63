"""The Typer application and what every command shares: consoles, error mapping, --version."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text

from selflearn import __version__
from selflearn.errors import SelflearnError
from selflearn.store.store import STORE_VERSION

__all__ = ["app", "out", "err", "fail", "error", "plain", "StoreOpt", "SafeConsole"]

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
# C0 and C1 control characters (ESC, BEL, CR, OSC/CSI introducers, ...) except tab and newline
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def plain(text: object) -> str:
    """Text from the data, safe for a terminal: control characters shown as \\xNN, never sent raw."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", str(text))


class SafeConsole(Console):
    """A console that prints what it is given as text: no rich markup is read from strings (an intent
    named ``[/bold]`` is printed as such), and control characters are shown escaped. This is the one
    place the CLI's output is made safe; colour comes from ``rich.text.Text`` styles only."""

    def __init__(self, **kwargs) -> None:
        super().__init__(markup=False, emoji=False, **kwargs)

    def render_str(self, text: str, **kwargs):
        kwargs["markup"] = False
        kwargs["emoji"] = False
        return super().render_str(plain(text), **kwargs)


out = SafeConsole()
err = SafeConsole(stderr=True)


def error(message: object) -> None:
    """``error: <message>`` on stderr, the prefix in red."""
    err.print(Text("error: ", style="red") + Text(plain(message)), highlight=False, soft_wrap=True)


def fail(exc: SelflearnError) -> typer.Exit:
    error(exc)
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


