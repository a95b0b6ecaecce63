"""The embedded store: one DuckDB file holding turns, sessions and, later, learned artefacts.

One :class:`Store` object owns the file's only write connection (DuckDB also
refuses a second writing process); readers take their own cursor with
:meth:`Store.reader`. The file carries a ``store_version``; opening an older one
for writing migrates it in one transaction, opening it read-only fails with the
command that migrates it, and a newer one is refused.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from selflearn.errors import StoreBusyError, StoreVersionError, UnreadableInputError, explain
from selflearn.store.columns import turns_ddl
from selflearn.store.derived import DERIVED_DDL, TABLES
from selflearn.privacy.pseudonyms import Pseudonyms, key_path_for, store_pseudonyms
from selflearn.text import normalise_sql

__all__ = ["Store", "STORE_VERSION", "MIGRATIONS", "DEFAULT_STORE", "default_store_path"]

DEFAULT_STORE = "selflearn.duckdb"


def default_store_path() -> Path:
    """``$SELFLEARN_STORE`` if set, else ``./selflearn.duckdb``."""
    return Path(os.environ.get("SELFLEARN_STORE") or DEFAULT_STORE)


def _v1(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(turns_ddl())
    con.execute(
        """CREATE TABLE sessions (
             session_id VARCHAR PRIMARY KEY, user_id VARCHAR NOT NULL, device_id VARCHAR NOT NULL,
             started_at TIMESTAMPTZ NOT NULL, ended_at TIMESTAMPTZ NOT NULL, n_turns INTEGER NOT NULL)"""
    )
    con.execute(
        """CREATE TABLE imports (
             import_id BIGINT PRIMARY KEY, source VARCHAR NOT NULL, format VARCHAR NOT NULL,
             started_at TIMESTAMPTZ NOT NULL, finished_at TIMESTAMPTZ NOT NULL,
             imported BIGINT NOT NULL, duplicates BIGINT NOT NULL, quarantined BIGINT NOT NULL)"""
    )


def _v2(con: duckdb.DuckDBPyConnection) -> None:
    """What users teach the assistant (selflearn.teach): preferences and the teaching prompts asked."""
    con.execute(
        """CREATE TABLE preferences (
             user_id VARCHAR NOT NULL, kind VARCHAR NOT NULL, key VARCHAR NOT NULL, value VARCHAR NOT NULL,
             provenance VARCHAR NOT NULL, confidence DOUBLE NOT NULL,
             created_at TIMESTAMPTZ NOT NULL, updated_at TIMESTAMPTZ NOT NULL, PRIMARY KEY (user_id, kind, key))"""
    )
    con.execute(
        """CREATE TABLE teaching_prompts (
             user_id VARCHAR NOT NULL, kind VARCHAR NOT NULL, asked_at TIMESTAMPTZ NOT NULL, question VARCHAR NOT NULL,
             outcome VARCHAR NOT NULL)"""
    )


def _v3(con: duckdb.DuckDBPyConnection) -> None:
    """What operators decided about rewrites (selflearn.rewrites.reviews): approved or blocked."""
    con.execute(
        """CREATE TABLE rewrite_reviews (
             utterance VARCHAR NOT NULL, rewrite VARCHAR NOT NULL, decision VARCHAR NOT NULL, reviewer VARCHAR NOT NULL,
             note VARCHAR NOT NULL, decided_at TIMESTAMPTZ NOT NULL, PRIMARY KEY (utterance, rewrite))"""
    )


def _v4(con: duckdb.DuckDBPyConnection) -> None:
    """Derived tables through migrations: each turn's normalised text (``text_norm``, what every part
    keys requests by), the derived tables' schemas and the record of how each was computed. Derived
    tables an older version built are dropped: the command that uses one recomputes it."""
    con.execute("ALTER TABLE turns ADD COLUMN text_norm VARCHAR")
    con.execute(f"UPDATE turns SET text_norm = {normalise_sql('asr_text')}")
    con.execute(DERIVED_DDL)
    for name, ddl in TABLES.items():
        con.execute(f"DROP TABLE IF EXISTS {name}")
        con.execute(ddl)


def _v5(con: duckdb.DuckDBPyConnection) -> None:
    """Privacy: the raw texts an import was told to keep (apart from ``turns``, which holds only
    scrubbed text) and, for a store an older selflearn filled, the marks that its ids and texts are
    still raw (`selflearn privacy rotate-key` pseudonymises it)."""
    con.execute(RAW_TEXT_DDL)
    if con.execute("SELECT count(*) FROM turns").fetchall()[0][0]:
        con.execute("INSERT OR REPLACE INTO meta VALUES ('ids', 'raw'), ('text', 'raw')")


#: ``MIGRATIONS[i]`` turns a store of version ``i`` into version ``i + 1`` (0 = empty file).
MIGRATIONS: list[Callable[[duckdb.DuckDBPyConnection], None]] = [_v1, _v2, _v3, _v4, _v5]
STORE_VERSION = len(MIGRATIONS)


RAW_TEXT_DDL = """CREATE TABLE raw_text (
  session_id VARCHAR NOT NULL, turn_index INTEGER NOT NULL, asr_text VARCHAR, asr_nbest JSON, slots JSON, er_entities JSON,
  response_text VARCHAR, feedback_comment VARCHAR, PRIMARY KEY (session_id, turn_index))"""


def _writable(path: Path) -> bool:
    """The file (or, for a new store, its directory) can be written; DuckDB also writes a .wal beside it."""
    if path.exists():
        return os.access(path, os.W_OK) and os.access(path.parent or Path("."), os.W_OK)
    return os.access(path.parent if str(path.parent) else Path("."), os.W_OK)


class Store:
    """A selflearn store file. Use as a context manager, or call :meth:`close`."""

    def __init__(self, path: str | Path | None = None, *, read_only: bool = False) -> None:
        self.path = Path(path) if path is not None else default_store_path()
        self.read_only = read_only
        self._ids: Pseudonyms | None = None
        self._con = self._connect()
        try:
            self._check_version()
        except BaseException:
            self._con.close()
            raise

    # -- opening --------------------------------------------------------------------
    def _connect(self) -> duckdb.DuckDBPyConnection:
        if self.read_only and not self.path.exists():
            raise UnreadableInputError(
                explain(str(self.path), "no store at this path", "import logs first (`selflearn store import FILE`) or pass --store")
            )
        if not self.read_only and self.path.parent and not self.path.parent.exists():
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise UnreadableInputError(explain(str(self.path.parent), f"cannot create the store's directory ({exc.strerror or exc})",
                                                   "pick a --store path in a directory you can write")) from exc
        if not self.read_only and not _writable(self.path):
            raise UnreadableInputError(explain(str(self.path), "is not writable (permission denied) and this command writes the store",
                                               "fix the permissions of the file and its directory, or run a command that only reads it"))
        try:
            # A bounded buffer pool: big imports spill to disk instead of growing the process.
            con = duckdb.connect(str(self.path), read_only=self.read_only,
                                 config={"memory_limit": os.environ.get("SELFLEARN_MEMORY_LIMIT", "512MB")})
        except duckdb.IOException as exc:
            if "lock" in str(exc).lower():
                raise StoreBusyError(
                    explain(str(self.path), "another process has this store open for writing",
                            "wait for it to finish, or use another --store")
                ) from exc
            raise UnreadableInputError(
                explain(str(self.path), f"cannot open as a DuckDB store ({exc})", "pass the path of a selflearn store")
            ) from exc
        except duckdb.Error as exc:
            raise UnreadableInputError(
                explain(str(self.path), f"not a DuckDB store ({exc})", "pass the path of a selflearn store")
            ) from exc
        con.execute("SET enable_progress_bar = false")  # never draw on stdout (--json output is parsed)
        return con

    def has_table(self, name: str) -> bool:
        """Whether the store holds a table of that name (derived tables such as ``signals`` appear
        only after the command that builds them)."""
        cur = self._con.cursor()
        return bool(cur.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [name]).fetchall()[0][0])

    def has_derived(self, name: str) -> bool:
        """Whether the derived table ``name`` (signals, rephrases, rewrites, failure_points) has been computed."""
        from selflearn.store.derived import entry

        return entry(self._con.cursor(), name) is not None

    def _version(self) -> int:
        if not self.has_table("meta"):
            n_tables = self._con.execute("SELECT count(*) FROM information_schema.tables").fetchall()[0][0]
            if n_tables:
                raise StoreVersionError(
                    explain(str(self.path), "this DuckDB file has tables but is not a selflearn store",
                            "pass another --store path")
                )
            return 0
        rows = self._con.execute("SELECT value FROM meta WHERE key = 'store_version'").fetchall()
        row = rows[0] if rows else None
        if row is None:
            return 0
        try:
            return int(row[0])
        except ValueError:
            raise StoreVersionError(explain(f"store_version {row[0]!r}", "must be a whole number: the store's meta table is damaged",
                                            "restore the store from a backup, or import the logs into a new store")) from None

    def _check_version(self) -> None:
        version = self._version()
        if version > STORE_VERSION:
            raise StoreVersionError(
                explain(f"store version {version}", f"this selflearn reads store versions up to {STORE_VERSION}",
                        "upgrade selflearn (pip install -U selflearn)")
            )
        if version < STORE_VERSION:
            if self.read_only:
                raise StoreVersionError(
                    explain(f"store version {version}", f"this selflearn needs store version {STORE_VERSION}",
                            f"run `selflearn store migrate --store {self.path}`")
                )
            self.migrate(version)

    def migrate(self, from_version: int) -> None:
        """Apply every migration after ``from_version`` in one transaction (all or nothing)."""
        self._con.execute("BEGIN TRANSACTION")
        try:
            if from_version == 0:
                self._con.execute("CREATE TABLE meta (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL)")
            for step in MIGRATIONS[from_version:]:
                step(self._con)
            self._con.execute(
                "INSERT OR REPLACE INTO meta VALUES ('store_version', ?)", [str(len(MIGRATIONS))]
            )
            self._con.execute("COMMIT")
        except BaseException:
            self._con.execute("ROLLBACK")
            raise

    def meta(self, key: str) -> str | None:
        """A value of the store's ``meta`` table (store_version, ids, text, pseudonym_key_fingerprint)."""
        rows = self._con.cursor().execute("SELECT value FROM meta WHERE key = ?", [key]).fetchall()
        return rows[0][0] if rows else None

    def pseudonyms(self) -> Pseudonyms:
        """The keys that turn raw ids into this store's pseudonyms (``$SELFLEARN_PSEUDONYM_KEY`` or the
        key file beside the store, created on first use); checked against the fingerprint the store
        recorded."""
        if self._ids is None:
            self._ids = store_pseudonyms(self)
        return self._ids

    @property
    def key_path(self) -> Path:
        return key_path_for(self.path)

    @property
    def version(self) -> int:
        return self._version()

    # -- access ---------------------------------------------------------------------
    def reader(self) -> duckdb.DuckDBPyConnection:
        """A cursor of its own for reading (safe to use from another thread)."""
        return self._con.cursor()

    def writer(self) -> duckdb.DuckDBPyConnection:
        """The write connection itself (to register SQL functions on it; write through :meth:`transaction`)."""
        return self._con

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """The write connection inside one transaction: committed on success, rolled back on any error."""
        if self.read_only:
            raise PermissionError(f"{self.path} was opened read-only")
        self._con.execute("BEGIN TRANSACTION")
        try:
            yield self._con
        except BaseException:
            self._con.execute("ROLLBACK")
            raise
        self._con.execute("COMMIT")

    def close(self) -> None:
        self._con.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
