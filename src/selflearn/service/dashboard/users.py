"""The users pages: what a user taught the assistant, and forgetting it."""

from __future__ import annotations

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from ...errors import SelflearnError
from ...templating import Button, Section, clip, href
from .common import Context

__all__ = ["router"]


def router(ctx: Context) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/dashboard/users", response_class=HTMLResponse)
    async def users(request: Request, user_id: str = ""):
        ctx.admin(request)
        if user_id:
            return RedirectResponse(href("/dashboard/users", user_id), status_code=303)
        search = {"action": "/dashboard/users", "name": "user_id", "value": "", "placeholder": "user id", "button": "Show"}
        return ctx.page(request, "dashboard/table.html", "Users", intro="What a user taught the assistant, and how to forget it.", search=search, tables=[])

    @router.get("/dashboard/users/{user_id:path}", response_class=HTMLResponse)
    async def user(request: Request, user_id: str):
        ctx.admin(request)
        try:
            known = await ctx.reader.run(ctx.prefs.list, user_id)
        except SelflearnError as exc:
            return ctx.page(request, "dashboard/message.html", "Users", status=400, notes=[str(exc)], link=None)
        act = href("/dashboard/users", user_id, "forget")
        table = Section(headers=["kind", "name", "value", "provenance", "updated", ""],
                        rows=[[p.kind, clip(p.key), clip(p.value), p.provenance, f"{p.updated_at:%Y-%m-%d %H:%M}",
                               Button(act, {"kind": p.kind, "key": p.key}, "Delete", "block")] for p in known],
                        empty="Nothing is remembered about this user.", buttons=(Button(act, {}, "Forget everything", "block"),) if known else ())
        return ctx.page(request, "dashboard/table.html", f"User {clip(user_id, 80)}", intro="", search=None, tables=[table])

    @router.post("/dashboard/users/{user_id:path}/forget")
    async def forget(request: Request, user_id: str, kind: str | None = Form(None), key: str | None = Form(None), csrf: str | None = Form(None)):
        ctx.form_ok(request, csrf)
        try:
            await ctx.run(ctx.prefs.delete, user_id, kind or None, key if kind else None)
        except SelflearnError as exc:
            return ctx.page(request, "dashboard/message.html", "Bad request", status=400, notes=[str(exc)], link=None)
        return RedirectResponse(href("/dashboard/users", user_id), status_code=303)

    return router
