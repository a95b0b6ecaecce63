"""How a :class:`~selflearn.logs.schema.Turn` maps to the store's ``turns`` table, both ways.

One list, :data:`COLUMNS`, drives the import projection (record JSON -> columns),
the export (columns -> record JSON) and the table's DDL, so the three agree.
Free-form parts of a record (maps, lists of objects) are kept as JSON text,
extra fields of the flattened objects in the ``extra`` JSON column.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from selflearn.logs.fastcheck import projection_structure
from selflearn.logs.schema import SCHEMA_VERSION, Turn

__all__ = ["Column", "COLUMNS", "FLAT_OBJECTS", "turns_ddl", "projection_sql", "same_content_sql", "export_sql"]


@dataclass(frozen=True)
class Column:
    name: str
    sql_type: str
    path: tuple[str, ...]
    default: str | None = None  # SQL used when the field is missing or null (inside a present parent)


COLUMNS: tuple[Column, ...] = (
    Column("session_id", "VARCHAR NOT NULL", ("session_id",)),
    Column("turn_index", "INTEGER NOT NULL", ("turn_index",)),
    Column("ts", "TIMESTAMPTZ NOT NULL", ("timestamp",)),
    Column("user_id", "VARCHAR NOT NULL", ("user_id",)),
    Column("device_id", "VARCHAR NOT NULL", ("device_id",)),
    Column("device_type", "VARCHAR NOT NULL", ("device", "type")),
    Column("has_screen", "BOOLEAN NOT NULL", ("device", "has_screen")),
    Column("device_state", "JSON", ("device", "state"), "'{}'"),
    Column("location", "VARCHAR", ("device", "location")),
    Column("asr_text", "VARCHAR NOT NULL", ("utterance", "text")),
    Column("asr_confidence", "DOUBLE", ("utterance", "asr_confidence")),
    Column("asr_nbest", "JSON", ("utterance", "nbest")),
    Column("audio_ref", "VARCHAR", ("utterance", "audio_ref")),
    Column("domain", "VARCHAR", ("nlu", "domain")),
    Column("intent", "VARCHAR", ("nlu", "intent")),
    Column("slots", "JSON", ("nlu", "slots"), "'[]'"),
    Column("nlu_confidence", "DOUBLE", ("nlu", "confidence")),
    Column("nlu_top_k", "JSON", ("nlu", "top_k")),
    Column("er_status", "VARCHAR", ("entity_resolution", "status")),
    Column("er_entities", "JSON", ("entity_resolution", "entities"), "'[]'"),
    Column("response_status", "VARCHAR", ("response", "status")),
    Column("response_text", "VARCHAR", ("response", "text")),
    Column("response_action", "VARCHAR", ("response", "action")),
    Column("latency_ms", "DOUBLE", ("latency_ms",)),
    Column("barge_in", "BOOLEAN NOT NULL", ("feedback", "barge_in"), "false"),
    Column("explicit_feedback", "VARCHAR", ("feedback", "explicit")),
    Column("feedback_prompted", "BOOLEAN NOT NULL", ("feedback", "prompted"), "false"),
    Column("feedback_comment", "VARCHAR", ("feedback", "comment")),
)

#: Objects whose fields become columns; for the nullable ones, the column that is non-null iff present.
FLAT_OBJECTS: dict[str, str | None] = {
    "device": None,
    "utterance": None,
    "nlu": "domain",
    "entity_resolution": "er_status",
    "response": "response_status",
    "feedback": None,
}
_JSON_PATHS = {c.path for c in COLUMNS if c.sql_type.startswith("JSON")}


def turns_ddl() -> str:
    cols = ",\n  ".join(f"{c.name} {c.sql_type}" for c in COLUMNS)
    return (
        f"CREATE TABLE turns (\n  {cols},\n  extra JSON,\n  import_id BIGINT NOT NULL\n)"
    )


def _access(path: tuple[str, ...]) -> str:
    return "s." + ".".join(f'"{p}"' for p in path)


@cache
def projection_sql(stage: str) -> str:
    """SELECT over ``stage(line_no, raw, extra)`` giving ``line_no``, every column and ``extra``.

    ``raw`` must be a record already validated (fast path or pydantic's canonical JSON).
    A timestamp DuckDB cannot read comes out NULL; the importer re-routes those rows.
    """
    structure = projection_structure(Turn.model_json_schema(), _JSON_PATHS)
    exprs = []
    for c in COLUMNS:
        value = _access(c.path)
        if c.name == "ts":
            value = f"try_cast({value} AS TIMESTAMPTZ)"
        elif c.name == "turn_index":
            value = f"CAST({value} AS INTEGER)"
        if c.default is not None:
            value = f"coalesce({value}, {c.default})"
            parent = c.path[0] if len(c.path) > 1 else None
            if parent and FLAT_OBJECTS.get(parent):
                value = f"CASE WHEN {_access((parent,))} IS NOT NULL THEN {value} END"
        exprs.append(f"{value} AS {c.name}")
    return (
        f"SELECT line_no, {', '.join(exprs)}, CAST(extra AS JSON) AS extra\n"
        f"FROM (SELECT line_no, extra, json_transform(raw, '{structure}') AS s FROM {stage})"
    )


def same_content_sql(a: str, b: str) -> str:
    """SQL TRUE iff rows ``a`` and ``b`` hold the same turn (every column and the extras equal)."""
    names = [c.name for c in COLUMNS] + ["extra"]
    return " AND ".join(f"{a}.{n} IS NOT DISTINCT FROM {b}.{n}" for n in names)


def export_sql(where: str = "true") -> str:
    """SELECT giving ``record`` (the turn as JSON text, extras not yet merged) and ``extra``."""

    def obj(prefix: tuple[str, ...]) -> str:
        parts = []
        for key in _fields_of(prefix):
            path = (*prefix, key)
            if path in _BY_PATH:
                col = _BY_PATH[path]
                value = "strftime(ts, '%Y-%m-%dT%H:%M:%S.%fZ')" if col.name == "ts" else col.name
            else:
                value = obj(path)
                presence = FLAT_OBJECTS.get(key)
                if presence:
                    value = f"CASE WHEN {presence} IS NULL THEN NULL ELSE {value} END"
            parts.append(f"'{key}', {value}")
        return "json_object(" + ", ".join(parts) + ")"

    record = obj(()).replace("json_object(", f"json_object('schema_version', {SCHEMA_VERSION}, ", 1)
    return f"SELECT {record} AS record, extra FROM turns WHERE {where} ORDER BY session_id, turn_index"


_BY_PATH = {c.path: c for c in COLUMNS}


def _fields_of(prefix: tuple[str, ...]) -> list[str]:
    """Field names under ``prefix`` in schema order, one entry per flattened object."""
    seen: list[str] = []
    for c in COLUMNS:
        if c.path[: len(prefix)] == prefix and len(c.path) > len(prefix) and c.path[len(prefix)] not in seen:
            seen.append(c.path[len(prefix)])
    return seen
