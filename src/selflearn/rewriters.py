"""The rewriter interface: what sits between ASR and NLU and may replace a request.

Any object with a ``rewrite`` method is a rewriter: the mined table, the online rewriter, the
preference rewriter, your own (``module:attribute``), or the URL of a service that speaks the
``POST /v1/rewrite`` protocol of `selflearn online serve`. The product defines it; the simulated world plugs
rewriters in through it.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from typing import Protocol, runtime_checkable

import httpx

from .errors import InvalidInputError, explain

__all__ = ["Rewriter", "NoOpRewriter", "HttpRewriter", "load_rewriter"]


@runtime_checkable
class Rewriter(Protocol):
    def rewrite(self, utterance: str, *, user_id: str, device: dict, context: dict) -> str | None:
        """Return a replacement for ``utterance``, or None to pass it through."""


class NoOpRewriter:
    """Passes everything through (the control arm)."""

    def rewrite(self, utterance: str, *, user_id: str, device: dict, context: dict) -> str | None:
        return None


class HttpRewriter:
    """Calls a rewrite service: POST {url} with {utterance, user_id, device, context},
    reads {"rewrite": str | null}, with the API key ``api_key`` (default: ``$SELFLEARN_API_KEY``;
    the service needs one with the rewrite scope). Errors, refusals (503 when the service is at
    capacity) and timeouts pass the utterance through (a rewriter must never take the assistant
    down) and are counted."""

    def __init__(self, url: str, *, timeout_s: float = 1.0, api_key: str | None = None):
        self.url = url
        self.timeout_s = timeout_s
        self.api_key = api_key if api_key is not None else os.environ.get("SELFLEARN_API_KEY", "")
        self.errors = 0
        headers = {"authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        self._client = httpx.Client(timeout=timeout_s, headers=headers)  # one keep-alive connection pool

    def rewrite(self, utterance: str, *, user_id: str, device: dict, context: dict) -> str | None:
        try:
            resp = self._client.post(self.url, json={"utterance": utterance, "user_id": user_id, "device": device, "context": context})
            resp.raise_for_status()
            out = resp.json()
        except (httpx.HTTPError, ValueError):
            self.errors += 1
            return None
        value = out.get("rewrite") if isinstance(out, dict) else None
        return value if isinstance(value, str) and value.strip() else None


def load_rewriter(spec: str | None) -> Rewriter:
    """``None``/``noop`` → pass-through; ``http(s)://...`` → a service; ``*.parquet`` → a
    rewrite table (`selflearn rewrites mine`); a model directory → the online rewriter (`selflearn online train`);
    ``module:attribute`` → an object (or a zero-argument factory) with ``rewrite``; the
    working directory is importable, as with uvicorn."""
    if spec is None or spec == "noop":
        return NoOpRewriter()
    if spec.startswith(("http://", "https://")):
        return HttpRewriter(spec)
    if spec.endswith(".parquet"):
        from .rewrites.table import TableRewriter

        return TableRewriter.load(Path(spec))
    if (Path(spec) / "config.json").is_file():
        from .online import OnlineRewriter

        return OnlineRewriter.load(Path(spec))
    module, _, attr = spec.partition(":")
    if not module or not attr:
        raise InvalidInputError(explain(f"rewriter={spec!r}", "must be 'noop', an http(s) URL or 'module:attribute'", "e.g. --rewriter mypkg.rewriters:MyRewriter"))
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # like uvicorn: modules in the working directory import
    try:
        obj = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise InvalidInputError(explain(f"rewriter={spec!r}", f"must name an importable object ({exc})", "check the module path and PYTHONPATH")) from exc
    if isinstance(obj, type) or (callable(obj) and not hasattr(obj, "rewrite")):
        try:
            obj = obj()
        except TypeError as exc:
            raise InvalidInputError(explain(f"rewriter={spec!r}", f"a class or factory must be callable without arguments ({exc})", "point at an object, or give defaults")) from exc
    if not isinstance(obj, Rewriter):
        raise InvalidInputError(explain(f"rewriter={spec!r}", "must have a rewrite(utterance, *, user_id, device, context) method", "implement that method"))
    return obj
