"""``selflearn serve``: the rewrite service (FastAPI). It parses requests, calls the online
rewriter and maps errors to 4xx; the rewriting itself lives in :mod:`selflearn.online`.

Handlers are ``async`` and do their (millisecond) work on the event loop, so one request or one
personal-layer update runs at a time: the rewriter's memory has a single owner, no locks."""

from __future__ import annotations

import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .. import __version__
from ..errors import InvalidInputError, SelflearnError, explain
from ..logs.schema import Turn
from ..online.rewriter import LAYERS, MAX_CHARS, OnlineRewriter
from .metrics import Metrics

__all__ = ["create_app", "RewriteRequest", "RewriteResponse"]


class Device(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Annotated[str, Field(min_length=1, max_length=64, description="Device type, e.g. 'speaker', 'phone', 'car'.")] = "unknown"
    has_screen: bool | None = Field(None, description="Whether the device can show a visual response.")
    location: Annotated[str | None, Field(max_length=200, description="A room or place.")] = None


class Context(BaseModel):
    model_config = ConfigDict(extra="allow")
    hour: Annotated[int | None, Field(ge=0, le=23, description="Local hour of the request.")] = None
    timestamp: Annotated[str | None, Field(max_length=64, description="ISO 8601 time of the request.")] = None


class RewriteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"utterance": "play we don't talk any more", "user_id": "u00042", "device": {"type": "speaker", "has_screen": False}, "context": {"hour": 20}}]})
    utterance: Annotated[str, Field(min_length=1, max_length=MAX_CHARS, pattern=r"\S", description="What ASR heard.")]
    user_id: Annotated[str, Field(min_length=1, max_length=200, description="Who spoke; an unknown user is served by the global layer.")]
    device: Device = Field(default_factory=Device)
    context: Context = Field(default_factory=Context)


class RewriteResponse(BaseModel):
    rewrite: str | None = Field(description="The request to send to NLU instead, or null to pass it through.")
    source: Literal["table", "global", "personal", "preferences"] | None = Field(
        description="Which layer rewrote it ('preferences': only what the user taught was filled in).")
    score: float | None = Field(description="The ranker's score of the best candidate (null for the table and when none was found).")


class Observed(BaseModel):
    observed: int = Field(description="Turns the personal layer has taken in since the service started.")


class Forgotten(BaseModel):
    user_id: str
    forgotten: bool


def create_app(model_dir: Path, *, layers: tuple[str, ...] = LAYERS, persist: bool = False, rewriter: OnlineRewriter | None = None,
               store: Path | None = None, admin_token: str | None = None) -> FastAPI:
    """The service over a model directory (`selflearn train online`). With ``persist`` the personal
    layer is written back to the directory (atomically) on shutdown. With ``store`` the users'
    preferences there are served and taught (/v1/users/{id}/preferences, /v1/teach) and filled into
    requests before the rewriter; and the review dashboard (/dashboard) browses its defects, reviews
    rewrites and users' preferences, with admin actions allowed to holders of ``admin_token`` only."""
    if admin_token is not None and len(admin_token) < 12:
        raise InvalidInputError(explain("admin_token", "must be at least 12 characters", "set a long random token, e.g. `openssl rand -hex 16`"))
    rw = rewriter or OnlineRewriter.load(Path(model_dir), layers=layers)
    metrics = Metrics()
    prefs = None
    if store is not None:
        from ..store.store import Store
        from ..teach import Preferences

        prefs = Preferences(Store(store))
        rw.preferences = prefs  # the personal layer fills in what each user taught

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        if persist:
            rw.personal.save(Path(model_dir) / "personal")
        if prefs is not None:
            prefs.store.close()

    app = FastAPI(title="selflearn rewrite service", version=__version__, lifespan=lifespan,
                  description="Rewrites a request before NLU: the precomputed table first, then the online global and personal layers.")
    app.state.rewriter = rw

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        metrics.errors.labels(kind="invalid_request").inc()
        problems = [_problem(e) for e in exc.errors()]
        return JSONResponse(status_code=422, content={"error": " | ".join(problems),
                                                      "detail": [{"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")} for e in exc.errors()]})

    @app.exception_handler(SelflearnError)
    async def _selflearn(request: Request, exc: SelflearnError):
        metrics.errors.labels(kind=type(exc).__name__).inc()
        return JSONResponse(status_code=400, content={"error": str(exc)})

    @app.post("/v1/rewrite", response_model=RewriteResponse, summary="Rewrite one request (or pass it through)")
    async def rewrite(req: RewriteRequest) -> RewriteResponse:
        started = time.perf_counter()
        d = rw.decide(req.utterance, user_id=req.user_id, device=req.device.model_dump(), context=req.context.model_dump(exclude_none=True))
        metrics.requests.labels(source=d.source or "none").inc()
        metrics.latency.observe(time.perf_counter() - started)
        return RewriteResponse(rewrite=d.rewrite, source=d.source, score=d.score)

    turn_schema = Turn.model_json_schema(ref_template="#/components/schemas/{model}")
    turn_defs = turn_schema.pop("$defs", {})

    @app.post("/v1/turns", response_model=Observed, summary="Feed one logged turn to the personal layer",
              openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": turn_schema}}}})
    async def turns(request: Request) -> Observed:
        # validated from the JSON text, as `selflearn import` does (strict types, ISO timestamps)
        try:
            turn = Turn.model_validate_json(await request.body())
        except ValidationError as exc:
            raise RequestValidationError(exc.errors()) from None
        rw.observe(turn.model_dump(mode="json"))
        metrics.turns.inc()
        return Observed(observed=rw.personal.observed)

    @app.get("/v1/users/{user_id}/history", summary="What the personal layer remembers about a user")
    async def history(user_id: str) -> dict:
        hist = rw.personal.history(user_id)
        if not hist:
            return JSONResponse(status_code=404, content={"error": f"user_id={user_id!r}: has no history here; fix: check the id, or send its turns to /v1/turns"})
        return {"user_id": user_id, "requests": [{"text": t, "attempts": e[0], "successes": e[1], "last_seen": e[2], "meaning": e[3]} for t, e in sorted(hist.items())]}

    @app.delete("/v1/users/{user_id}", response_model=Forgotten, summary="Forget everything about a user")
    async def forget(user_id: str):
        taught = prefs.delete(user_id) if prefs is not None else 0
        if not rw.personal.forget(user_id) and not taught:
            return JSONResponse(status_code=404, content={"error": f"user_id={user_id!r}: has no history here; fix: check the id"})
        return Forgotten(user_id=user_id, forgotten=True)

    if prefs is not None:
        from .dashboard import dashboard_router, read_model_table
        from .teach import teach_router

        app.include_router(teach_router(prefs))
        app.include_router(dashboard_router(prefs.store, rw, admin_token=admin_token, rewrite_table=read_model_table(Path(model_dir))))
    else:
        @app.get("/dashboard", include_in_schema=False)
        async def no_dashboard():
            return JSONResponse(status_code=404, content={"error": "the dashboard needs a store; fix: start `selflearn serve --store selflearn.duckdb`"})

    base_openapi = app.openapi

    def openapi() -> dict:  # the turn schema's nested models go into components
        if app.openapi_schema is None:
            spec = base_openapi()
            spec.setdefault("components", {}).setdefault("schemas", {}).update(turn_defs)
            app.openapi_schema = spec
        return app.openapi_schema

    app.openapi = openapi

    @app.get("/healthz", summary="Liveness and what is loaded")
    async def healthz() -> dict:
        g = rw.global_
        return {"status": "ok", "version": __version__, "layers": list(rw.layers), "table_rewrites": len(rw.table) if rw.table is not None else 0,
                "global_candidates": int(len(g.candidates)), "personal_users": len(rw.personal.users), "threshold": rw.threshold}

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def prometheus() -> Response:
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    return app


def _problem(e: dict) -> str:
    """One validation error as 'value: rule; fix: ...'."""
    if e.get("type") == "json_invalid":
        loc = [p for p in e.get("loc", ()) if p != "body"]
        at = f" at character {loc[-1]}" if loc else ""
        return explain(f"request body{at}", f"is not valid JSON ({e.get('msg')})", "send a JSON object as /openapi.json describes")
    where = ".".join(str(p) for p in e.get("loc", ()) if p != "body") or "body"
    if e.get("type") == "missing":
        return explain(where, "is required", "add the field (see /openapi.json)")
    value = e.get("input")
    shown = repr(value) if not isinstance(value, str) or len(value) <= 40 else f"{value[:37]!r}... ({len(value)} characters)"
    return explain(f"{where}={shown}", str(e.get("msg")).lower(), "see /openapi.json for the field's type and limits")
