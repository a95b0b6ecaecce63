"""The defects pages: the store's defect summary (and recomputing it), sessions of a request, one session."""

from __future__ import annotations

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse

from ...report.data import session_turns, sessions_with_request
from ...templating import Link, Muted, Section, clip, href, pct
from ...text import normalise
from .common import TRANSCRIPT, Context, transcript_rows

__all__ = ["router"]


def dp_card(rewriter) -> str:
    """What the served model spent in differential privacy (its encoder adapter and ranker together)."""
    p = getattr(rewriter, "dp", None)
    return f"ε = {p['epsilon']:g}, δ = {p['delta']:.1e} ({p.get('trained_with_dp', '')})" if p and p.get("epsilon") is not None else "no DP"


def router(ctx: Context) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/dashboard", response_class=HTMLResponse)
    async def home(request: Request):
        ctx.admin(request)
        if (wait := await ctx.needs_summary(request)) is not None:
            return wait
        s = ctx.reader.summary
        if s is None:
            return ctx.page(request, "dashboard/home.html", "Defects", s=None, empty=ctx.reader.error or "No summary.")
        cards = [("turns", f"{s['turns']:,}"), ("sessions", f"{s['sessions']:,}"), ("users", f"{s['users']:,}"),
                 ("defect rate", pct(s["defect_rate"])), ("rewrites blocked", len(ctx.rewriter.blocked)),
                 ("model privacy", dp_card(ctx.rewriter)), ("k (users behind a shared text)", s.get("min_users", "-"))]
        top = [[clip(d["request"]) or Muted("(nothing heard)"), d["intent"] or "", d["defects"], d["turns"],
                Link(href("/dashboard/sessions", q=d["request"]), "sessions")] for d in s["top_defects"]]
        intents = [[r["key"], r["turns"], pct(r["defect_rate"])] for r in s["by_intent"]]
        return ctx.page(request, "dashboard/home.html", "Defects", s=s, cards=cards, top=top, intents=intents,
                    computed=f"{ctx.reader.computed_at:%Y-%m-%d %H:%M:%S} UTC")

    @router.post("/dashboard/refresh")
    async def refresh(request: Request, csrf: str | None = Form(None)):
        ctx.form_ok(request, csrf)
        note = ctx.reader.refresh(force=True)
        return ctx.page(request, "dashboard/message.html", "Recompute", notes=[note or "Started."], link=("/dashboard", "back to the defects"))

    @router.get("/dashboard/sessions", response_class=HTMLResponse)
    async def sessions(request: Request, q: str = "", limit: int = 20):
        ctx.admin(request)
        if (wait := await ctx.needs_summary(request)) is not None:
            return wait
        q = normalise(q)
        found = await ctx.reader.run(sessions_with_request, ctx.reader.con, q, limit)
        table = Section(headers=["session", "defect score of the request (highest)"], numeric=(1,), empty="No session has this request.",
                        rows=[[Link(href("/dashboard/sessions", i), clip(i, 80)), f"{w:.2f}"] for i, w in found])
        return ctx.page(request, "dashboard/table.html", f"Sessions with “{clip(q, 80)}”", intro="Where the request failed first.", search=None, tables=[table])

    @router.get("/dashboard/sessions/{session_id:path}", response_class=HTMLResponse)  # an id may hold a "/" (sent as %2F)
    async def session(request: Request, session_id: str):
        ctx.admin(request)
        turns = await ctx.reader.run(session_turns, ctx.reader.con, session_id)
        table = Section(headers=TRANSCRIPT, rows=transcript_rows(turns), numeric=(0, 7), empty=f"No session {clip(session_id, 80)} in this store.")
        return ctx.page(request, "dashboard/table.html", f"Session {clip(session_id, 80)}", intro="", search=None, tables=[table])

    return router
