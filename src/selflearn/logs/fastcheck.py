"""The import's fast path: accept clean records at C speed, send everything else to pydantic.

Validating a million records with pydantic is the slow part of an import. This
module compiles the log's JSON Schema (generated from the pydantic models, so
there is one source of truth) into msgspec types that validate a JSON line in
about 2 microseconds. The compiled type is deliberately a *subset* of what
pydantic accepts:

* unknown (extra) fields are refused, so records carrying them go to pydantic,
  which keeps them;
* timestamps must match :data:`ISO_TIMESTAMP` exactly (upper-case ``T``, at most
  six fractional digits, ``Z`` or ``+hh:mm``), the form DuckDB and pydantic read
  identically, and name a date that exists (not 2026-02-30); other forms pydantic
  accepts take the slow path.

A record msgspec refuses is re-validated by pydantic, which makes the final
decision and writes the error message. So the fast path changes speed, never
outcomes; ``tests/test_fastcheck.py`` holds it to that with generated records.

:func:`projection_structure` is the companion for DuckDB: the ``json_transform``
argument that turns an accepted record into typed columns in one parse.
"""

from __future__ import annotations

import itertools
import json
from datetime import datetime
from typing import Annotated, Any, Literal, Union

import msgspec

__all__ = ["ISO_TIMESTAMP", "compile_fast_type", "projection_structure"]

ISO_TIMESTAMP = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?(Z|[+-](0\d|1[0-4]):[0-5]\d)$"


class _Compiler:
    def __init__(self, schema: dict[str, Any]) -> None:
        self.defs = schema.get("$defs", {})
        self.structs: dict[str, Any] = {}
        self.ids = itertools.count()

    def resolve(self, node: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in node:
            node = self.defs[node["$ref"].rsplit("/", 1)[-1]]
        return node

    def type_of(self, node: dict[str, Any]) -> Any:
        node = self.resolve(node)
        if "anyOf" in node:
            return Union[tuple(self.type_of(alt) for alt in node["anyOf"])]  # noqa: UP007
        if "const" in node:
            return Literal[node["const"]]
        kind = node.get("type")
        meta = {
            name: node[key]
            for key, name in (
                ("minimum", "ge"),
                ("maximum", "le"),
                ("exclusiveMinimum", "gt"),
                ("exclusiveMaximum", "lt"),
                ("minLength", "min_length"),
                ("maxLength", "max_length"),
            )
            if key in node
        }
        if kind == "string":
            if "enum" in node:
                return Literal[tuple(node["enum"])]
            if node.get("format") == "date-time":
                meta["pattern"] = ISO_TIMESTAMP
            return Annotated[str, msgspec.Meta(**meta)] if meta else str
        if kind in ("integer", "number"):
            base = int if kind == "integer" else float
            return Annotated[base, msgspec.Meta(**meta)] if meta else base
        if kind == "boolean":
            return bool
        if kind == "null":
            return None
        if kind == "array":
            return list[self.type_of(node.get("items", {}))]  # type: ignore[misc]
        if kind == "object":
            extra = node.get("additionalProperties", True)
            if "properties" not in node and isinstance(extra, dict):
                return dict[str, self.type_of(extra)]  # type: ignore[misc]
            return self.struct(node)
        raise NotImplementedError(f"JSON Schema node {node!r} has no fast-path type; extend fastcheck.py")

    def struct(self, node: dict[str, Any]) -> Any:
        name = node.get("title", "Object")
        if name not in self.structs:
            required = set(node.get("required", []))
            fields, times = [], []
            for key, sub in node.get("properties", {}).items():
                typ = self.type_of(sub)
                if _is_date_time(self.resolve(sub)):
                    times.append(key)
                # Defaults are never validated nor used (decoded objects are discarded).
                fields.append((key, typ) if key in required else (key, typ, None))
            fields.sort(key=lambda f: len(f) == 3)  # msgspec wants required fields first
            namespace = {"__post_init__": _real_times(tuple(times))} if times else None
            self.structs[name] = msgspec.defstruct(f"{name}Fast{next(self.ids)}", fields, forbid_unknown_fields=True, namespace=namespace)
        return self.structs[name]


def _is_date_time(node: dict[str, Any]) -> bool:
    alts = node.get("anyOf", [node])
    return any(alt.get("format") == "date-time" for alt in alts)


def _real_times(names: tuple[str, ...]):
    """A check run after decoding: the pattern admits dates that do not exist (2026-02-30), which
    pydantic refuses, so the fast path must refuse them too (msgspec turns the ValueError into a
    validation error, and the record takes the slow path)."""

    def __post_init__(self) -> None:
        for name in names:
            value = getattr(self, name)
            if isinstance(value, str):
                datetime.fromisoformat(value.replace("Z", "+00:00"))

    return __post_init__


def compile_fast_type(schema: dict[str, Any]) -> msgspec.json.Decoder:
    """A msgspec decoder that accepts only records pydantic would surely accept, unchanged."""
    return msgspec.json.Decoder(_Compiler(schema).type_of(schema))


def projection_structure(schema: dict[str, Any], json_paths: set[tuple[str, ...]]) -> str:
    """The ``json_transform`` structure for a record: typed leaves, and raw JSON text at ``json_paths``."""
    comp = _Compiler(schema)
    sql_types = {"string": "VARCHAR", "integer": "BIGINT", "number": "DOUBLE", "boolean": "BOOLEAN"}

    def walk(node: dict[str, Any], path: tuple[str, ...]) -> Any:
        if path in json_paths:
            return "JSON"
        node = comp.resolve(node)
        alts = [comp.resolve(a) for a in node.get("anyOf", [node])]
        alts = [a for a in alts if a.get("type") != "null"]
        if len(alts) != 1:
            return "JSON"
        node = alts[0]
        if "const" in node:
            return "BIGINT"
        if node.get("type") == "object":
            return {k: walk(sub, (*path, k)) for k, sub in node.get("properties", {}).items()}
        if node.get("type") == "array":
            return "JSON"
        return sql_types[node["type"]]

    return json.dumps(walk(schema, ()))
