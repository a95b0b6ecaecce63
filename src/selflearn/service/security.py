"""Who is calling: API keys on the API (``Authorization: Bearer KEY``) and a signed, expiring session
cookie on the dashboard, with CSRF tokens and a same-origin check on every form it accepts.

The session cookie holds the key's name, a CSRF token and the time it was issued, signed with a secret
(``SELFLEARN_SESSION_SECRET``, or random per process: a restart logs operators out). It is checked on
every request against the key ring, so revoking a key ends its sessions. The cookie is HttpOnly,
SameSite=Strict and limited to /dashboard; same-site pages (another port of the same host) still
send it, which is why forms also need the CSRF token and an Origin or Referer of this very origin.
"""

from __future__ import annotations

import hmac
import os
import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit

from fastapi import Request
from fastapi.security import HTTPBearer
from itsdangerous import BadSignature, URLSafeTimedSerializer

from ..errors import NotAuthorizedError, explain
from .keys import ApiKey, KeyRing

__all__ = ["Auth", "Session", "COOKIE", "bearer"]

COOKIE = "selflearn_session"
bearer = HTTPBearer(auto_error=False, description="An API key from `selflearn keys create` (scopes: rewrite, ingest, admin).")


@dataclass(frozen=True)
class Session:
    key: ApiKey
    csrf: str


class Auth:
    def __init__(self, keys: KeyRing, *, secret: bytes | str | None = None, session_hours: float = 8.0) -> None:
        self.keys = keys
        secret = secret or os.environ.get("SELFLEARN_SESSION_SECRET") or secrets.token_bytes(32)
        self._signer = URLSafeTimedSerializer(secret, salt="selflearn-dashboard-session")
        self.max_age_s = int(session_hours * 3600)

    # -- API keys ---------------------------------------------------------------------------
    def caller(self, request: Request) -> ApiKey | None:
        auth = request.headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        return self.keys.authenticate(token.strip()) if scheme.lower() == "bearer" else None

    def require(self, request: Request, scope: str) -> ApiKey:
        """The caller's key if it has ``scope`` (an API key, or the dashboard session of an admin key)."""
        key = self.caller(request)
        if key is None and scope == "admin":
            s = self.session(request)
            key = s.key if s else None
        if key is None:
            given = "an unknown key" if request.headers.get("authorization") else "no credentials"
            raise NotAuthorizedError(explain(f"{request.method} {request.url.path} with {given}", "needs an API key",
                                             "send Authorization: Bearer KEY (create one with `selflearn keys create`)"))
        if scope not in key.scopes:
            raise NotAuthorizedError(explain(f"key {key.name!r} (scopes {sorted(key.scopes)})", f"{request.url.path} needs the {scope!r} scope",
                                             f"use a key with the {scope} scope"), authenticated=True)
        return key

    # -- dashboard sessions -----------------------------------------------------------------
    def login(self, presented: str) -> str | None:
        """A signed session cookie for an admin key, or None."""
        key = self.keys.authenticate(presented)
        if key is None or "admin" not in key.scopes:
            return None
        return self._signer.dumps({"k": key.name, "c": secrets.token_urlsafe(24)})

    def session(self, request: Request) -> Session | None:
        raw = request.cookies.get(COOKIE)
        if not raw:
            return None
        try:
            data = self._signer.loads(raw, max_age=self.max_age_s)
        except (BadSignature, UnicodeError, ValueError, TypeError):
            return None
        key = self.keys.named(data.get("k", "")) if isinstance(data, dict) else None
        if key is None or "admin" not in key.scopes or not isinstance(data.get("c"), str):
            return None
        return Session(key, data["c"])

    def check_form(self, request: Request, session: Session, token: str | None) -> None:
        """A dashboard form: its CSRF token must be the session's and it must come from this origin."""
        if not token or not hmac.compare_digest(token.encode("utf-8", "replace"), session.csrf.encode()):
            raise NotAuthorizedError(explain("the form's CSRF token", "must be the one this dashboard put in the form",
                                             "reload the page and submit the form again"), authenticated=True)
        if not same_origin(request):
            origin = request.headers.get("origin") or request.headers.get("referer") or "(none)"
            raise NotAuthorizedError(explain(f"origin {origin[:80]!r}", "dashboard forms are accepted from the dashboard's own origin only",
                                             "submit the form from the dashboard's page"), authenticated=True)


def same_origin(request: Request) -> bool:
    """Origin (or, without it, Referer) names this server: scheme, host and port."""
    host = request.headers.get("host", "")
    for header in ("origin", "referer"):
        value = request.headers.get(header)
        if value:
            u = urlsplit(value)
            return u.scheme in ("http", "https") and u.scheme == request.url.scheme and u.netloc == host
    return False
