"""What every request passes before a handler sees it (a pure ASGI middleware, so nothing is parsed
twice and nothing large is ever held): the body's size and content type.

* A body larger than ``max_body`` bytes is refused with 413, whether it declares its length or streams
  it in chunks; the server never holds more than ``max_body`` bytes of one request.
* A ``POST``/``PUT``/``PATCH`` body to the API (``/v1/...``) must be ``application/json``: a browser can send
  ``text/plain`` or a form cross-site without a preflight, JSON it cannot (415 otherwise).
* Forms are accepted only by the dashboard (``/dashboard/...``), where CSRF tokens guard them.
* A request the service is too busy to answer in time (``shed(path)`` gives a Retry-After) is refused
  with 503 before anything else is done for it: under overload, refusing must cost almost nothing.
"""

from __future__ import annotations

import json

from ..errors import explain

__all__ = ["RequestGuard", "DEFAULT_MAX_BODY"]

DEFAULT_MAX_BODY = 64 * 1024
_WRITES = (b"POST", b"PUT", b"PATCH")


def _reply(status: int, message: str, headers: tuple = ()):
    body = json.dumps({"error": message}).encode()
    return [{"type": "http.response.start", "status": status,
             "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *headers]},
            {"type": "http.response.body", "body": body}]


class RequestGuard:
    def __init__(self, app, *, max_body: int = DEFAULT_MAX_BODY, on_refuse=None, shed=None) -> None:
        self.app = app
        self.max_body = max_body
        self.on_refuse = on_refuse or (lambda kind: None)
        self.shed = shed or (lambda path: None)

    async def _send_all(self, send, messages) -> None:
        for m in messages:
            await send(m)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        if (retry := self.shed(path)) is not None:
            self.on_refuse("OverloadedError")
            return await self._send_all(send, _reply(503, explain(path, "the service is at capacity: it cannot answer within the deadline",
                                                                  f"pass the request through; retry after {retry} s"),
                                                     ((b"retry-after", str(retry).encode()),)))
        headers = dict(scope.get("headers") or [])
        method = scope.get("method", "GET").encode()
        has_body = headers.get(b"content-length", b"0") != b"0" or b"transfer-encoding" in headers
        if method in _WRITES and has_body:
            ctype = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
            wanted = (b"application/json",) if path.startswith("/v1/") else (b"application/x-www-form-urlencoded", b"application/json")
            if path.startswith(("/v1/", "/dashboard")) and ctype not in wanted:
                self.on_refuse("unsupported_media_type")
                shown = ctype.decode("latin-1") or "(none)"
                return await self._send_all(send, _reply(415, explain(f"content-type {shown!r}", f"{path} takes {' or '.join(w.decode() for w in wanted)}",
                                                                      "send the body as JSON with content-type: application/json")))
        declared = headers.get(b"content-length")
        too_big = explain("request body", f"is larger than {self.max_body:,} bytes", "send less (each field's limit is in /openapi.json)")
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                size = -1
            if size < 0:
                self.on_refuse("bad_request")
                return await self._send_all(send, _reply(400, explain(f"content-length {declared[:20]!r}", "must be a whole number", "send a valid HTTP request")))
            if size > self.max_body:
                self.on_refuse("too_large")
                return await self._send_all(send, _reply(413, too_big, ((b"connection", b"close"),)))
        if method not in _WRITES:
            return await self.app(scope, receive, send)
        # read the body here, bounded, and replay it to the app
        chunks, total = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            total += len(chunk)
            if total > self.max_body:
                self.on_refuse("too_large")
                return await self._send_all(send, _reply(413, too_big, ((b"connection", b"close"),)))
            chunks.append(chunk)
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        sent = False

        async def replay():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)
