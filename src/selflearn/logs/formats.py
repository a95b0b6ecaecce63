"""Read log files of every supported format as batches of JSON records, streaming.

Whatever the format, a file becomes a stream of :class:`Batch` es: the JSON text
of each record with its position (line for JSONL and CSV, row for Parquet), so
validation, quarantine and storage are the same code for all formats. Memory is
bounded by the batch size whatever the file size.

Formats: JSONL (``.jsonl``, ``.ndjson``, plain or ``.gz``), CSV (``.csv``, plain
or ``.gz``; nested fields as dotted column names such as ``device.type``, lists
and maps as JSON text), Parquet (nested columns, or the same dotted flat layout),
and Rasa tracker-store exports (``--format rasa``, see :mod:`selflearn.logs.rasa`).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any, BinaryIO

from selflearn.errors import InvalidInputError, UnreadableInputError, explain
from selflearn.logs.schema import Turn

__all__ = ["Batch", "FORMATS", "detect_format", "read_batches", "nest_flat_record", "EXTRA_COLUMN"]

FORMATS = ("jsonl", "csv", "parquet", "rasa")
#: In CSV and Parquet, a column holding a JSON object of extra fields, merged into the record.
EXTRA_COLUMN = "_extra"

_MAGIC = {b"\x1f\x8b": "gzip", b"PAR1": "Parquet", b"PK\x03\x04": "zip"}


@dataclass
class Batch:
    """Records of one file: JSON text per record and where it was in the file."""

    positions: list[int] = field(default_factory=list)
    records: list[bytes] = field(default_factory=list)
    #: (position, original text, reason) for records that could not even become JSON.
    problems: list[tuple[int, str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.records) + len(self.problems)


def detect_format(path: Path) -> str:
    """The format a file's name claims: jsonl, csv or parquet (Rasa exports need ``--format rasa``)."""
    name = path.name.lower().removesuffix(".gz")
    for suffix, fmt in ((".jsonl", "jsonl"), (".ndjson", "jsonl"), (".json", "jsonl"), (".csv", "csv"),
                        (".parquet", "parquet"), (".pq", "parquet")):
        if name.endswith(suffix):
            return fmt
    raise InvalidInputError(
        explain(str(path), "cannot tell the format from the name (.jsonl, .jsonl.gz, .csv, .csv.gz, .parquet)",
                "rename the file or pass --format jsonl|csv|parquet|rasa")
    )


def _open(path: Path, fmt: str) -> BinaryIO:
    """Open for binary reading; check the bytes are what the name claims (gzip or not)."""
    try:
        raw = path.open("rb")
    except IsADirectoryError as exc:
        raise UnreadableInputError(explain(str(path), "is a directory", "pass files, e.g. logs/*.jsonl")) from exc
    except OSError as exc:
        raise UnreadableInputError(
            explain(str(path), f"cannot be read ({exc.strerror or exc})", "check the path and its permissions")
        ) from exc
    head = raw.read(4)
    raw.seek(0)
    is_gz = path.name.lower().endswith(".gz")
    if is_gz and head[:2] != b"\x1f\x8b":
        raw.close()
        raise UnreadableInputError(
            explain(str(path), "name ends in .gz but the file is not gzip-compressed", "rename it without .gz")
        )
    if is_gz:
        return gzip.open(raw, "rb")  # type: ignore[return-value]
    for magic, what in _MAGIC.items():
        if fmt != "parquet" and head.startswith(magic):
            raw.close()
            raise UnreadableInputError(
                explain(str(path), f"file is {what} data, not {fmt.upper()} as its name claims",
                        "rename it to match its content (e.g. .jsonl.gz or .parquet), or pass --format")
            )
    return raw  # type: ignore[return-value]


def read_batches(path: Path, fmt: str, batch_size: int = 50_000) -> Iterator[Batch]:
    """Yield the file's records in batches. Raises UnreadableInputError / InvalidInputError for the file."""
    if fmt not in FORMATS:
        raise InvalidInputError(explain(fmt, f"unknown format; known: {', '.join(FORMATS)}", "pass one of them"))
    readers = {"jsonl": _jsonl, "csv": _csv, "parquet": _parquet, "rasa": _rasa}
    empty = True
    for batch in readers[fmt](path, batch_size):
        if len(batch):
            empty = False
            yield batch
    if empty:
        raise InvalidInputError(explain(str(path), "file holds no records", "check that the export finished"))


def _jsonl(path: Path, batch_size: int) -> Iterator[Batch]:
    with _open(path, "jsonl") as fh:
        batch = Batch()
        try:
            for line_no, line in enumerate(fh, start=1):
                if line_no == 1 and line.startswith(b"\xef\xbb\xbf"):
                    line = line[3:]  # a UTF-8 byte-order mark (Windows editors write one) is not part of the record
                line = line.strip()
                if not line:
                    continue  # blank lines are not records
                batch.positions.append(line_no)
                batch.records.append(line)
                if len(batch.records) >= batch_size:
                    yield batch
                    batch = Batch()
        except (OSError, EOFError) as exc:  # truncated or corrupt gzip
            raise UnreadableInputError(
                explain(str(path), f"unreadable after line {line_no} ({exc})", "re-export or re-compress the file")
            ) from exc
        yield batch


# -- tabular formats (CSV, Parquet): dotted column names, values coerced by the schema -----------
def _leaf_kinds() -> dict[str, str]:
    schema = Turn.model_json_schema()
    defs = schema["$defs"]
    kinds: dict[str, str] = {}

    def walk(node: dict[str, Any], prefix: str) -> None:
        while "$ref" in node:
            node = defs[node["$ref"].rsplit("/", 1)[-1]]
        alts = [a for a in node.get("anyOf", [node]) if a.get("type") != "null"]
        resolved = [defs[a["$ref"].rsplit("/", 1)[-1]] if "$ref" in a else a for a in alts]
        node = resolved[0] if len(resolved) == 1 else {"type": "json"}
        if node.get("type") == "object" and "properties" in node:
            for key, sub in node["properties"].items():
                walk(sub, f"{prefix}.{key}" if prefix else key)
            return
        kind = node.get("type", "json")
        kinds[prefix] = "json" if kind in ("object", "array") else ("integer" if "const" in node else kind)

    walk(schema, "")
    return kinds


_KINDS = _leaf_kinds()


def _coerce(kind: str, value: Any) -> Any:
    """A CSV cell (str) or Parquet value to the JSON value the schema expects; leave it be if it doesn't fit."""
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if not isinstance(value, str) or kind == "string":
        return value
    text = value.strip()
    try:
        if kind == "integer" and text.lstrip("-").isdigit():
            return int(text)
        if kind == "number":
            return float(text)
        if kind == "boolean" and text.lower() in ("true", "false"):
            return text.lower() == "true"
        if kind == "json":
            return json.loads(text)
    except ValueError:
        pass
    return value  # validation reports it with the value


def nest_flat_record(row: dict[str, Any], *, cells_are_text: bool) -> dict[str, Any]:
    """``{"device.type": "speaker", ...}`` (or nested) into a record; unknown columns become extra fields."""
    record: dict[str, Any] = {}
    for column, value in row.items():
        if value is None or (cells_are_text and value == "" and _KINDS.get(column) != "string"):
            continue  # an empty cell is a missing value, except for text fields
        if column == EXTRA_COLUMN:
            extra = json.loads(value) if isinstance(value, str) else value
            _deep_merge(record, extra if isinstance(extra, dict) else {EXTRA_COLUMN: extra})
            continue
        if isinstance(value, dict):  # a nested Parquet struct: flatten it through the same rules
            value = nest_flat_record({f"{column}.{k}": v for k, v in value.items()}, cells_are_text=False)
            _deep_merge(record, value)
            continue
        kind = _KINDS.get(column, "json" if cells_are_text else "string")
        if isinstance(value, list):  # a native Parquet list: struct elements carry None for absent fields
            value = [_plain(v) for v in value]
        else:
            value = _coerce(kind, value)
        target = record
        *parents, leaf = column.split(".")
        for part in parents:
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                break
        else:
            target[leaf] = value
    return record


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if v is not None}
    return _coerce("string", value)


def _deep_merge(into: dict[str, Any], extra: dict[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _deep_merge(into[key], value)
        else:
            into[key] = value


def _csv(path: Path, batch_size: int) -> Iterator[Batch]:
    with _open(path, "csv") as fh:
        text = io.TextIOWrapper(fh, encoding="utf-8-sig", errors="strict", newline="")  # -sig: a byte-order mark is skipped
        reader = csv.DictReader(text)
        batch = Batch()
        try:
            for row in reader:
                line = reader.line_num
                if None in row or any(v is None for v in row.values()):
                    original = ",".join(str(v) for v in row.values() if not isinstance(v, list))
                    batch.problems.append(
                        (line, original, explain(f"row at line {line}", f"has a different number of cells than the "
                                                 f"header's {len(reader.fieldnames or [])} columns",
                                                 "quote cells that contain commas"))
                    )
                    continue
                batch.positions.append(line)
                batch.records.append(json.dumps(nest_flat_record(row, cells_are_text=True)).encode())
                if len(batch) >= batch_size:
                    yield batch
                    batch = Batch()
        except UnicodeDecodeError as exc:
            raise UnreadableInputError(
                explain(str(path), f"is not UTF-8 text near line {reader.line_num + 1}", "re-save the CSV as UTF-8")
            ) from exc
        except csv.Error as exc:
            raise UnreadableInputError(explain(str(path), f"is not valid CSV ({exc})", "check the export")) from exc
        yield batch


def _parquet(path: Path, batch_size: int) -> Iterator[Batch]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(str(path))
    except FileNotFoundError as exc:
        raise UnreadableInputError(explain(str(path), "does not exist", "check the path")) from exc
    except (OSError, pa.ArrowException) as exc:
        raise UnreadableInputError(
            explain(str(path), f"is not a Parquet file ({exc})", "rename it to match its content, or pass --format")
        ) from exc
    row = 0
    batches = pf.iter_batches(batch_size=batch_size)
    while True:
        try:
            rb = next(batches)
        except StopIteration:
            return
        except (OSError, pa.ArrowException) as exc:
            raise UnreadableInputError(
                explain(str(path), f"unreadable after row {row} ({exc})", "re-export the file")
            ) from exc
        batch = Batch()
        for record in rb.to_pylist():
            row += 1
            batch.positions.append(row)
            batch.records.append(json.dumps(nest_flat_record(record, cells_are_text=False), default=str).encode())
        yield batch


def _rasa(path: Path, batch_size: int) -> Iterator[Batch]:
    from selflearn.logs.rasa import rasa_turns

    batch = Batch()
    for position, turn in rasa_turns(path):
        batch.positions.append(position)
        batch.records.append(json.dumps(turn).encode())
        if len(batch) >= batch_size:
            yield batch
            batch = Batch()
    yield batch
