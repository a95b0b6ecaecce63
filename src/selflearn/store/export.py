"""Export turns from the store as JSONL (the log format itself) or Parquet (flat, for analysts).

JSONL output re-imports to the same store contents (tested round trip). Parquet
output has one column per stored field, named by its dotted record path
(``device.type``, ``nlu.slots`` as JSON text, ...) plus ``_extra``: the layout
``selflearn store import`` reads back.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from selflearn.errors import InvalidInputError, explain
from selflearn.logs.formats import EXTRA_COLUMN
from selflearn.store.columns import COLUMNS, export_sql
from selflearn.store.store import Store

__all__ = ["export_turns", "EXPORT_FORMATS"]

EXPORT_FORMATS = ("jsonl", "parquet")


def _merge(record: dict[str, Any], extra: dict[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(record.get(key), dict):
            _merge(record[key], value)
        else:
            record[key] = value


def export_turns(
    store: Store,
    out: str | Path,
    fmt: str | None = None,
    *,
    progress: Callable[[int], None] | None = None,
    chunk: int = 50_000,
) -> int:
    """Write every turn to ``out``; returns how many. Format from ``fmt`` or the file name."""
    path = Path(out)
    name = path.name.lower().removesuffix(".gz")
    fmt = fmt or ("parquet" if name.endswith(".parquet") else "jsonl" if name.endswith((".jsonl", ".json")) else None)
    if fmt not in EXPORT_FORMATS:
        raise InvalidInputError(
            explain(str(out), f"unknown export format {fmt!r}; known: {', '.join(EXPORT_FORMATS)}",
                    "name the file .jsonl, .jsonl.gz or .parquet, or pass --format")
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    con = store.reader()
    if fmt == "parquet":
        cols = []
        for c in COLUMNS:
            cols.append(f'{c.name} AS "{".".join(c.path)}"')
        tmp = path.with_name(path.name + ".part")
        con.execute(
            f"COPY (SELECT 1 AS schema_version, {', '.join(cols)}, extra AS {EXTRA_COLUMN} FROM turns "
            f"ORDER BY session_id, turn_index) TO '{_sql_path(tmp)}' (FORMAT parquet)"
        )
        tmp.replace(path)
        return con.execute("SELECT count(*) FROM turns").fetchone()[0]
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    tmp = path.with_name(path.name + ".part")
    n = 0
    with opener(tmp, "wt", encoding="utf-8") as fh:  # type: ignore[operator]
        cur = con.execute(export_sql())
        while rows := cur.fetchmany(chunk):
            for record, extra in rows:
                if extra is not None:
                    obj = json.loads(record)
                    _merge(obj, json.loads(extra))
                    record = json.dumps(obj, separators=(",", ":"))
                fh.write(record + "\n")
            n += len(rows)
            if progress:
                progress(len(rows))
    tmp.replace(path)
    return n


def _sql_path(path: Path) -> str:
    return str(path).replace("'", "''")
