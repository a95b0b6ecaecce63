"""What every dashboard page shares: the page frame (headers, CSP), the refusal page, the
transcript table, the reader thread with the background defect summary, and :class:`Context`
(the store, the rewriter, the admin check and the CSRF check every router uses)."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse

from ...errors import NotAuthorizedError, SelflearnError
from ...report import data as report_data
from ...rewrites.reviews import Reviews
from ...store.store import Store
from ...teach.preferences import Preferences
from ...templating import clip, href, render
from ..security import Auth

__all__ = ["Context", "Reader", "refused_page", "transcript_rows", "TRANSCRIPT", "read_model_table", "local_path",
           "SUMMARY_TTL_S", "MIN_REFRESH_S"]

SUMMARY_TTL_S = 300.0  # a summary older than this is recomputed in the background when a page is shown
MIN_REFRESH_S = 30.0  # "Recompute now" at most this often
NAV = (("/dashboard", "Defects"), ("/dashboard/rewrites", "Rewrites"), ("/dashboard/users", "Users"))
TRANSCRIPT = ["#", "time", "user said", "rewritten to", "intent", "assistant", "feedback", "defect score"]


def render_page(request: Request, auth: Auth, template: str, title: str, *, status: int = 200, notes=(), refresh_s: int = 0, **values) -> HTMLResponse:
    s = auth.session(request)
    html = render(template, title=title, nav=NAV, operator=s.key.name if s else "", csrf=s.csrf if s else "", notes=list(notes),
                  refresh_s=refresh_s, **values)
    return HTMLResponse(html, status_code=status, headers={"cache-control": "no-store", "x-frame-options": "DENY",
                                                          "content-security-policy": "default-src 'none'; style-src 'unsafe-inline'; "
                                                                                     "form-action 'self'; frame-ancestors 'none'"})


def refused_page(request: Request, auth: Auth, exc: NotAuthorizedError):
    """Not logged in: to the login page (GET) or 401; logged in but refused (CSRF, origin): 403."""
    if not exc.authenticated and request.method == "GET":
        return RedirectResponse(href("/dashboard/login", next=request.url.path), status_code=303)
    return render_page(request, auth, "dashboard/message.html", "Not allowed", status=403 if exc.authenticated else 401, notes=[str(exc)],
                       link=("/dashboard/login", "log in"))


def transcript_rows(turns: list[dict]) -> list[list]:
    return [[t["turn_index"], t["ts"], clip(t["request"]), clip(t["rewrite"] or ""), t["intent"] or "", clip(t["reply"]),
             ("barge-in " if t["barge_in"] else "") + (t["feedback"] or ""), "—" if t["defect_score"] is None else f"{t['defect_score']:.2f}"]
            for t in turns]


class Reader:
    """The dashboard's reader cursor on a thread of its own; the summary is refreshed there."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.con = store.reader()
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="selflearn-dashboard")
        self.summary: dict | None = None
        self.error: str | None = None
        self.at = 0.0  # monotonic time the summary was computed
        self.computed_at: datetime | None = None
        self.task: asyncio.Future | None = None

    async def run(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)

    def _compute(self) -> None:
        try:
            self.summary, self.error = report_data.store_summary(self.store, con=self.con, top=20, examples=0), None
        except SelflearnError as exc:
            self.summary, self.error = None, str(exc)
        self.at, self.computed_at = time.monotonic(), datetime.now(timezone.utc)

    def refresh(self, *, force: bool = False) -> str | None:
        """Start a background recomputation unless one runs or ran recently; why not, otherwise."""
        if self.task is not None and not self.task.done():
            return "The summary is being recomputed; this page will show it when it is done."
        age = time.monotonic() - self.at
        if self.at and age < (MIN_REFRESH_S if force else SUMMARY_TTL_S):
            return f"The summary was computed {age:.0f} s ago; it is recomputed at most every {MIN_REFRESH_S:.0f} s." if force else None
        self.task = asyncio.ensure_future(self.run(self._compute))
        return "The summary is being recomputed in the background."

    def ready(self) -> bool:
        return self.at > 0


@dataclass
class Context:
    """What the dashboard's routers share. ``run(fn, *args)`` runs a write on the service's owner
    thread; ``rows`` is the model's mined table, most supported first."""

    store: Store
    rewriter: Any
    auth: Auth
    run: Callable
    rows: list[dict]
    reader: Reader = field(init=False)
    reviews: Reviews = field(init=False)
    prefs: Preferences = field(init=False)

    def __post_init__(self) -> None:
        self.reader = Reader(self.store)
        self.reviews, self.prefs = Reviews(self.store), Preferences(self.store)
        self.rewriter.blocked |= self.reviews.blocked()

    def admin(self, request: Request) -> None:
        self.auth.require(request, "admin")

    def form_ok(self, request: Request, csrf: str | None) -> None:
        s = self.auth.session(request)
        if s is None:
            self.auth.require(request, "admin")  # an API key (no cookie, so no CSRF): fine; nobody at all: refused
            return
        self.auth.check_form(request, s, csrf)

    def page(self, request: Request, template: str, title: str, **values) -> HTMLResponse:
        return render_page(request, self.auth, template, title, **values)

    async def needs_summary(self, request: Request):
        """The page to show while the first summary is computed, or None once there is one."""
        self.reader.refresh()  # a stale summary is recomputed in the background; the page shows the last one
        if self.reader.ready():
            return None
        return self.page(request, "dashboard/message.html", "Computing", notes=["Computing the defect summary of this store in the background; "
                                                                                  "this page reloads by itself."], refresh_s=3, link=None)


def local_path(path: str) -> str:
    """Only redirect within the dashboard."""
    return path if path.startswith("/dashboard") and "//" not in path and "\\" not in path else "/dashboard"


def read_model_table(model_dir: Path):
    """The model's mined table, or None when it has none."""
    p = Path(model_dir) / "rewrites.parquet"
    if not p.exists():
        return None
    from ...report.html import read_rewrite_table

    return read_rewrite_table(p)
