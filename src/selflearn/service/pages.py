"""Server-rendered HTML for the dashboard: one layout, escaped text, small table and form helpers."""

from __future__ import annotations

import html
from urllib.parse import urlencode

__all__ = ["page", "e", "table", "form", "link", "pct"]

CSS = """body{font:14px/1.45 system-ui,-apple-system,Segoe UI,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
header{background:#1d2330;color:#fff;padding:10px 24px;display:flex;gap:18px;align-items:center}header a{color:#cfe0ff;text-decoration:none}
header b{margin-right:12px}header .right{margin-left:auto;color:#aab4c5}main{max-width:1100px;margin:0 auto;padding:20px 24px}
h1{font-size:22px;margin:0 0 12px}h2{font-size:17px;margin:24px 0 8px}.muted{color:#5b6474}
table{border-collapse:collapse;width:100%;background:#fff;margin:8px 0}th,td{border:1px solid #d8dce3;padding:5px 8px;text-align:left;vertical-align:top}
th{background:#eef0f4}td.n{text-align:right;font-variant-numeric:tabular-nums}.cards{display:flex;gap:12px;flex-wrap:wrap;margin:8px 0 16px}
.card{background:#fff;border:1px solid #d8dce3;border-radius:6px;padding:8px 14px;min-width:120px}.card b{display:block;font-size:19px}
form.inline{display:inline}button{font:inherit;padding:3px 10px;border-radius:4px;border:1px solid #9aa3b2;background:#fff;cursor:pointer}
button.block{border-color:#b3261e;color:#b3261e}button.approve{border-color:#1e7b34;color:#1e7b34}input{font:inherit;padding:3px 6px}
.empty{background:#fff;border:1px dashed #c3c8d2;padding:12px;color:#5b6474}.note{background:#fff8e1;border:1px solid #f0d890;padding:8px 12px;margin:8px 0}
.tag{display:inline-block;padding:0 6px;border-radius:3px;font-size:12px}.tag.blocked{background:#fbe3e1;color:#b3261e}.tag.approved{background:#e1f5e6;color:#1e7b34}"""


def e(x) -> str:
    return html.escape("" if x is None else str(x))


def pct(x) -> str:
    return "—" if x is None else f"{100 * x:.1f}%"


def link(path: str, text: str, **query) -> str:
    q = f"?{urlencode(query)}" if query else ""
    return f"<a href='{e(path + q)}'>{e(text)}</a>"


def table(headers: list[str], rows: list[list[str]], *, empty: str, numeric: tuple[int, ...] = ()) -> str:
    """Cells are HTML already (escape text with ``e``); ``empty`` is said when there are no rows."""
    if not rows:
        return f"<p class=empty>{e(empty)}</p>"
    head = "".join(f"<th>{e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td{' class=n' if i in numeric else ''}>{c}</td>" for i, c in enumerate(r)) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def form(action: str, fields: dict[str, str], label: str, *, cls: str = "", name: str = "") -> str:
    hidden = "".join(f"<input type=hidden name='{e(k)}' value='{e(v)}'>" for k, v in fields.items())
    return f"<form class=inline method=post action='{e(action)}'>{hidden}<button type=submit class='{e(cls)}' name='{e(name or label.lower())}'>{e(label)}</button></form>"


def page(title: str, body: str, *, admin: bool, admin_enabled: bool) -> str:
    who = ("admin" + " · " + link("/dashboard/logout", "log out")) if admin else (
        link("/dashboard/login", "admin log in") if admin_enabled else "read only (no admin token set)")
    nav = " ".join(link(p, t) for p, t in (("/dashboard", "Defects"), ("/dashboard/rewrites", "Rewrites"), ("/dashboard/users", "Users")))
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><meta name=viewport content='width=device-width,initial-scale=1'>"
            f"<title>{e(title)} · selflearn</title><style>{CSS}</style></head><body><header><b>selflearn</b>{nav}<span class=right>{who}</span></header>"
            f"<main><h1>{e(title)}</h1>{body}</main></body></html>")
