"""The review dashboard in `selflearn serve --store`: browse defects and their sessions, inspect a
rewrite's evidence (the chains it came from), approve or block it (a blocked pair is never served
again, by the table or the online layers, and stays blocked across restarts: it is kept in the store),
and view or delete a user's preferences. Admin actions need the operator's token (`--admin-token`);
without one set they are refused. Pages only read and call the library; every write goes through it."""

from __future__ import annotations

import hashlib
import hmac
import time
from pathlib import Path
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from ..errors import SelflearnError
from ..report.data import store_summary
from ..rewrites.reviews import DECISIONS, Reviews, rewrite_chains
from ..rewrites.table import normalise_utterance
from ..store.store import Store
from ..teach.preferences import Preferences
from .pages import e, form, link, page, pct, table

__all__ = ["dashboard_router", "COOKIE"]

COOKIE = "selflearn_admin"
SUMMARY_TTL_S = 300.0  # the defect summary is recomputed at most this often (or on ?refresh=1)


def _digest(token: str) -> str:
    return hashlib.sha256(f"selflearn-admin:{token}".encode()).hexdigest()


def dashboard_router(store: Store, rewriter, *, admin_token: str | None, rewrite_table=None) -> APIRouter:
    """``rewriter``: the service's OnlineRewriter (its ``blocked`` set is kept in step with the store);
    ``rewrite_table``: the model's mined table (pyarrow), shown with support and probability."""
    router = APIRouter(include_in_schema=False)
    reviews, prefs = Reviews(store), Preferences(store)
    rewriter.blocked |= reviews.blocked()
    rows = sorted(rewrite_table.to_pylist(), key=lambda r: -(r.get("support") or 0)) if rewrite_table is not None else []
    cache: dict = {}

    def is_admin(request: Request) -> bool:
        if not admin_token:
            return False
        auth = request.headers.get("authorization", "")
        given = request.cookies.get(COOKIE, "")
        return hmac.compare_digest(given, _digest(admin_token)) or (auth.startswith("Bearer ") and hmac.compare_digest(auth[7:], admin_token))

    def render(request: Request, title: str, body: str, status: int = 200) -> HTMLResponse:
        return HTMLResponse(page(title, body, admin=is_admin(request), admin_enabled=bool(admin_token)), status_code=status)

    def refused(request: Request) -> HTMLResponse:
        why = ("Admin actions are off: the operator started the service without an admin token "
               "(<code>selflearn serve --admin-token ...</code> or <code>SELFLEARN_ADMIN_TOKEN</code>).") if not admin_token else \
            f"This needs the admin token: {link('/dashboard/login', 'log in')} first."
        return render(request, "Not allowed", f"<p class=note>{why}</p>", 403)

    def summary(refresh: bool = False) -> dict:
        if refresh or "s" not in cache or time.monotonic() - cache["at"] > SUMMARY_TTL_S:
            cache.update(s=store_summary(store, top=20, examples=0), at=time.monotonic())
        return cache["s"]

    @router.get("/dashboard", response_class=HTMLResponse)
    async def home(request: Request, refresh: bool = False):
        try:
            s = summary(refresh)
        except SelflearnError as exc:
            return render(request, "Defects", f"<p class=empty>{e(exc)}</p>")
        cards = "".join(f"<div class=card><b>{v}</b>{e(k)}</div>" for k, v in (
            ("turns", f"{s['turns']:,}"), ("sessions", f"{s['sessions']:,}"), ("users", f"{s['users']:,}"), ("defect rate", pct(s["defect_rate"])),
            ("rewrites blocked", len(rewriter.blocked))))
        top = [[e(d["request"]) or "<span class=muted>(nothing heard)</span>", e(d["intent"]), str(d["defects"]), str(d["turns"]),
                link("/dashboard/sessions", "sessions", q=d["request"])] for d in s["top_defects"]]
        intents = [[e(r["key"]), str(r["turns"]), pct(r["defect_rate"])] for r in s["by_intent"]]
        return render(request, "Defects", f"<div class=cards>{cards}</div><p class=muted>Defect: a turn whose defect score (feedback signals) is at "
                      f"least 0.5. {link('/dashboard', 'refresh', refresh='1')}</p><h2>Most frequent defects</h2>"
                      + table(["request (as heard)", "intent understood", "defects", "turns", ""], top, empty="No defects.", numeric=(2, 3))
                      + "<h2>By intent (busiest)</h2>" + table(["intent", "turns", "defect rate"], intents, empty="No turns.", numeric=(1, 2)))

    @router.get("/dashboard/sessions", response_class=HTMLResponse)
    async def sessions(request: Request, q: str = "", limit: int = 20):
        q = normalise_utterance(q)
        summary()  # the signals are computed
        rows = store.reader().execute(
            """SELECT t.session_id, max(s.defect_score) AS worst FROM turns t JOIN signals s USING (session_id, turn_index)
               WHERE lower(trim(t.asr_text)) = ? GROUP BY 1 ORDER BY worst DESC, 1 LIMIT ?""", [q, max(1, min(limit, 200))]).fetchall()
        body = table(["session", "defect score of the request (highest)"],
                     [[link(f"/dashboard/sessions/{i}", i), f"{w:.2f}"] for i, w in rows], empty="No session has this request.", numeric=(1,))
        return render(request, f"Sessions with “{q}”", "<p class=muted>Where the request failed first.</p>" + body)

    @router.get("/dashboard/sessions/{session_id}", response_class=HTMLResponse)
    async def session(request: Request, session_id: str):
        return render(request, f"Session {session_id}", _transcript(store, session_id))

    @router.get("/dashboard/rewrites", response_class=HTMLResponse)
    async def rewrites(request: Request, q: str = "", limit: int = 50):
        decided = {(r.utterance, r.rewrite): r.decision for r in reviews.list()}
        shown = [r for r in rows if not q or q.lower() in str(r["utterance"]).lower() or q.lower() in str(r["rewrite"]).lower()][: max(1, min(limit, 500))]
        body = (f"<form method=get action='/dashboard/rewrites'><input name=q value='{e(q)}' placeholder='find a request'> <button>Find</button></form>"
                + table(["request", "rewrite", "success probability", "support", "review", ""],
                        [[e(r["utterance"]), e(r["rewrite"]), pct(r.get("probability")), str(r.get("support", "")),
                          _tag(decided.get((normalise_utterance(r["utterance"]), normalise_utterance(r["rewrite"])))),
                          link("/dashboard/rewrites/evidence", "evidence", utterance=r["utterance"], rewrite=r["rewrite"])] for r in shown],
                        empty="No rewrite table in this model, or nothing matches.", numeric=(2, 3)))
        extra = [[e(r.utterance), e(r.rewrite), _tag(r.decision), e(r.reviewer), e(r.decided_at.strftime("%Y-%m-%d %H:%M")),
                  link("/dashboard/rewrites/evidence", "evidence", utterance=r.utterance, rewrite=r.rewrite)] for r in reviews.list()]
        return render(request, "Rewrites", body + "<h2>Reviewed</h2>" + table(["request", "rewrite", "review", "by", "when", ""], extra,
                                                                              empty="No rewrite reviewed yet."))

    @router.get("/dashboard/rewrites/evidence", response_class=HTMLResponse)
    async def evidence(request: Request, utterance: str, rewrite: str):
        u, r = normalise_utterance(utterance), normalise_utterance(rewrite)
        row = next((x for x in rows if normalise_utterance(x["utterance"]) == u and normalise_utterance(x["rewrite"]) == r), None)
        rev = reviews.get(u, r)
        facts = (f"<p>Success probability {pct(row.get('probability'))}, support {row.get('support')} turns, "
                 f"{row.get('rephrase_support', '—')} followed by a rephrase.</p>" if row else "<p class=muted>Not in the model's mined table.</p>")
        status = f"<p>Review: {_tag(rev.decision if rev else None)}" + (f" by {e(rev.reviewer)} at {e(rev.decided_at.strftime('%Y-%m-%d %H:%M'))}" if rev else "") + "</p>"
        fields = {"utterance": u, "rewrite": r}
        actions = (form("/dashboard/rewrites/review", {**fields, "decision": "blocked"}, "Block", cls="block") + " "
                   + form("/dashboard/rewrites/review", {**fields, "decision": "approved"}, "Approve", cls="approve") + " "
                   + form("/dashboard/rewrites/review", {**fields, "decision": "undo"}, "Undo review"))
        chains = rewrite_chains(store, u, r, limit=5)
        ev = "".join(f"<h2>{link(f'/dashboard/sessions/{sid}', f'Session {sid}')}</h2>{_transcript(store, sid)}" for sid in chains) or \
            "<p class=empty>No session in this store where the request was followed by the rewrite.</p>"
        return render(request, f"“{u}” → “{r}”", facts + status + f"<p>{actions}</p><h2>Evidence: the chains it came from</h2>" + ev)

    @router.post("/dashboard/rewrites/review")
    async def review(request: Request, utterance: str = Form(...), rewrite: str = Form(...), decision: str = Form(...)):
        if not is_admin(request):
            return refused(request)
        try:
            if decision == "undo":
                reviews.undo(utterance, rewrite)
            elif decision in DECISIONS:
                reviews.decide(utterance, rewrite, decision, reviewer="admin")
            else:
                return render(request, "Bad request", f"<p class=note>decision={e(decision)}: must be blocked, approved or undo</p>", 400)
        except SelflearnError as exc:
            return render(request, "Bad request", f"<p class=note>{e(exc)}</p>", 400)
        pair = (normalise_utterance(utterance), normalise_utterance(rewrite))
        if decision == "blocked":
            rewriter.blocked.add(pair)
        else:
            rewriter.blocked.discard(pair)
        return RedirectResponse(f"/dashboard/rewrites/evidence?{urlencode({'utterance': pair[0], 'rewrite': pair[1]})}", status_code=303)

    @router.get("/dashboard/users", response_class=HTMLResponse)
    async def users(request: Request, user_id: str = ""):
        if user_id:
            return RedirectResponse(f"/dashboard/users/{user_id}", status_code=303)
        return render(request, "Users", "<form method=get action='/dashboard/users'><input name=user_id placeholder='user id'> <button>Show</button></form>"
                      "<p class=muted>What a user taught the assistant, and how to forget it.</p>")

    @router.get("/dashboard/users/{user_id}", response_class=HTMLResponse)
    async def user(request: Request, user_id: str):
        try:
            known = prefs.list(user_id)
        except SelflearnError as exc:
            return render(request, "Users", f"<p class=note>{e(exc)}</p>", 400)
        act = f"/dashboard/users/{user_id}/forget"
        body = table(["kind", "name", "value", "provenance", "updated", ""],
                     [[e(p.kind), e(p.key), e(p.value), e(p.provenance), e(p.updated_at.strftime("%Y-%m-%d %H:%M")),
                       form(act, {"kind": p.kind, "key": p.key}, "Delete", cls="block")] for p in known],
                     empty="Nothing is remembered about this user.")
        return render(request, f"User {user_id}", body + (f"<p>{form(act, {}, 'Forget everything', cls='block')}</p>" if known else ""))

    @router.post("/dashboard/users/{user_id}/forget")
    async def forget(request: Request, user_id: str, kind: str | None = Form(None), key: str | None = Form(None)):
        if not is_admin(request):
            return refused(request)
        try:
            prefs.delete(user_id, kind or None, key if kind else None)
        except SelflearnError as exc:
            return render(request, "Bad request", f"<p class=note>{e(exc)}</p>", 400)
        return RedirectResponse(f"/dashboard/users/{user_id}", status_code=303)

    @router.get("/dashboard/login", response_class=HTMLResponse)
    async def login_page(request: Request, next: str = "/dashboard"):
        if not admin_token:
            return refused(request)
        return render(request, "Admin log in", f"<form method=post action='/dashboard/login'><input type=hidden name=next value='{e(_local(next))}'>"
                      "<input type=password name=token placeholder='admin token' autocomplete=current-password> <button>Log in</button></form>")

    @router.post("/dashboard/login")
    async def login(request: Request, token: str = Form(""), next: str = Form("/dashboard")):
        if not admin_token or not hmac.compare_digest(token, admin_token):
            return render(request, "Admin log in", "<p class=note>That is not the admin token.</p>" + (
                f"<p>{link('/dashboard/login', 'try again')}</p>" if admin_token else ""), 403)
        resp = RedirectResponse(_local(next), status_code=303)
        resp.set_cookie(COOKIE, _digest(admin_token), httponly=True, samesite="strict", path="/dashboard")
        return resp

    @router.get("/dashboard/logout")
    async def logout():
        resp = RedirectResponse("/dashboard", status_code=303)
        resp.delete_cookie(COOKIE, path="/dashboard")
        return resp

    return router


def _local(path: str) -> str:
    """Only redirect within the dashboard."""
    return path if path.startswith("/dashboard") and "//" not in path else "/dashboard"


def _tag(decision: str | None) -> str:
    return f"<span class='tag {e(decision)}'>{e(decision)}</span>" if decision else "<span class=muted>not reviewed</span>"


def _transcript(store: Store, session_id: str) -> str:
    score = "s.defect_score" if store.has_table("signals") else "NULL"
    join = "LEFT JOIN signals s USING (session_id, turn_index)" if store.has_table("signals") else ""
    rows = store.reader().execute(
        f"""SELECT t.turn_index, strftime(t.ts, '%H:%M:%S'), t.asr_text, t.intent, t.response_status, coalesce(t.response_text, ''), t.barge_in,
                   t.explicit_feedback, json_extract_string(t.extra, '$.utterance.rewrite'), {score}
            FROM turns t {join} WHERE t.session_id = ? ORDER BY t.turn_index""", [session_id]).fetchall()
    return table(["#", "time", "user said", "rewritten to", "intent", "assistant", "feedback", "defect score"],
                 [[str(i), e(ts), e(text), e(rw or ""), e(intent), e(reply), ("barge-in " if barge else "") + e(fb or ""),
                   "—" if sc is None else f"{sc:.2f}"]
                  for i, ts, text, intent, _status, reply, barge, fb, rw, sc in rows], empty=f"No session {session_id} in this store.", numeric=(0, 7))


def read_model_table(model_dir: Path):
    """The model's mined table, or None when it has none."""
    p = Path(model_dir) / "rewrites.parquet"
    if not p.exists():
        return None
    from ..report.html import read_rewrite_table

    return read_rewrite_table(p)
