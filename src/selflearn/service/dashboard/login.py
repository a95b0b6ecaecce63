"""Logging in with an admin API key (a signed, expiring session cookie) and out."""

from __future__ import annotations

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from ..security import COOKIE, same_origin
from .common import Context, local_path

__all__ = ["router"]


def router(ctx: Context) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/dashboard/login", response_class=HTMLResponse)
    async def login_page(request: Request, next: str = "/dashboard"):
        return ctx.page(request, "dashboard/login.html", "Log in", next=local_path(next), hours=f"{ctx.auth.max_age_s / 3600:g}")

    @router.post("/dashboard/login")
    async def login(request: Request, token: str = Form(""), next: str = Form("/dashboard")):
        cookie = ctx.auth.login(token) if same_origin(request) else None
        if cookie is None:
            return ctx.page(request, "dashboard/login.html", "Log in", status=403, next=local_path(next), hours=f"{ctx.auth.max_age_s / 3600:g}",
                        notes=["That is not an admin API key (or the form did not come from this page)."])
        resp = RedirectResponse(local_path(next), status_code=303)
        resp.set_cookie(COOKIE, cookie, max_age=ctx.auth.max_age_s, httponly=True, samesite="strict", path="/dashboard",
                        secure=request.url.scheme == "https")
        return resp

    @router.post("/dashboard/logout")
    async def logout(request: Request, csrf: str | None = Form(None)):
        ctx.form_ok(request, csrf)
        resp = RedirectResponse("/dashboard/login", status_code=303)
        resp.delete_cookie(COOKIE, path="/dashboard")
        return resp

    return router
