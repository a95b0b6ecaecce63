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

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from ..errors import NotAuthorizedError, SelflearnError, explain
from ..text import normalise
from ..report.data import session_turns, sessions_with_request, store_summary
from ..rewrites.reviews import DECISIONS, Reviews, rewrite_chains

from ..store.store import Store
from ..teach.preferences import Preferences
from ..templating import Button, Link, Muted, Section, Tag, clip, href, pct, render
from .security import COOKIE, Auth, same_origin

__all__ = ["dashboard_router", "refused_page", "read_model_table", "SUMMARY_TTL_S", "MIN_REFRESH_S"]

SUMMARY_TTL_S = 300.0  # a summary older than this is recomputed in the background when a page is shown
MIN_REFRESH_S = 30.0  # "Recompute now" at most this often
NAV = (("/dashboard", "Defects"), ("/dashboard/rewrites", "Rewrites"), ("/dashboard/users", "Users"))


def _page(request: Request, auth: Auth, template: str, title: str, *, status: int = 200, notes=(), refresh_s: int = 0, **values) -> HTMLResponse:
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
    return _page(request, auth, "dashboard/message.html", "Not allowed", status=403 if exc.authenticated else 401, notes=[str(exc)],
                 link=("/dashboard/login", "log in"))


def _transcript_rows(turns: list[dict]) -> list[list]:
    return [[t["turn_index"], t["ts"], clip(t["request"]), clip(t["rewrite"] or ""), t["intent"] or "", clip(t["reply"]),
             ("barge-in " if t["barge_in"] else "") + (t["feedback"] or ""), "—" if t["defect_score"] is None else f"{t['defect_score']:.2f}"]
            for t in turns]


TRANSCRIPT = ["#", "time", "user said", "rewritten to", "intent", "assistant", "feedback", "defect score"]


class _Reader:
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
            self.summary, self.error = store_summary(self.store, con=self.con, top=20, examples=0), None
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


def dashboard_router(store: Store, rewriter, *, auth: Auth, run, rewrite_table=None) -> APIRouter:
    """``rewriter``: the service's OnlineRewriter (its ``blocked`` set is kept in step with the store);
    ``run(fn, *args)``: runs a write on the service's owner thread; ``rewrite_table``: the model's
    mined table (pyarrow), shown with support and probability."""
    router = APIRouter(include_in_schema=False)
    reviews, prefs = Reviews(store), Preferences(store)
    rewriter.blocked |= reviews.blocked()
    rows = sorted(rewrite_table.to_pylist(), key=lambda r: -(r.get("support") or 0)) if rewrite_table is not None else []
    reader = _Reader(store)

    def admin(request: Request):
        auth.require(request, "admin")

    def form_ok(request: Request, csrf: str | None):
        s = auth.session(request)
        if s is None:
            auth.require(request, "admin")  # an API key (no cookie, so no CSRF): fine; nobody at all: refused
            return
        auth.check_form(request, s, csrf)

    def page(request: Request, template: str, title: str, **values) -> HTMLResponse:
        return _page(request, auth, template, title, **values)

    async def needs_summary(request: Request):
        """The page to show while the first summary is computed, or None once there is one."""
        reader.refresh()  # a stale summary is recomputed in the background; the page shows the last one
        if reader.ready():
            return None
        return page(request, "dashboard/message.html", "Computing", notes=["Computing the defect summary of this store in the background; "
                                                                             "this page reloads by itself."], refresh_s=3, link=None)

    @router.get("/dashboard", response_class=HTMLResponse)
    async def home(request: Request):
        admin(request)
        if (wait := await needs_summary(request)) is not None:
            return wait
        s = reader.summary
        if s is None:
            return page(request, "dashboard/home.html", "Defects", s=None, empty=reader.error or "No summary.")
        cards = [("turns", f"{s['turns']:,}"), ("sessions", f"{s['sessions']:,}"), ("users", f"{s['users']:,}"),
                 ("defect rate", pct(s["defect_rate"])), ("rewrites blocked", len(rewriter.blocked))]
        top = [[clip(d["request"]) or Muted("(nothing heard)"), d["intent"] or "", d["defects"], d["turns"],
                Link(href("/dashboard/sessions", q=d["request"]), "sessions")] for d in s["top_defects"]]
        intents = [[r["key"], r["turns"], pct(r["defect_rate"])] for r in s["by_intent"]]
        return page(request, "dashboard/home.html", "Defects", s=s, cards=cards, top=top, intents=intents,
                    computed=f"{reader.computed_at:%Y-%m-%d %H:%M:%S} UTC")

    @router.post("/dashboard/refresh")
    async def refresh(request: Request, csrf: str | None = Form(None)):
        form_ok(request, csrf)
        note = reader.refresh(force=True)
        return page(request, "dashboard/message.html", "Recompute", notes=[note or "Started."], link=("/dashboard", "back to the defects"))

    @router.get("/dashboard/sessions", response_class=HTMLResponse)
    async def sessions(request: Request, q: str = "", limit: int = 20):
        admin(request)
        if (wait := await needs_summary(request)) is not None:
            return wait
        q = normalise(q)
        found = await reader.run(sessions_with_request, reader.con, q, limit)
        table = Section(headers=["session", "defect score of the request (highest)"], numeric=(1,), empty="No session has this request.",
                        rows=[[Link(href("/dashboard/sessions", i), clip(i, 80)), f"{w:.2f}"] for i, w in found])
        return page(request, "dashboard/table.html", f"Sessions with “{clip(q, 80)}”", intro="Where the request failed first.", search=None, tables=[table])

    @router.get("/dashboard/sessions/{session_id:path}", response_class=HTMLResponse)  # an id may hold a "/" (sent as %2F)
    async def session(request: Request, session_id: str):
        admin(request)
        turns = await reader.run(session_turns, reader.con, session_id)
        table = Section(headers=TRANSCRIPT, rows=_transcript_rows(turns), numeric=(0, 7), empty=f"No session {clip(session_id, 80)} in this store.")
        return page(request, "dashboard/table.html", f"Session {clip(session_id, 80)}", intro="", search=None, tables=[table])

    @router.get("/dashboard/rewrites", response_class=HTMLResponse)
    async def rewrites(request: Request, q: str = "", limit: int = 50):
        admin(request)
        listed = await reader.run(reviews.list)
        decided = {(r.utterance, r.rewrite): r.decision for r in listed}
        ql = q.lower()
        shown = [r for r in rows if not q or ql in str(r["utterance"]).lower() or ql in str(r["rewrite"]).lower()][: max(1, min(limit, 500))]
        mined = [[clip(r["utterance"]), clip(r["rewrite"]), pct(r.get("probability")), r.get("support", ""),
                  Tag(decided.get((normalise(r["utterance"]), normalise(r["rewrite"])))),
                  Link(href("/dashboard/rewrites/evidence", utterance=r["utterance"], rewrite=r["rewrite"]), "evidence")] for r in shown]
        done = [[clip(r.utterance), clip(r.rewrite), Tag(r.decision), r.reviewer, f"{r.decided_at:%Y-%m-%d %H:%M}",
                 Link(href("/dashboard/rewrites/evidence", utterance=r.utterance, rewrite=r.rewrite), "evidence")] for r in listed]
        tables = [Section(headers=["request", "rewrite", "success probability", "support", "review", ""], rows=mined, numeric=(2, 3),
                          empty="No rewrite table in this model, or nothing matches."),
                  Section(heading="Reviewed", headers=["request", "rewrite", "review", "by", "when", ""], rows=done, empty="No rewrite reviewed yet.")]
        search = {"action": "/dashboard/rewrites", "name": "q", "value": q, "placeholder": "find a request", "button": "Find"}
        return page(request, "dashboard/table.html", "Rewrites", intro="", search=search, tables=tables)

    @router.get("/dashboard/rewrites/evidence", response_class=HTMLResponse)
    async def evidence(request: Request, utterance: str, rewrite: str):
        admin(request)
        if (wait := await needs_summary(request)) is not None:
            return wait
        u, r = normalise(utterance), normalise(rewrite)
        row = next((x for x in rows if normalise(x["utterance"]) == u and normalise(x["rewrite"]) == r), None)

        def read():
            chains = rewrite_chains(store, u, r, limit=5)
            return reviews.get(u, r), [(c.session_id, session_turns(reader.con, c.session_id)) for c in chains]

        rev, chains = await reader.run(read)
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
                           rows=_transcript_rows(turns), numeric=(0, 7), empty="No turns.") for sid, turns in chains]
        return page(request, "dashboard/table.html", f"“{clip(u, 80)}” → “{clip(r, 80)}”", intro="", search=None, tables=tables)

    @router.post("/dashboard/rewrites/review")
    async def review(request: Request, utterance: str = Form(...), rewrite: str = Form(...), decision: str = Form(...), csrf: str | None = Form(None)):
        form_ok(request, csrf)
        s = auth.session(request)
        who = s.key.name if s else (auth.caller(request).name if auth.caller(request) else "admin")
        if decision != "undo" and decision not in DECISIONS:
            return page(request, "dashboard/message.html", "Bad request", status=400, link=None,
                        notes=[explain(f"decision={decision!r}", "must be blocked, approved or undo", "use the page's buttons")])
        pair = (normalise(utterance), normalise(rewrite))

        def write():
            if decision == "undo":
                reviews.undo(utterance, rewrite)
                rewriter.blocked.discard(pair)
            else:
                reviews.decide(utterance, rewrite, decision, reviewer=who)
                (rewriter.blocked.add if decision == "blocked" else rewriter.blocked.discard)(pair)

        try:
            await run(write)
        except SelflearnError as exc:
            return page(request, "dashboard/message.html", "Bad request", status=400, notes=[str(exc)], link=None)
        return RedirectResponse(href("/dashboard/rewrites/evidence", utterance=pair[0], rewrite=pair[1]), status_code=303)

    @router.get("/dashboard/users", response_class=HTMLResponse)
    async def users(request: Request, user_id: str = ""):
        admin(request)
        if user_id:
            return RedirectResponse(href("/dashboard/users", user_id), status_code=303)
        search = {"action": "/dashboard/users", "name": "user_id", "value": "", "placeholder": "user id", "button": "Show"}
        return page(request, "dashboard/table.html", "Users", intro="What a user taught the assistant, and how to forget it.", search=search, tables=[])

    @router.get("/dashboard/users/{user_id:path}", response_class=HTMLResponse)
    async def user(request: Request, user_id: str):
        admin(request)
        try:
            known = await reader.run(prefs.list, user_id)
        except SelflearnError as exc:
            return page(request, "dashboard/message.html", "Users", status=400, notes=[str(exc)], link=None)
        act = href("/dashboard/users", user_id, "forget")
        table = Section(headers=["kind", "name", "value", "provenance", "updated", ""],
                        rows=[[p.kind, clip(p.key), clip(p.value), p.provenance, f"{p.updated_at:%Y-%m-%d %H:%M}",
                               Button(act, {"kind": p.kind, "key": p.key}, "Delete", "block")] for p in known],
                        empty="Nothing is remembered about this user.", buttons=(Button(act, {}, "Forget everything", "block"),) if known else ())
        return page(request, "dashboard/table.html", f"User {clip(user_id, 80)}", intro="", search=None, tables=[table])

    @router.post("/dashboard/users/{user_id:path}/forget")
    async def forget(request: Request, user_id: str, kind: str | None = Form(None), key: str | None = Form(None), csrf: str | None = Form(None)):
        form_ok(request, csrf)
        try:
            await run(prefs.delete, user_id, kind or None, key if kind else None)
        except SelflearnError as exc:
            return page(request, "dashboard/message.html", "Bad request", status=400, notes=[str(exc)], link=None)
        return RedirectResponse(href("/dashboard/users", user_id), status_code=303)

    @router.get("/dashboard/login", response_class=HTMLResponse)
    async def login_page(request: Request, next: str = "/dashboard"):
        return page(request, "dashboard/login.html", "Log in", next=_local(next), hours=f"{auth.max_age_s / 3600:g}")

    @router.post("/dashboard/login")
    async def login(request: Request, token: str = Form(""), next: str = Form("/dashboard")):
        cookie = auth.login(token) if same_origin(request) else None
        if cookie is None:
            return page(request, "dashboard/login.html", "Log in", status=403, next=_local(next), hours=f"{auth.max_age_s / 3600:g}",
                        notes=["That is not an admin API key (or the form did not come from this page)."])
        resp = RedirectResponse(_local(next), status_code=303)
        resp.set_cookie(COOKIE, cookie, max_age=auth.max_age_s, httponly=True, samesite="strict", path="/dashboard",
                        secure=request.url.scheme == "https")
        return resp

    @router.post("/dashboard/logout")
    async def logout(request: Request, csrf: str | None = Form(None)):
        form_ok(request, csrf)
        resp = RedirectResponse("/dashboard/login", status_code=303)
        resp.delete_cookie(COOKIE, path="/dashboard")
        return resp

    return router


def _local(path: str) -> str:
    """Only redirect within the dashboard."""
    return path if path.startswith("/dashboard") and "//" not in path and "\\" not in path else "/dashboard"


def read_model_table(model_dir: Path):
    """The model's mined table, or None when it has none."""
    p = Path(model_dir) / "rewrites.parquet"
    if not p.exists():
        return None
    from ..report.html import read_rewrite_table

    return read_rewrite_table(p)
