"""The pages selflearn writes (the report, the dashboard): Jinja2 templates in ``selflearn/templates``
with autoescaping on, so every value from the logs reaches HTML escaped, and one stylesheet.

Table cells are plain values (shown as escaped text) or one of the small cell types below; no HTML
is built in Python."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from urllib.parse import quote, urlencode

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

__all__ = ["render", "stylesheet", "Link", "Button", "Tag", "Muted", "Section", "href", "clip", "pct", "MAX_TEXT"]

MAX_TEXT = 300  # characters of one text from the logs shown on a page (the rest is counted, not shown)


@dataclass(frozen=True)
class Link:
    href: str
    text: str
    kind: str = "link"


@dataclass(frozen=True)
class Button:
    """A POST form of hidden fields and one button (the page adds its CSRF token)."""

    action: str
    fields: dict = field(default_factory=dict)
    label: str = ""
    cls: str = ""
    kind: str = "button"


@dataclass(frozen=True)
class Tag:
    decision: str | None
    kind: str = "tag"


@dataclass(frozen=True)
class Muted:
    text: str
    kind: str = "muted"


@dataclass(frozen=True)
class Section:
    """A part of a dashboard page: a heading (optionally a link), a line of text, buttons, a table."""

    heading: str = ""
    heading_link: str = ""
    text: str = ""
    buttons: tuple = ()
    headers: list | None = None
    rows: list = field(default_factory=list)
    numeric: tuple = ()
    empty: str = ""


def href(path: str, *segments: str, **query) -> str:
    """A local URL: ``path`` + each segment percent-encoded whole (a '/' or '?' in an id stays in it) + query."""
    url = path + "".join("/" + quote(str(s), safe="") for s in segments)
    return url + (f"?{urlencode(query)}" if query else "")


def clip(text, limit: int = MAX_TEXT) -> str:
    """A text from the logs, cut to ``limit`` characters with how much was left out."""
    s = "" if text is None else str(text)
    return s if len(s) <= limit else f"{s[:limit]}… (+{len(s) - limit:,} characters)"


def pct(x) -> str:
    """A share as a percentage with one decimal; "—" for anything that is not a number."""
    return f"{100 * x:.1f}%" if isinstance(x, (int, float)) and not isinstance(x, bool) else "—"


def _is_cell(value, kind: str) -> bool:
    return getattr(value, "kind", None) == kind and type(value) in (Link, Button, Tag, Muted)


@cache
def _env() -> Environment:
    env = Environment(loader=PackageLoader("selflearn", "templates"), autoescape=select_autoescape(["html"], default=True),
                      undefined=StrictUndefined, trim_blocks=False, lstrip_blocks=False)
    env.tests["cellkind"] = _is_cell
    return env


@cache
def stylesheet() -> str:
    return _env().loader.get_source(_env(), "style.css")[0]


def render(template: str, **values) -> str:
    """A page from its template; ``css`` (the shared stylesheet) is always there."""
    return _env().get_template(template).render(css=Markup(stylesheet()), **values)  # the package's own CSS, not data
