"""``selflearn online serve``: the rewrite service (FastAPI). It parses requests, checks who is calling,
queues the work for the one thread that owns the rewriter and the store, and maps errors to 4xx/503 in
one place; the rewriting itself lives in :mod:`selflearn.online`. docs/security.md is the threat model."""

from __future__ import annotations

import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .. import __version__
from ..errors import InvalidInputError, NotAuthorizedError, OverloadedError, SelflearnError, TooLargeError, explain
from ..logs.schema import Turn
from ..online.online_rewriter import LAYERS, MAX_CHARS, OnlineRewriter
from .guard import DEFAULT_MAX_BODY, RequestGuard
from .keys import KeyRing
from .metrics import Metrics
from .owner import Owner
from .security import Auth, bearer
__all__ = ["create_app", "RewriteRequest", "RewriteResponse"]


class Device(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Annotated[str, Field(min_length=1, max_length=64, description="Device type, e.g. 'speaker', 'phone', 'car'.")] = "unknown"
    has_screen: bool | None = Field(None, description="Whether the device can show a visual response.")
    location: Annotated[str | None, Field(max_length=200, description="A room or place.")] = None
    state: dict[str, Any] | None = Field(None, description="The device's state as the logs carry it (volume, do-not-disturb, ...).")


class Context(BaseModel):
    model_config = ConfigDict(extra="allow")
    hour: Annotated[int | None, Field(ge=0, le=23, description="Local hour of the request.")] = None
    timestamp: Annotated[str | None, Field(max_length=64, description="ISO 8601 time of the request.")] = None
    asr_confidence: Annotated[float | None, Field(ge=0, le=1, description="The recogniser's confidence in what it heard, in [0, 1].")] = None


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


@dataclass(frozen=True)
class ServiceSettings:
    """Limits and policies of one service (each has a `selflearn online serve` option; docs/security.md)."""

    max_body: int = DEFAULT_MAX_BODY  # bytes of one request body (413 beyond)
    max_field_chars: int = 2_000  # characters of any one text field of a logged turn (413 beyond)
    max_list_items: int = 50  # items of any one list of a logged turn (n-best, slots, entities)
    deadline_ms: float = 50.0  # a rewrite that cannot be answered by then is refused at once with 503 (the assistant passes it through)
    write_deadline_ms: float = 5_000.0  # the same for ingest and admin calls
    max_queue: int = 256  # requests waiting for the owner thread, at most
    cors_origins: tuple[str, ...] = ()  # browser origins allowed to call the API (none by default)
    session_hours: float = 8.0  # the dashboard's login lasts this long
    session_secret: str | None = None  # signs dashboard sessions (default: $SELFLEARN_SESSION_SECRET or random per start)

    def check(self) -> ServiceSettings:
        for name, lo in (("max_body", 1024), ("max_field_chars", 1), ("max_list_items", 1), ("deadline_ms", 1), ("write_deadline_ms", 1),
                         ("max_queue", 1), ("session_hours", 0.01)):
            if not getattr(self, name) >= lo:
                raise InvalidInputError(explain(f"{name}={getattr(self, name)!r}", f"must be at least {lo}", "pass a larger value"))
        for o in self.cors_origins:
            if not o.startswith(("http://", "https://")) or o.rstrip("/") != o or o.count("/") != 2:
                raise InvalidInputError(explain(f"cors origin {o!r}", "must be scheme://host[:port], no path", "e.g. --cors-origin https://app.example.com"))
        return self


def create_app(model_dir: Path, *, keys: KeyRing, layers: tuple[str, ...] = LAYERS, persist: bool = False, rewriter: OnlineRewriter | None = None,
               store: Path | None = None, settings: ServiceSettings | None = None, global_threshold: float | None = None) -> FastAPI:
    """The service over a model directory (`selflearn online train`), for callers holding one of
    ``keys``. With ``persist`` the personal layer is written back to the directory (atomically) on
    shutdown. With ``store`` the users' preferences there are served and taught
    (/v1/users/{id}/preferences, /v1/teach) and filled into requests before the rewriter; and the
    review dashboard (/dashboard) browses its defects, reviews rewrites and users' preferences, for
    operators who log in with an admin key. ``global_threshold``: serve the global layer's rewrites
    from this score instead of the model's (a pilot for `selflearn online calibrate`; the personal
    layer keeps its threshold)."""
    settings = (settings or ServiceSettings()).check()
    if global_threshold is not None and not 0.0 <= global_threshold <= 1.0:
        raise InvalidInputError(explain(f"global_threshold={global_threshold}", "must be in [0, 1] (a ranker score)", "use e.g. 0.2 for a pilot"))
    if not len(keys):
        raise InvalidInputError(explain("API keys", "the service needs at least one (it never serves anonymous callers)",
                                        "create one with `selflearn keys create backend --scope rewrite,ingest --file keys.txt` "
                                        "and pass --api-keys keys.txt"))
    rw = rewriter or OnlineRewriter.load(Path(model_dir), layers=layers)
    if global_threshold is not None:
        rw.personal_threshold, rw.threshold = rw.threshold_of("personal"), global_threshold
    metrics = Metrics()
    auth = Auth(keys, secret=settings.session_secret, session_hours=settings.session_hours)
    owner = Owner(max_queue=settings.max_queue)
    prefs = None
    if store is not None:
        from ..store.store import Store
        from ..teach import Preferences

        prefs = Preferences(Store(store))
        rw.preferences = prefs  # the personal layer fills in what each user taught

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        owner.close()
        if persist:
            rw.personal.save(Path(model_dir) / "personal")
        if prefs is not None:
            prefs.store.close()

    app = FastAPI(title="selflearn rewrite service", version=__version__, lifespan=lifespan,
                  description="Rewrites a request before NLU: the precomputed table first, then the online global and personal layers. "
                              "Every /v1 call needs an API key (Authorization: Bearer KEY) with the scope the operation names.")
    app.state.rewriter = rw
    app.state.owner = owner

    def scope(name: str):
        async def dependency(request: Request, _creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)] = None):
            return auth.require(request, name)
        return Depends(dependency)

    async def on_owner(fn, *args, write: bool = True, request: Request | None = None):
        deadline = settings.write_deadline_ms if write else settings.deadline_ms
        if request is not None and (asked := request.headers.get("x-deadline-ms")):
            try:
                deadline = min(deadline, max(1.0, float(asked)))
            except ValueError:
                raise InvalidInputError(explain(f"x-deadline-ms {asked[:20]!r}", "must be a number of milliseconds", "send e.g. x-deadline-ms: 80")) from None
        return await owner.run(fn, *args, deadline_s=deadline / 1000)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        metrics.errors.labels(kind="invalid_request").inc()
        problems = [_problem(e) for e in exc.errors()]
        return JSONResponse(status_code=422, content={"error": " | ".join(problems),
                                                      "detail": [{"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")} for e in exc.errors()]})

    @app.exception_handler(SelflearnError)
    async def _selflearn(request: Request, exc: SelflearnError):
        kind = type(exc).__name__
        metrics.errors.labels(kind=kind).inc()
        if isinstance(exc, NotAuthorizedError):
            if request.url.path.startswith("/dashboard"):
                from .dashboard import refused_page

                return refused_page(request, auth, exc)
            return JSONResponse(status_code=403 if exc.authenticated else 401, content={"error": str(exc)},
                                headers={} if exc.authenticated else {"www-authenticate": "Bearer"})
        if isinstance(exc, OverloadedError):
            return JSONResponse(status_code=503, content={"error": str(exc)}, headers={"retry-after": str(exc.retry_after_s)})
        return JSONResponse(status_code=413 if isinstance(exc, TooLargeError) else 400, content={"error": str(exc)})

    @app.post("/v1/rewrite", response_model=RewriteResponse, summary="Rewrite one request (or pass it through); scope: rewrite",
              responses={503: {"description": "At capacity, or the deadline (x-deadline-ms, default the server's) passed: pass the request through."}})
    async def rewrite(req: RewriteRequest, request: Request, _key=scope("rewrite")) -> RewriteResponse:
        started = time.perf_counter()
        d = await on_owner(lambda: rw.decide(req.utterance, user_id=req.user_id, device=req.device.model_dump(),
                                             context=req.context.model_dump(exclude_none=True)), write=False, request=request)
        metrics.requests.labels(source=d.source or "none").inc()
        metrics.latency.observe(time.perf_counter() - started)
        return RewriteResponse(rewrite=d.rewrite, source=d.source, score=d.score)

    turn_schema = Turn.model_json_schema(ref_template="#/components/schemas/{model}")
    turn_defs = turn_schema.pop("$defs", {})

    @app.post("/v1/turns", response_model=Observed, summary="Feed one logged turn to the personal layer; scope: ingest",
              openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": turn_schema}}}})
    async def turns(request: Request, _key=scope("ingest")) -> Observed:
        # validated from the JSON text, as `selflearn store import` does (strict types, ISO timestamps)
        try:
            turn = Turn.model_validate_json(await request.body())
        except ValidationError as exc:
            raise RequestValidationError(exc.errors()) from None
        record = turn.model_dump(mode="json")
        _check_sizes(record, settings)
        observed = await on_owner(lambda: (rw.observe(record), rw.personal.observed)[1], request=request)
        metrics.turns.inc()
        return Observed(observed=observed)

    @app.get("/v1/users/{user_id}/history", summary="What the personal layer remembers about a user; scope: admin")
    async def history(user_id: str, request: Request, _key=scope("admin")) -> dict:
        hist = await on_owner(rw.history, user_id, request=request)
        if not hist:
            return JSONResponse(status_code=404, content={"error": f"user_id={user_id!r}: has no history here; fix: check the id, or send its turns to /v1/turns"})
        return {"user_id": user_id, "requests": [{"text": t, "attempts": e[0], "successes": e[1], "last_seen": e[2], "meaning": e[3]} for t, e in sorted(hist.items())]}

    @app.delete("/v1/users/{user_id}", response_model=Forgotten, summary="Forget everything about a user; scope: admin")
    async def forget(user_id: str, request: Request, _key=scope("admin")):
        def job():
            taught = prefs.delete(user_id) if prefs is not None else 0
            found = rw.forget(user_id) or bool(taught)
            if found and persist:  # the files on disk forget now, not at shutdown
                rw.personal.save(Path(model_dir) / "personal")
            return found
        if not await on_owner(job, request=request):
            return JSONResponse(status_code=404, content={"error": f"user_id={user_id!r}: has no history here; fix: check the id"})
        return Forgotten(user_id=user_id, forgotten=True)

    if prefs is not None:
        from .dashboard import dashboard_router, read_model_table
        from .teach import teach_router

        app.include_router(teach_router(prefs, run=on_owner, scope=scope))
        app.include_router(dashboard_router(prefs.store, rw, auth=auth, run=on_owner, rewrite_table=read_model_table(Path(model_dir))))
    else:
        @app.get("/dashboard", include_in_schema=False)
        async def no_dashboard():
            return JSONResponse(status_code=404, content={"error": "the dashboard needs a store; fix: start `selflearn online serve --store selflearn.duckdb`"})

    base_openapi = app.openapi

    def openapi() -> dict:  # the turn schema's nested models go into components
        if app.openapi_schema is None:
            spec = base_openapi()
            spec.setdefault("components", {}).setdefault("schemas", {}).update(turn_defs)
            app.openapi_schema = spec
        return app.openapi_schema

    app.openapi = openapi

    @app.get("/healthz", summary="Liveness (no credentials needed; says nothing about users)")
    async def healthz() -> dict:
        return {"status": "ok", "version": __version__, "layers": list(rw.layers)}

    @app.get("/v1/status", summary="What is loaded and how busy the service is; scope: admin")
    async def status(_key=scope("admin")) -> dict:
        g = rw.global_
        return {"status": "ok", "version": __version__, "layers": list(rw.layers), "table_rewrites": len(rw.table) if rw.table is not None else 0,
                "global_candidates": int(len(g.candidates)), "personal_users": len(rw.personal.users), "threshold": rw.threshold,
                "personal_threshold": rw.threshold_of("personal"),
                "queued": owner.waiting, "shed": owner.shed, "expired": owner.expired, "job_ms": round(owner.job_s * 1000, 3),
                "privacy": {"pseudonym_key": rw.ids.fingerprint if rw.ids is not None else None,
                            "dp": getattr(rw, "dp", None)}}

    @app.get("/metrics", summary="Prometheus metrics; scope: admin", response_class=Response)
    async def prometheus(_key=scope("admin")) -> Response:
        metrics.queued.set(owner.waiting)
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins), allow_methods=["GET", "POST", "PUT", "DELETE"],
                           allow_headers=["authorization", "content-type", "x-deadline-ms"], allow_credentials=False)
    def shed(path: str) -> int | None:
        if path == "/v1/rewrite" and owner.saturated(settings.deadline_ms / 1000):
            owner.shed += 1
            return owner.retry_after_s()
        return None

    app.add_middleware(RequestGuard, max_body=settings.max_body, on_refuse=lambda kind: metrics.errors.labels(kind=kind).inc(), shed=shed)
    return app


def _check_sizes(value: Any, settings: ServiceSettings, where: str = "") -> None:
    """Every text field and list of a turn within the service's limits (413 naming the field)."""
    if isinstance(value, str) and len(value) > settings.max_field_chars:
        raise TooLargeError(explain(f"{where or 'body'} ({len(value):,} characters)", f"a text field may hold at most {settings.max_field_chars:,}",
                                        "send the turn without the oversized text (or truncate it)"))
    if isinstance(value, list):
        if len(value) > settings.max_list_items:
            raise TooLargeError(explain(f"{where} ({len(value)} items)", f"a list may hold at most {settings.max_list_items}", "send fewer items"))
        for i, v in enumerate(value):
            _check_sizes(v, settings, f"{where}[{i}]")
    if isinstance(value, dict):
        if len(value) > settings.max_list_items:
            raise TooLargeError(explain(f"{where or 'body'} ({len(value)} fields)", f"an object may hold at most {settings.max_list_items}", "send fewer fields"))
        for k, v in value.items():
            _check_sizes(str(k), settings, f"{where}.{k}" if where else str(k))
            _check_sizes(v, settings, f"{where}.{k}" if where else str(k))


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
    msg = str(e.get("msg"))
    return explain(f"{where}={shown}", msg[:1].lower() + msg[1:], "see /openapi.json for the field's type and limits")
