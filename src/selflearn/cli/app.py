"""The Typer application and what every command shares: the grammar (``selflearn NOUN VERB``), the
consoles, the one place errors become exit codes, ``--json``, ``--version``."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.text import Text
from typer.core import TyperGroup

from selflearn import __version__
from selflearn.errors import SelflearnError
from selflearn.store.store import STORE_VERSION

__all__ = ["app", "group", "out", "err", "error", "plain", "print_json", "JsonOpt", "StoreOpt", "DpEpsilonOpt", "DpDeltaOpt", "SafeConsole"]

StoreOpt = Annotated[
    Path,
    typer.Option("--store", envvar="SELFLEARN_STORE", help="Store file (DuckDB).", show_default=True),
]

JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as one JSON object.")]
DpEpsilonOpt = Annotated[float | None, typer.Option("--dp-epsilon", help="Train with user-level differential privacy at this epsilon "
                                                    "(e.g. 8; smaller is more private; docs/privacy.md). Default: no DP.")]
DpDeltaOpt = Annotated[float | None, typer.Option("--dp-delta", help="DP delta (default 1/(10 n) for n users; must be below 1/n).")]


class _Commands(TyperGroup):
    """Every command group: a :class:`~selflearn.errors.SelflearnError` raised by any command ends as
    ``error: <value>: <rule>; fix: <fix>`` on stderr and the error's exit code; a store DuckDB cannot
    read ends in one line and exit code 3. This is the only place errors become exit codes."""

    def invoke(self, ctx):
        import duckdb

        try:
            return super().invoke(ctx)
        except SelflearnError as exc:
            error(exc)
            raise typer.Exit(exc.exit_code) from None
        except duckdb.Error as exc:
            error(f"the store could not be read ({str(exc).splitlines()[0][:200]}): the file may be damaged; "
                  "fix: restore it from a backup, or import the logs into a new store")
            raise typer.Exit(3) from None


app = typer.Typer(
    cls=_Commands,
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


def print_json(value: Any) -> None:
    """``--json`` output: one JSON object on stdout (dates and paths as strings)."""
    out.print_json(json.dumps(value, default=str))


def group(name: str, help: str) -> typer.Typer:
    """A noun of the grammar (``selflearn NAME VERB``), with the shared error mapping."""
    sub = typer.Typer(cls=_Commands, help=help, no_args_is_help=True, rich_markup_mode=None)
    app.add_typer(sub, name=name)
    return sub


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


