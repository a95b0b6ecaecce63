"""The review dashboard in `selflearn online serve --store`, for operators logged in with an admin API key:
browse defects and their sessions, inspect a rewrite's evidence (the chains it came from), approve or
block it (a blocked pair is never served again, by the table or the online layers, and stays blocked
across restarts: it is kept in the store), and view or delete a user's preferences.

Every page shows users' words, so every page needs the admin session; every form carries a CSRF token
and must come from the dashboard's own origin (:mod:`selflearn.service.security`). Pages read the
store on a reader thread of their own and never on the event loop; the defect summary is computed
there in the background (at most once per ``MIN_REFRESH_S``), so the rewrite API is never held up.
Writes (reviews, preferences, the rewriter's block list) run on the service's owner thread."""

from __future__ import annotations

from fastapi import APIRouter

from ...store.store import Store
from ..security import Auth
from . import defects, login, rewrites, users
from .common import MIN_REFRESH_S, SUMMARY_TTL_S, Context, read_model_table, refused_page

__all__ = ["dashboard_router", "refused_page", "read_model_table", "SUMMARY_TTL_S", "MIN_REFRESH_S"]


def dashboard_router(store: Store, rewriter, *, auth: Auth, run, rewrite_table=None) -> APIRouter:
    """``rewriter``: the service's OnlineRewriter (its ``blocked`` set is kept in step with the store);
    ``run(fn, *args)``: runs a write on the service's owner thread; ``rewrite_table``: the model's
    mined table (pyarrow), shown with support and probability. One router per page."""
    rows = sorted(rewrite_table.to_pylist(), key=lambda r: -(r.get("support") or 0)) if rewrite_table is not None else []
    ctx = Context(store, rewriter, auth, run, rows)
    router = APIRouter(include_in_schema=False)
    for page in (defects, rewrites, users, login):
        router.include_router(page.router(ctx))
    return router
