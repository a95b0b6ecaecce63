"""Import log files into the store: validate every record, keep the good, quarantine the bad.

Guarantees, per file:

* **Atomic**: a file is one transaction. A crash, ``kill -9`` or Ctrl-C mid-file
  leaves the store exactly as before that file (earlier files stay imported).
* **Idempotent**: a turn is identified by ``(session_id, turn_index)``; importing
  the same turn again counts it as a duplicate and adds nothing. The same id with
  *different* content is a conflict and goes to quarantine.
* **Nothing silently dropped**: every record is imported, counted as a duplicate,
  or written to the quarantine JSONL with its file, line and a one-line reason.
* **Streaming**: files are read in batches; memory does not grow with file size.

Validation is two-tier (see :mod:`selflearn.logs.fastcheck`): a msgspec type
compiled from the schema accepts clean records at C speed, and pydantic decides
every other record and explains the ones it rejects.
"""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import msgspec
import pyarrow as pa
from pydantic import BaseModel, ValidationError

from selflearn.errors import SelflearnError, explain
from selflearn.logs.fastcheck import compile_fast_type
from selflearn.logs.formats import Batch, detect_format, read_batches
from selflearn.logs.messages import describe_validation_error
from selflearn.logs.schema import Turn
from selflearn.privacy.pseudonyms import Pseudonyms
from selflearn.privacy.scrub import Scrubber
from selflearn.store.columns import COLUMNS, FLAT_OBJECTS, projection_sql, same_content_sql
from selflearn.store.store import Store
from selflearn.text import normalise_sql

__all__ = ["FileReport", "ImportReport", "import_files", "default_quarantine_path"]

_FAST = compile_fast_type(Turn.model_json_schema())
_COLS = ", ".join(c.name for c in COLUMNS)


@dataclass
class FileReport:
    path: str
    format: str = ""
    imported: int = 0
    duplicates: int = 0
    quarantined: int = 0
    error: str | None = None  # the whole file could not be read
    seconds: float = 0.0
    scrubbed: dict[str, int] = field(default_factory=dict)  # PII replaced by a placeholder, by kind


@dataclass
class ImportReport:
    files: list[FileReport] = field(default_factory=list)
    quarantine_path: str | None = None

    @property
    def imported(self) -> int:
        return sum(f.imported for f in self.files)

    @property
    def duplicates(self) -> int:
        return sum(f.duplicates for f in self.files)

    @property
    def quarantined(self) -> int:
        return sum(f.quarantined for f in self.files)

    @property
    def scrubbed(self) -> dict[str, int]:
        """PII replaced by placeholders in the imported turns, by kind."""
        total: dict[str, int] = {}
        for f in self.files:
            for kind, n in f.scrubbed.items():
                total[kind] = total.get(kind, 0) + n
        return dict(sorted(total.items()))

    @property
    def ok(self) -> bool:
        """True when at least one record was accepted (imported or already present)."""
        return self.imported + self.duplicates > 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "imported": self.imported,
            "duplicates": self.duplicates,
            "quarantined": self.quarantined,
            "scrubbed": self.scrubbed,
            "quarantine_path": self.quarantine_path,
            "files": [asdict(f) for f in self.files],
        }


def default_quarantine_path(store_path: Path) -> Path:
    return store_path.with_name(store_path.name.removesuffix(".duckdb") + ".quarantine.jsonl")


def _extras(model: BaseModel) -> dict[str, Any]:
    """Extra fields of a validated turn, nested like the record, for the objects stored as columns."""
    out: dict[str, Any] = dict(model.model_extra or {})
    for name in FLAT_OBJECTS:
        sub = getattr(model, name)
        if sub is not None and sub.model_extra:
            out[name] = dict(sub.model_extra)
    return out


_ID_COLUMNS = ("session_id", "user_id", "device_id")
TEXT_COLUMNS = ("asr_text", "response_text", "feedback_comment")
JSON_TEXT_COLUMNS = ("asr_nbest", "slots", "er_entities")  # extras and device state are the team's own fields: stored as given
_RAW_COLUMNS = ("asr_text", "asr_nbest", "slots", "er_entities", "response_text", "feedback_comment")


_UDFS = ("sl_pseudonym", "sl_scrub", "sl_scrub_json")


@contextmanager
def _privacy_functions(con: Any, ids: Pseudonyms, scrubber: Scrubber) -> Iterator[None]:
    """The SQL functions the import applies (pseudonym, scrub, scrub every string of a JSON value),
    registered on ``con`` (outside any transaction) for the duration of the import."""

    def vectorised(fn: Callable[[str], str | None]) -> Callable[[pa.Array], pa.Array]:
        def column(arr: pa.Array) -> pa.Array:  # each distinct value once (ids and requests repeat)
            if isinstance(arr, pa.ChunkedArray):
                arr = arr.combine_chunks()
            d = arr.dictionary_encode()
            return pa.array([fn(v) for v in d.dictionary.to_pylist()], pa.string()).take(d.indices)
        return column

    varchar = duckdb.sqltype("VARCHAR")
    for name, fn in zip(_UDFS, (ids.of, scrubber.text, scrubber.json), strict=True):
        con.create_function(name, vectorised(fn), [varchar], varchar, type="arrow")
    try:
        yield
    finally:
        for name in _UDFS:
            con.remove_function(name)


class _FileImport:
    """One file's import, inside one transaction on the store's write connection. Ids become
    pseudonyms and texts are scrubbed before anything is compared or written."""

    def __init__(self, con: Any, import_id: int, source: str, quarantine: Any, scrubber: Scrubber, keep_raw_text: bool) -> None:
        self.con = con
        self.import_id = import_id
        self.source = source
        self.quarantine = quarantine
        self.report = FileReport(path=source)
        self.keep_raw_text = keep_raw_text
        self.scrubber = scrubber
        scrubber.counts.clear()
        con.execute("CREATE OR REPLACE TEMP TABLE touched_sessions (session_id VARCHAR PRIMARY KEY)")

    def reject(self, position: int, original: bytes | str, reason: str) -> None:
        entry = {"file": self.source, "line": position, "reason": reason}
        if isinstance(original, bytes):
            try:
                entry["record"] = original.decode("utf-8")
            except UnicodeDecodeError as exc:  # e.g. a Latin-1 line: keep its exact bytes, say why
                entry["reason"] = explain(f"byte 0x{original[exc.start]:02x} at position {exc.start}", "the line is not UTF-8 text",
                                          "re-save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)")
                entry["record"] = original.decode("utf-8", "replace")
                entry["record_base64"] = base64.b64encode(original).decode("ascii")
        else:
            entry["record"] = original
        self.quarantine.write(json.dumps(entry) + "\n")
        self.report.quarantined += 1

    def slow(self, items: Iterable[tuple[int, bytes]], staged: list[tuple[int, str, str | None]]) -> None:
        """Let pydantic decide; stage what it accepts in canonical form, quarantine the rest."""
        for position, raw in items:
            try:
                model = Turn.model_validate_json(raw)
            except ValidationError as exc:
                self.reject(position, raw, describe_validation_error(exc))
                continue
            extra = _extras(model)
            staged.append((position, model.model_dump_json(), json.dumps(extra) if extra else None))

    def add(self, batch: Batch, originals: dict[int, bytes]) -> None:
        for position, original, reason in batch.problems:
            self.reject(position, original, reason)
        staged: list[tuple[int, str, str | None]] = []
        rejected_fast: list[tuple[int, bytes]] = []
        decode = _FAST.decode
        for position, raw in zip(batch.positions, batch.records, strict=True):
            try:
                decode(raw)
            except (msgspec.DecodeError, ValueError):  # ValueError: invalid UTF-8
                rejected_fast.append((position, raw))
            else:
                staged.append((position, raw.decode("utf-8"), None))
        self.slow(rejected_fast, staged)
        if not staged:
            return
        self._store(staged, originals)

    def _stage(self, staged: list[tuple[int, str, str | None]]) -> None:
        positions, raws, extras = zip(*staged, strict=True)
        table = pa.table(
            {"line_no": pa.array(positions, pa.int64()), "raw": pa.array(raws, pa.string()),
             "extra": pa.array(extras, pa.string())}
        )
        self.con.register("stage_arrow", table)
        self.con.execute(f"CREATE OR REPLACE TEMP TABLE proj_raw AS {projection_sql('stage_arrow')}")
        self.con.unregister("stage_arrow")
        private = [f"sl_pseudonym({c}) AS {c}" for c in _ID_COLUMNS] + [f"sl_scrub({c}) AS {c}" for c in TEXT_COLUMNS]
        private += [f"sl_scrub_json({c}) AS {c}" for c in JSON_TEXT_COLUMNS]
        self.con.execute(f"CREATE OR REPLACE TEMP TABLE proj AS SELECT * REPLACE ({', '.join(private)}), session_id AS raw_sid FROM proj_raw")

    def _store(self, staged: list[tuple[int, str, str | None]], originals: dict[int, bytes]) -> None:
        con = self.con
        self._stage(staged)
        # A timestamp the fast path let through but DuckDB cannot read: pydantic decides (a net; the fast path
        # itself refuses dates that do not exist, such as 2026-02-30).
        unread = [r[0] for r in con.execute("SELECT line_no FROM proj WHERE ts IS NULL").fetchall()]
        if unread:
            redo: list[tuple[int, str, str | None]] = []
            self.slow(((p, originals[p]) for p in unread), redo)
            unread_set = set(unread)
            keep = [s for s in staged if s[0] not in unread_set] + redo
            if not keep:
                return
            self._stage(keep)
        # Classify: new, duplicate (same id, same content) or conflict (same id, other content).
        same_stored = same_content_sql("f", "t")
        same_first = same_content_sql("f", "g")
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE verdict AS
               WITH ranked AS (
                 SELECT *, row_number() OVER (PARTITION BY session_id, turn_index ORDER BY line_no) AS nth FROM proj)
               SELECT f.line_no, f.session_id, f.raw_sid, f.turn_index, f.ts,
                 CASE WHEN t.session_id IS NOT NULL AND {same_stored} THEN 'duplicate'
                      WHEN t.session_id IS NOT NULL THEN 'conflict_store'
                      WHEN f.nth > 1 AND {same_first} THEN 'duplicate'
                      WHEN f.nth > 1 THEN 'conflict_file'
                      ELSE 'new' END AS verdict,
                 g.line_no AS first_line
               FROM ranked f
               LEFT JOIN turns t USING (session_id, turn_index)
               LEFT JOIN (SELECT * FROM ranked WHERE nth = 1) g
                 ON f.nth > 1 AND g.session_id = f.session_id AND g.turn_index = f.turn_index"""
        )
        # Order: a new turn must not be earlier than a lower-index turn of its session (stored or new),
        # nor later than a higher-index turn already stored.
        con.execute(
            """CREATE OR REPLACE TEMP TABLE disorder AS
               WITH cand AS (SELECT * FROM verdict WHERE verdict = 'new'),
               others AS (
                 SELECT session_id, turn_index, ts, true AS stored FROM turns
                 WHERE session_id IN (SELECT session_id FROM cand)
                 UNION ALL SELECT session_id, turn_index, ts, false FROM cand)
               SELECT c.line_no, arg_max(o.turn_index, o.ts) AS other_index, max(o.ts) AS other_ts, 'before' AS kind
               FROM cand c JOIN others o ON o.session_id = c.session_id AND o.turn_index < c.turn_index AND o.ts > c.ts
               GROUP BY c.line_no
               UNION ALL
               SELECT c.line_no, arg_min(o.turn_index, o.ts), min(o.ts), 'after'
               FROM cand c JOIN others o ON o.session_id = c.session_id AND o.stored
                    AND o.turn_index > c.turn_index AND o.ts < c.ts
               GROUP BY c.line_no"""
        )
        bad = con.execute(
            """SELECT v.line_no, v.raw_sid, v.turn_index, v.verdict, v.first_line,
                      strftime(v.ts, '%Y-%m-%dT%H:%M:%S.%fZ'), d.other_index,
                      strftime(d.other_ts, '%Y-%m-%dT%H:%M:%S.%fZ'), d.kind
               FROM verdict v LEFT JOIN (SELECT * FROM disorder QUALIFY row_number() OVER (PARTITION BY line_no) = 1) d
                 USING (line_no)
               WHERE v.verdict LIKE 'conflict%' OR d.line_no IS NOT NULL"""
        ).fetchall()
        for line_no, sid, idx, verdict, first_line, ts, other_idx, other_ts, kind in bad:
            turn = f"turn ({sid!r}, {idx})"
            if verdict == "conflict_store":
                reason = explain(turn, "is already stored (earlier in this file or by an earlier import) with "
                                 "different content; (session_id, turn_index) must be unique",
                                 "give the turn a new session_id or turn_index, or fix the earlier record")
            elif verdict == "conflict_file":
                reason = explain(turn, f"appears again with different content (first at line {first_line})",
                                 "keep one version of the turn")
            else:
                rel = "earlier" if kind == "before" else "later"
                reason = explain(
                    f"{turn} at {ts}",
                    f"is {rel} than turn {other_idx} of the same session at {other_ts}; "
                    "timestamps must not decrease with turn_index",
                    "fix the timestamps or the turn_index order",
                )
            self.reject(line_no, originals[line_no], reason)
        con.execute(
            f"""INSERT INTO turns SELECT {_COLS}, extra, {int(self.import_id)}, {normalise_sql('asr_text')} FROM proj
                WHERE line_no IN (SELECT line_no FROM verdict WHERE verdict = 'new')
                  AND line_no NOT IN (SELECT line_no FROM disorder)"""
        )
        if self.keep_raw_text:
            raw_cols = ", ".join(f"r.{c}" for c in _RAW_COLUMNS)
            con.execute(
                f"""INSERT OR REPLACE INTO raw_text SELECT p.session_id, p.turn_index, {raw_cols} FROM proj p JOIN proj_raw r USING (line_no)
                    WHERE line_no IN (SELECT line_no FROM verdict WHERE verdict = 'new')
                      AND line_no NOT IN (SELECT line_no FROM disorder)"""
            )
        counts = dict(con.execute("SELECT verdict, count(*) FROM verdict GROUP BY ALL").fetchall())
        n_disorder = con.execute("SELECT count(DISTINCT line_no) FROM disorder").fetchone()[0]
        self.report.imported += counts.get("new", 0) - n_disorder
        self.report.duplicates += counts.get("duplicate", 0)
        con.execute(
            """INSERT OR IGNORE INTO touched_sessions SELECT DISTINCT session_id FROM verdict
               WHERE verdict = 'new'"""
        )

    def finish(self, started: datetime, fmt: str) -> None:
        con = self.con
        con.execute("DELETE FROM sessions WHERE session_id IN (SELECT session_id FROM touched_sessions)")
        con.execute(
            """INSERT INTO sessions
               SELECT session_id, arg_min(user_id, turn_index), arg_min(device_id, turn_index), min(ts), max(ts),
                      count(*)
               FROM turns WHERE session_id IN (SELECT session_id FROM touched_sessions) GROUP BY session_id"""
        )
        r = self.report
        con.execute(
            "INSERT INTO imports VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [self.import_id, self.source, fmt, started, datetime.now(UTC), r.imported, r.duplicates, r.quarantined],
        )
        r.scrubbed = dict(sorted(self.scrubber.counts.items()))
        con.execute("DROP TABLE IF EXISTS proj; DROP TABLE IF EXISTS proj_raw; DROP TABLE IF EXISTS verdict; DROP TABLE IF EXISTS disorder")


def import_files(
    store: Store,
    paths: Iterable[str | Path],
    *,
    fmt: str | None = None,
    quarantine_path: str | Path | None = None,
    batch_size: int = 50_000,
    progress: Callable[[str, int], None] | None = None,
    keep_raw_text: bool = False,
) -> ImportReport:
    """Import each file atomically. File-level problems are reported, never raised (a missing or
    wrong pseudonym key is raised: no file can be imported without it).

    Ids become keyed pseudonyms and texts are scrubbed of PII before anything is stored;
    ``keep_raw_text`` also keeps each turn's unscrubbed texts in the ``raw_text`` table (for teams
    whose policy allows it; every artefact still reads the scrubbed ``turns``)."""
    ids = store.pseudonyms()
    qpath = Path(quarantine_path) if quarantine_path else default_quarantine_path(store.path)
    report = ImportReport(quarantine_path=str(qpath))
    _remove_stale_parts(qpath)
    scrubber = Scrubber()
    with _privacy_functions(store.writer(), ids, scrubber):
        for p in paths:
            report.files.append(_import_file(store, Path(p), fmt, qpath, scrubber, keep_raw_text, progress, batch_size))
    return report


def _import_file(store: Store, path: Path, fmt: str | None, qpath: Path, scrubber: Scrubber, keep_raw_text: bool,
                 progress: Callable[[str, int], None] | None, batch_size: int) -> FileReport:
    """One file, in one transaction; its quarantined records join the quarantine file once committed."""
    started = datetime.now(UTC)
    t0 = time.perf_counter()
    part = qpath.with_name(qpath.name + f".{os.getpid()}.part")
    file_report = FileReport(path=str(path))
    try:
        file_fmt = fmt or detect_format(path)
        file_report.format = file_fmt
        part.parent.mkdir(parents=True, exist_ok=True)
        with _owner_only(part, truncate=True) as qfile, store.transaction() as con:
            import_id = con.execute("SELECT coalesce(max(import_id), 0) + 1 FROM imports").fetchall()[0][0]
            job = _FileImport(con, import_id, str(path), qfile, scrubber, keep_raw_text)
            job.report.format = file_fmt
            for batch in read_batches(path, file_fmt, batch_size):
                originals = dict(zip(batch.positions, batch.records, strict=True))
                job.add(batch, originals)
                if progress:
                    progress(str(path), len(batch))
            job.finish(started, file_fmt)
            file_report = job.report
        # Committed: now (and only now) the file's quarantined records join the quarantine file.
        if file_report.quarantined:
            with _owner_only(qpath) as out, part.open(encoding="utf-8") as src:
                for line in src:
                    out.write(line)
    except SelflearnError as exc:
        file_report = FileReport(path=str(path), format=file_report.format, error=str(exc))
    except duckdb.Error as exc:  # a value the store cannot hold that validation let through: this file only, rolled back
        file_report = FileReport(path=str(path), format=file_report.format,
                                 error=explain(str(path), f"the store refused a value ({str(exc).splitlines()[0]}); nothing of this file was imported",
                                               "report this file to the selflearn maintainers; the other files were imported"))
    finally:
        part.unlink(missing_ok=True)
    file_report.seconds = round(time.perf_counter() - t0, 3)
    return file_report


def _owner_only(path: Path, *, truncate: bool = False):
    """Open for appending (or writing) a file only its owner can read: quarantined records are the
    raw input (ids and text before pseudonyms and scrubbing), kept so they can be fixed."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if truncate else os.O_APPEND)
    return os.fdopen(os.open(path, flags, 0o600), "w" if truncate else "a", encoding="utf-8")


def _remove_stale_parts(qpath: Path) -> None:
    """Quarantine parts left by an import that was killed (its process is gone): never committed, so
    never meant to be kept."""
    for part in qpath.parent.glob(qpath.name + ".*.part"):
        pid = part.name[len(qpath.name) + 1: -len(".part")]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            part.unlink(missing_ok=True)
        except OSError:
            pass  # alive (owned by someone else): leave it
