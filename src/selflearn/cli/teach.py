"""CLI commands of teachable AI: `selflearn prefs list | put | delete | teach`. Parse, call the
library, print."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from selflearn.store.store import DEFAULT_STORE

from .app import JsonOpt, StoreOpt, group, out, print_json

__all__ = ["prefs_app"]

prefs_app = group("prefs", "What users taught the assistant: list, put and delete preferences, or teach by talking.")

UserOpt = Annotated[str, typer.Option("--user", help="The user's id.")]
AsJson = JsonOpt


@contextmanager
def _prefs(store: Path):
    """The store's preferences, the store closed afterwards (also on an error)."""
    from selflearn.store.store import Store
    from selflearn.teach import Preferences

    with Store(store) as st:
        yield Preferences(st)


def _show(p: dict) -> str:
    key = f" [{p['key']}]" if p["key"] else ""
    return f"{p['kind']}{key}: {p['value']} ({p['provenance']}, confidence {p['confidence']:.2f}, updated {p['updated_at'][:19]})"


@prefs_app.command("list")
def list_cmd(user: UserOpt, store: StoreOpt = Path(DEFAULT_STORE), as_json: AsJson = False) -> None:
    """Everything remembered about a user."""
    with _prefs(store) as prefs:
        rows = [p.to_dict() for p in prefs.list(user)]
    if as_json:
        print_json(rows)
    elif not rows:
        out.print(f"nothing remembered about {user}", highlight=False)
    else:
        for p in rows:
            out.print(_show(p), highlight=False)


@prefs_app.command("put")
def put_cmd(
    user: UserOpt,
    kind: Annotated[str, typer.Option(help="sports_team, music_genre, music_artist, cuisine, home_city, device_nickname, place or news_source.")],
    value: Annotated[str, typer.Option(help="What to remember.")],
    key: Annotated[str, typer.Option(help="For device_nickname: the nickname ('the lamp'); for place: the name said ('wilkerson').")] = "",
    provenance: Annotated[str, typer.Option(help="taught, confirmed or inferred.")] = "taught",
    store: StoreOpt = Path(DEFAULT_STORE),
) -> None:
    """Remember (or update) one preference."""
    with _prefs(store) as prefs:
        p = prefs.put(user, kind, value, key=key, provenance=provenance).to_dict()
    out.print(_show(p), highlight=False)


@prefs_app.command("delete")
def delete_cmd(
    user: UserOpt,
    kind: Annotated[str | None, typer.Option(help="Forget only this kind (default: everything about the user).")] = None,
    key: Annotated[str | None, typer.Option(help="Forget only this name (with --kind device_nickname or place).")] = None,
    store: StoreOpt = Path(DEFAULT_STORE),
) -> None:
    """Forget what a user taught (one kind, one nickname, or everything)."""
    with _prefs(store) as prefs:
        n = prefs.delete(user, kind, key)
    out.print(f"forgot {n} preference(s) of {user}", highlight=False)


@prefs_app.command("teach")
def teach_cmd(
    user: UserOpt,
    text: Annotated[str | None, typer.Argument(help="A statement ('I'm a Warriors fan'); without it, the guided Q&A runs here.")] = None,
    store: StoreOpt = Path(DEFAULT_STORE),
) -> None:
    """Teach by talking: one statement, or the guided Q&A ("learn my preferences") answered at the prompt."""
    from selflearn.teach import Teacher

    with _prefs(store) as prefs:
        teacher = Teacher(prefs)
        if text is not None:
            r = teacher.turn(user, text)
            out.print(r.reply if r else "That did not teach me anything (try 'I'm a Warriors fan' or 'I live in Wilkerson, Ohio').", highlight=False)
        else:
            r = teacher.turn(user, "learn my preferences")
            while r is not None and r.active:
                r = teacher.turn(user, typer.prompt(r.reply, default="skip", show_default=False))
            if r is not None:
                out.print(r.reply, highlight=False)
