"""API keys of the rewrite service: who may call it, and for what.

A key is a random secret (``sl_`` + 43 URL-safe characters) given once to its holder; the service
keeps only its SHA-256 digest, its name and its scopes. Scopes:

* ``rewrite``: ``POST /v1/rewrite`` (the assistant's backend, on every request);
* ``ingest``: what the assistant learns from its users: ``POST /v1/turns``, ``POST /v1/teach``,
  ``PUT /v1/users/{id}/preferences/{kind}``;
* ``admin``: reading or deleting one user's data (history, preferences, forget), ``/metrics``, and the
  dashboard (log in with an admin key).

Keys come from a key file (one ``NAME SCOPE[,SCOPE...] sha256:HEX`` line each; ``#`` starts a comment;
written by ``selflearn keys create``) and/or the ``SELFLEARN_API_KEYS`` variable holding the same lines
(newline- or ``;``-separated). A SHA-256 digest is enough at rest: keys are 256-bit random, not
passwords, so there is nothing to brute-force.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import InvalidInputError, UnreadableInputError, explain

__all__ = ["SCOPES", "ApiKey", "KeyRing", "new_key", "key_digest", "create_key", "revoke_key", "ENV_KEYS"]

SCOPES = ("rewrite", "ingest", "admin")
ENV_KEYS = "SELFLEARN_API_KEYS"
_NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


def new_key() -> str:
    """A new secret key (256 random bits)."""
    return "sl_" + secrets.token_urlsafe(32)


def key_digest(key: str) -> str:
    """``sha256:HEX`` of a presented key. Any text (non-ASCII included) hashes; nothing raises."""
    return "sha256:" + hashlib.sha256(key.encode("utf-8", "replace")).hexdigest()


@dataclass(frozen=True)
class ApiKey:
    name: str
    scopes: frozenset[str]
    digest: str

    def line(self) -> str:
        return f"{self.name} {','.join(s for s in SCOPES if s in self.scopes)} {self.digest}"


def _scopes(text: str, where: str) -> frozenset[str]:
    scopes = frozenset(s.strip() for s in text.split(",") if s.strip())
    unknown = sorted(scopes - set(SCOPES))
    if not scopes or unknown:
        raise InvalidInputError(explain(f"{where}: scopes {text!r}", f"must be a comma-separated list of {', '.join(SCOPES)}",
                                        "name at least one known scope, e.g. rewrite,ingest"))
    return scopes


def _parse(text: str, source: str) -> list[ApiKey]:
    keys: list[ApiKey] = []
    for n, raw in enumerate(re.split(r"[\n;]", text), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        where = f"{source}, entry {n}"
        parts = line.split()
        if len(parts) != 3:
            raise InvalidInputError(explain(where, "an entry is NAME SCOPES sha256:HEX (three fields)",
                                            "write entries with `selflearn keys create`; never put a plain key here"))
        name, scopes, digest = parts
        if not _NAME.match(name):
            raise InvalidInputError(explain(f"{where}: name {name!r}", "must be 1-64 letters, digits or _.@-", "rename the key"))
        if not _DIGEST.match(digest):
            raise InvalidInputError(explain(f"{where}: {digest[:12]}...", "must be sha256: and 64 hex digits (the digest, not the key)",
                                            "write entries with `selflearn keys create`"))
        keys.append(ApiKey(name, _scopes(scopes, where), digest))
    return keys


def _unique(keys: list[ApiKey]) -> list[ApiKey]:
    names = [k.name for k in keys]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise InvalidInputError(explain(f"key names {dup}", "each key needs its own name", "revoke or rename the duplicates"))
    return list(keys)


class KeyRing:
    """The keys a service accepts. ``authenticate`` compares digests in constant time. A ring loaded
    from a key file re-reads it when it changes (checked at most once a second), so a key created or
    revoked with `selflearn keys` takes effect without a restart; a file that turns unreadable keeps
    the keys last read."""

    def __init__(self, keys: list[ApiKey]) -> None:
        self.keys = _unique(keys)
        self._source: tuple[Path, str] | None = None
        self._mtime = 0.0
        self._checked = 0.0

    def _refresh(self) -> None:
        if self._source is None:
            return
        now = time.monotonic()
        if now - self._checked < 1.0:
            return
        self._checked = now
        path, env = self._source
        try:
            mtime = path.stat().st_mtime
            if mtime != self._mtime:
                self.keys, self._mtime = self.load(path, env=env).keys, mtime
        except (OSError, InvalidInputError, UnreadableInputError):
            pass

    @classmethod
    def load(cls, path: Path | None = None, *, env: str | None = None) -> KeyRing:
        """Keys from a key file and/or the text of ``$SELFLEARN_API_KEYS`` (``env``; default: read it)."""
        env_text = os.environ.get(ENV_KEYS, "") if env is None else env
        ring = cls(_read(path, env_text))
        if path is not None:
            ring._source = (Path(path), env_text)
            ring._mtime = Path(path).stat().st_mtime
        return ring

    def __len__(self) -> int:
        return len(self.keys)

    def authenticate(self, presented: str | None) -> ApiKey | None:
        """The key ``presented`` is, or None. Looks at every entry (no early exit on a match)."""
        if not presented:
            return None
        self._refresh()
        d = key_digest(presented).encode()
        found = None
        for k in self.keys:
            if hmac.compare_digest(d, k.digest.encode()):
                found = k
        return found

    def named(self, name: str) -> ApiKey | None:
        self._refresh()
        return next((k for k in self.keys if k.name == name), None)


def _read(path: Path | None, env_text: str) -> list[ApiKey]:
    keys: list[ApiKey] = []
    if path is not None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UnreadableInputError(explain(str(path), f"cannot read the key file ({exc})",
                                               "create it with `selflearn keys create NAME --scope rewrite --file PATH`")) from exc
        keys += _parse(text, str(path))
    return _unique(keys + _parse(env_text, ENV_KEYS))


def create_key(path: Path, name: str, scopes: list[str] | str) -> tuple[str, ApiKey]:
    """Make a key, append its digest to the key file (created readable by its owner only) and return
    ``(secret, entry)``: the secret is shown once and never stored."""
    if not _NAME.match(name):
        raise InvalidInputError(explain(f"name {name!r}", "must be 1-64 letters, digits or _.@-", "pick another name, e.g. assistant-backend"))
    scope_set = _scopes(scopes if isinstance(scopes, str) else ",".join(scopes), "--scope")
    path = Path(path)
    existing = KeyRing.load(path, env="") if path.exists() else KeyRing([])
    if existing.named(name):
        raise InvalidInputError(explain(f"name {name!r}", f"is already a key in {path}", "revoke it first, or pick another name"))
    secret = new_key()
    entry = ApiKey(name, scope_set, key_digest(secret))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as fh:
        fh.write(entry.line() + "\n")
    return secret, entry


def revoke_key(path: Path, name: str) -> bool:
    """Remove a key from the key file (atomically); False when there was none of that name."""
    path = Path(path)
    ring = KeyRing.load(path, env="")
    if not ring.named(name):
        return False
    kept = [k.line() for k in ring.keys if k.name != name]
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write("".join(line + "\n" for line in kept))
    tmp.replace(path)
    return True
