"""The service's teaching endpoints (``selflearn online serve --store``): list, put and delete a user's
preferences, and a teaching turn ("learn my preferences", "I'm a Warriors fan", an answer). They
parse, check the caller's scope and run :mod:`selflearn.teach` on the service's owner thread (``run``),
which holds the store's one write connection."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from ..teach import PROVENANCE, Preferences, Teacher

__all__ = ["teach_router", "PreferenceIn", "TeachRequest"]


class PreferenceIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"value": "golden state warriors"}]})
    value: Annotated[str, Field(min_length=1, max_length=200, description="What to remember.")]
    key: Annotated[str, Field(max_length=200, description="For device_nickname: the nickname ('the lamp'); for place: the name said ('wilkerson').")] = ""
    provenance: Annotated[str, Field(description=f"One of {list(PROVENANCE)}.")] = "taught"
    confidence: Annotated[float, Field(ge=0.0, le=1.0)] = 1.0


class TeachRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"user_id": "u00042", "utterance": "learn my preferences"}]})
    user_id: Annotated[str, Field(min_length=1, max_length=200)]
    utterance: Annotated[str, Field(min_length=1, max_length=1000, pattern=r"\S")]


class TeachResponse(BaseModel):
    handled: bool = Field(description="Whether the turn was about teaching (false: send it on to the assistant).")
    reply: str | None = Field(description="What the assistant says.")
    stored: list[dict] = Field(description="Preferences remembered by this turn.")
    active: bool = Field(description="The guided Q&A expects another answer.")


def teach_router(preferences: Preferences, *, run, scope) -> APIRouter:
    """``run(fn, request=...)``: runs ``fn`` on the owner thread; ``scope(name)``: the dependency that
    requires an API key with that scope."""
    router = APIRouter(tags=["preferences"])
    teacher = Teacher(preferences)

    @router.get("/v1/users/{user_id}/preferences", summary="What is remembered about a user; scope: admin")
    async def list_preferences(user_id: str, request: Request, _key=scope("admin")) -> dict:
        known = await run(preferences.list, user_id, request=request)
        return {"user_id": user_id, "preferences": [p.to_dict() for p in known]}

    @router.put("/v1/users/{user_id}/preferences/{kind}", summary="Remember (or update) one preference; scope: ingest")
    async def put_preference(user_id: str, kind: str, body: PreferenceIn, request: Request, _key=scope("ingest")) -> dict:
        p = await run(lambda: preferences.put(user_id, kind, body.value, key=body.key, provenance=body.provenance, confidence=body.confidence),
                      request=request)
        return p.to_dict()

    @router.delete("/v1/users/{user_id}/preferences", summary="Forget a user's preferences (every kind, or ?kind=...&key=...); scope: admin")
    async def delete_preferences(user_id: str, request: Request, kind: str | None = None, key: str | None = None, _key=scope("admin")):
        n = await run(preferences.delete, user_id, kind, key, request=request)
        if not n:
            return JSONResponse(status_code=404, content={"error": f"user_id={user_id!r}, kind={kind!r}: nothing remembered; fix: list them first"})
        return {"user_id": user_id, "deleted": n}

    @router.post("/v1/teach", response_model=TeachResponse, summary="One teaching turn: start the Q&A, answer it, or state a preference; scope: ingest")
    async def teach(req: TeachRequest, request: Request, _key=scope("ingest")) -> TeachResponse:
        r = await run(teacher.turn, req.user_id, req.utterance, request=request)
        if r is None:
            return TeachResponse(handled=False, reply=None, stored=[], active=False)
        return TeachResponse(handled=True, reply=r.reply, stored=r.stored, active=r.active)

    return router
