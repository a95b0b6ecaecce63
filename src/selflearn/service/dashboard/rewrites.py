"""The rewrites pages: the mined table with reviews, a rewrite's evidence (the chains it came from), approving or blocking it."""

from __future__ import annotations

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from ...errors import SelflearnError, explain
from ...report.data import session_turns
from ...rewrites.reviews import DECISIONS, rewrite_chains
from ...templating import Button, Link, Section, Tag, clip, href, pct
from ...text import normalise
from .common import TRANSCRIPT, Context, transcript_rows

__all__ = ["router"]


def router(ctx: Context) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/dashboard/rewrites", response_class=HTMLResponse)
    async def rewrites(request: Request, q: str = "", limit: int = 50):
        ctx.admin(request)
        listed = await ctx.reader.run(ctx.reviews.list)
        decided = {(r.utterance, r.rewrite): r.decision for r in listed}
        ql = q.lower()
        shown = [r for r in ctx.rows if not q or ql in str(r["utterance"]).lower() or ql in str(r["rewrite"]).lower()][: max(1, min(limit, 500))]
        mined = [[clip(r["utterance"]), clip(r["rewrite"]), pct(r.get("probability")), r.get("support", ""),
                  Tag(decided.get((normalise(r["utterance"]), normalise(r["rewrite"])))),
                  Link(href("/dashboard/rewrites/evidence", utterance=r["utterance"], rewrite=r["rewrite"]), "evidence")] for r in shown]
        done = [[clip(r.utterance), clip(r.rewrite), Tag(r.decision), r.reviewer, f"{r.decided_at:%Y-%m-%d %H:%M}",
                 Link(href("/dashboard/rewrites/evidence", utterance=r.utterance, rewrite=r.rewrite), "evidence")] for r in listed]
        tables = [Section(headers=["request", "rewrite", "success probability", "support", "review", ""], rows=mined, numeric=(2, 3),
                          empty="No rewrite table in this model, or nothing matches."),
                  Section(heading="Reviewed", headers=["request", "rewrite", "review", "by", "when", ""], rows=done, empty="No rewrite reviewed yet.")]
        search = {"action": "/dashboard/rewrites", "name": "q", "value": q, "placeholder": "find a request", "button": "Find"}
        return ctx.page(request, "dashboard/table.html", "Rewrites", intro="", search=search, tables=tables)

    @router.get("/dashboard/rewrites/evidence", response_class=HTMLResponse)
    async def evidence(request: Request, utterance: str, rewrite: str):
        ctx.admin(request)
        if (wait := await ctx.needs_summary(request)) is not None:
            return wait
        u, r = normalise(utterance), normalise(rewrite)
        row = next((x for x in ctx.rows if normalise(x["utterance"]) == u and normalise(x["rewrite"]) == r), None)

        def read():
            chains = rewrite_chains(ctx.store, u, r, limit=5)
            return ctx.reviews.get(u, r), [(c.session_id, session_turns(ctx.reader.con, c.session_id)) for c in chains]

        rev, chains = await ctx.reader.run(read)
        facts = (f"Success probability {pct(row.get('probability'))}, support {row.get('support')} turns, "
                 f"{row.get('rephrase_support', '—')} followed by a rephrase." if row else "Not in the model's mined table.")
        status = f"Review: {rev.decision if rev else 'not reviewed'}" + (f" by {rev.reviewer} at {rev.decided_at:%Y-%m-%d %H:%M}" if rev else "")
        fields = {"utterance": u, "rewrite": r}
        actions = [Button("/dashboard/rewrites/review", {**fields, "decision": "blocked"}, "Block", "block"),
                   Button("/dashboard/rewrites/review", {**fields, "decision": "approved"}, "Approve", "approve"),
                   Button("/dashboard/rewrites/review", {**fields, "decision": "undo"}, "Undo review")]
        tables = [Section(text=facts), Section(text=status, buttons=tuple(actions)),
                  Section(heading="Evidence: the chains it came from", empty="" if chains else "No session in this store where the request was followed by the rewrite.")]
        tables += [Section(heading=f"Session {clip(sid, 80)}", heading_link=href("/dashboard/sessions", sid), headers=TRANSCRIPT,
                           rows=transcript_rows(turns), numeric=(0, 7), empty="No turns.") for sid, turns in chains]
        return ctx.page(request, "dashboard/table.html", f"“{clip(u, 80)}” → “{clip(r, 80)}”", intro="", search=None, tables=tables)

    @router.post("/dashboard/rewrites/review")
    async def review(request: Request, utterance: str = Form(...), rewrite: str = Form(...), decision: str = Form(...), csrf: str | None = Form(None)):
        ctx.form_ok(request, csrf)
        s = ctx.auth.session(request)
        who = s.key.name if s else (ctx.auth.caller(request).name if ctx.auth.caller(request) else "admin")
        if decision != "undo" and decision not in DECISIONS:
            return ctx.page(request, "dashboard/message.html", "Bad request", status=400, link=None,
                        notes=[explain(f"decision={decision!r}", "must be blocked, approved or undo", "use the page's buttons")])
        pair = (normalise(utterance), normalise(rewrite))

        def write():
            if decision == "undo":
                ctx.reviews.undo(utterance, rewrite)
                ctx.rewriter.blocked.discard(pair)
            else:
                ctx.reviews.decide(utterance, rewrite, decision, reviewer=who)
                (ctx.rewriter.blocked.add if decision == "blocked" else ctx.rewriter.blocked.discard)(pair)

        try:
            await ctx.run(write)
        except SelflearnError as exc:
            return ctx.page(request, "dashboard/message.html", "Bad request", status=400, notes=[str(exc)], link=None)
        return RedirectResponse(href("/dashboard/rewrites/evidence", utterance=pair[0], rewrite=pair[1]), status_code=303)

    return router
