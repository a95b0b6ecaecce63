"""Pseudonymous ids: a keyed hash (HMAC-SHA256) of every user, device and session id.

The key is secret and lives outside every artefact: ``$SELFLEARN_PSEUDONYM_KEY`` or a key file
beside the store (``<store>.key``, mode 0600) that selflearn creates on first use. A store records
only the key's *fingerprint* (an HMAC of a fixed text), so a wrong key is caught, never guessed.

Rotation keeps a chain: after rotating, a pseudonym is ``HMAC(k2, HMAC(k1, id))``. Ids are never
kept raw, so the store's pseudonyms are re-keyed (``HMAC(k2, p)``) and the service, which sees raw
ids, applies the whole chain. Someone holding only an older key can no longer link anything in the
store to a person. A chain is written as keys separated by commas (oldest first).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import stat
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ..errors import InvalidInputError, UnreadableInputError, explain

__all__ = ["KEY_ENV", "FINGERPRINT_META", "store_pseudonyms", "Pseudonyms", "key_path_for", "load_key", "create_key_file", "parse_chain", "PSEUDONYM_RE"]

KEY_ENV = "SELFLEARN_PSEUDONYM_KEY"
_PREFIX = "p:"
_HEX_CHARS = 24  # 96 bits: no collision among billions of ids in practice
PSEUDONYM_RE = re.compile(r"p:[0-9a-f]{24}")
_FINGERPRINT_TEXT = b"selflearn pseudonym key fingerprint"
_MIN_KEY_BYTES = 16


@lru_cache(maxsize=1 << 18)
def _chain(keys: tuple[bytes, ...], raw_id: str) -> str:  # a user's turns repeat their ids: hash each once
    out = raw_id
    for key in keys:
        out = Pseudonyms._h(key, out)
    return out


def key_path_for(store_path: str | Path) -> Path:
    """Where the key of ``store_path`` lives: ``selflearn.duckdb`` -> ``selflearn.key``."""
    p = Path(store_path)
    return p.with_name(p.name.removesuffix(".duckdb") + ".key")


def _key_bytes(text: str, where: str) -> bytes:
    text = text.strip()
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = text.encode("utf-8")
    if len(key) < _MIN_KEY_BYTES:
        raise InvalidInputError(explain(f"{where}: a key of {len(key)} bytes", f"a pseudonym key needs at least {_MIN_KEY_BYTES} bytes",
                                        "use 64 hex characters, e.g. `python -c 'import secrets; print(secrets.token_hex(32))'`"))
    return key


def parse_chain(text: str, where: str) -> tuple[bytes, ...]:
    """Keys separated by commas (oldest first), each hex or a passphrase of >= 16 bytes."""
    parts = [p for p in text.split(",") if p.strip()]
    if not parts:
        raise InvalidInputError(explain(f"{where} = ''", "is empty", f"unset {KEY_ENV} to use the key file, or give a key"))
    return tuple(_key_bytes(p, where) for p in parts)


@dataclass(frozen=True)
class Pseudonyms:
    """``of(raw_id)`` -> ``p:`` + 24 hex characters; ``rekey(pseudonym)`` applies only the newest key
    (what a rotation does to stored pseudonyms)."""

    keys: tuple[bytes, ...]
    source: str = "given"  # where the keys came from (for messages; never the keys)

    def __repr__(self) -> str:  # never print a key
        return f"Pseudonyms(fingerprint={self.fingerprint!r}, source={self.source!r})"

    @staticmethod
    def _h(key: bytes, text: str) -> str:
        return _PREFIX + hmac.new(key, text.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()[:_HEX_CHARS]

    def of(self, raw_id: str) -> str:
        return _chain(self.keys, raw_id)

    def rekey(self, pseudonym: str) -> str:
        return self._h(self.keys[-1], pseudonym)

    def rotated(self) -> "Pseudonyms":
        """The chain with one fresh key appended."""
        return Pseudonyms(self.keys + (secrets.token_bytes(32),), self.source)

    @property
    def fingerprint(self) -> str:
        """Identifies the chain without revealing it: an HMAC of a fixed text through every key."""
        out = _FINGERPRINT_TEXT
        for key in self.keys:
            out = hmac.new(key, out, hashlib.sha256).digest()
        return "hmac-sha256:" + out.hex()[:16]

    def to_file_text(self) -> str:
        return json.dumps({"format": 1, "keys": [k.hex() for k in self.keys]}) + "\n"


def _read_key_file(path: Path) -> Pseudonyms:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise UnreadableInputError(explain(f"{path} (mode {mode:04o})", "a pseudonym key file must be readable by its owner only (0600)",
                                           f"chmod 600 {path}"))
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        keys = tuple(bytes.fromhex(k) for k in data["keys"])
        if not keys or any(len(k) < _MIN_KEY_BYTES for k in keys):
            raise ValueError("empty or short key")
    except (ValueError, KeyError, TypeError) as exc:
        raise UnreadableInputError(explain(str(path), f"is not a selflearn key file ({exc})",
                                           "restore the key file from your secret store; without it the store's pseudonyms cannot be matched")) from None
    return Pseudonyms(keys, str(path))


def create_key_file(path: Path, ids: Pseudonyms | None = None, *, replace: bool = False) -> Pseudonyms:
    """Write a key file readable only by its owner (a fresh key unless ``ids`` is given). Without
    ``replace`` an existing file is never overwritten."""
    ids = ids or Pseudonyms((secrets.token_bytes(32),))
    path.parent.mkdir(parents=True, exist_ok=True)
    target = path.with_name(path.name + ".new") if replace else path
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    if replace:
        target.unlink(missing_ok=True)
    fd = os.open(target, flags, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(ids.to_file_text())
        f.flush()
        os.fsync(f.fileno())
    if replace:
        os.replace(target, path)
    return Pseudonyms(ids.keys, str(path))


def load_key(key_file: Path | None, *, create: bool = False) -> Pseudonyms | None:
    """The pseudonym keys: ``$SELFLEARN_PSEUDONYM_KEY`` first, else ``key_file`` (created with a fresh
    key when ``create``); None when there is neither."""
    env = os.environ.get(KEY_ENV)
    if env is not None:
        return Pseudonyms(parse_chain(env, f"${KEY_ENV}"), f"${KEY_ENV}")
    if key_file is None:
        return None
    if key_file.exists():
        return _read_key_file(key_file)
    if create:
        return create_key_file(key_file)
    return None


FINGERPRINT_META = "pseudonym_key_fingerprint"


def store_pseudonyms(store) -> Pseudonyms:
    """The keys of ``store`` (a :class:`~selflearn.store.store.Store`): the key it recorded the
    fingerprint of, or, for a store that has none yet, the key in the environment or the key file
    (a fresh key file is created when the store is writable); the fingerprint is then recorded."""
    from ..errors import PrivacyKeyError

    if store.meta("ids") == "raw":
        raise PrivacyKeyError(explain(str(store.path), "holds raw user ids (an older selflearn imported it)",
                                      f"pseudonymise it once: `selflearn privacy rotate-key --store {store.path}`"))
    recorded = store.meta(FINGERPRINT_META)
    path = key_path_for(store.path)
    ids = load_key(path, create=recorded is None and not store.read_only)
    if recorded is None:
        if ids is None:
            raise PrivacyKeyError(explain(str(store.path), "has no pseudonym key yet and is opened read-only",
                                          "import logs into it first (that creates the key)"))
        if not store.read_only:
            with store.transaction() as con:
                con.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", [FINGERPRINT_META, ids.fingerprint])
        return ids
    if ids is None:
        raise PrivacyKeyError(explain(f"{path}", f"the store's pseudonym key (fingerprint {recorded}) is missing",
                                      f"restore the key file from your secret store, or set ${KEY_ENV}"))
    if ids.fingerprint != recorded:
        pending = path.with_name(path.name + ".new")
        hint = (f"a key rotation was interrupted: `mv {pending} {path}`" if pending.exists()
                else f"use the key this store was written with (fingerprint {recorded}); ${KEY_ENV} overrides the key file")
        raise PrivacyKeyError(explain(f"key from {ids.source} (fingerprint {ids.fingerprint})",
                                      f"is not the key of {store.path} (fingerprint {recorded})", hint))
    return ids


def model_pseudonyms(directory: Path, privacy: dict | None, key_file: Path | None = None) -> Pseudonyms | None:
    """The keys a model directory was trained under (its ``privacy`` record names the fingerprint and
    the key file): ``key_file``, else ``$SELFLEARN_PSEUDONYM_KEY``, else the recorded key file. None
    for a model trained on a store without pseudonyms."""
    from ..errors import PrivacyKeyError

    if not privacy or not privacy.get("pseudonym_key"):
        return None
    recorded = privacy["pseudonym_key"]
    path = key_file or (Path(privacy["key_file"]) if privacy.get("key_file") and not privacy["key_file"].startswith("$") else None)
    ids = _read_key_file(Path(key_file)) if key_file else load_key(path)
    if ids is None:
        raise PrivacyKeyError(explain(str(directory), f"was trained under the pseudonym key {recorded} and no key is at hand",
                                      f"set ${KEY_ENV} or pass --key-file (the key file of the store it was trained on)"))
    if ids.fingerprint != recorded:
        raise PrivacyKeyError(explain(f"key from {ids.source} (fingerprint {ids.fingerprint})",
                                      f"is not the key {directory} was trained under ({recorded})",
                                      "pass the key file of the store the model was trained on, or retrain it on the store"))
    return ids
