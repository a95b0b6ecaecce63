"""The hidden truth of a simulated run, stored apart from the logs.

``<run>/truth/turns.parquet`` has one row per logged turn, keyed by
(session_id, turn_index); ``<run>/truth/users.parquet`` has each user's hidden
voice, home and preferences. Only evaluation code may read them: learning code
never imports this module (a test enforces it).
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import InvalidInputError, explain

__all__ = ["TRUTH_SCHEMA", "TruthWriter", "read_truth", "write_users"]

TRUTH_SCHEMA = pa.schema(
    [
        ("session_id", pa.string()),
        ("turn_index", pa.int32()),
        ("user_id", pa.string()),
        ("goal_id", pa.string()),
        ("goal_slurp_id", pa.int64()),
        ("true_intent", pa.string()),
        ("true_slots", pa.string()),
        ("intended_entities", pa.string()),
        ("defective", pa.bool_()),
        ("failure_point", pa.string()),
        ("rephrase_of", pa.int32()),
        ("attempt", pa.int32()),
        ("action", pa.string()),
        ("surface_kind", pa.string()),
        ("condition", pa.string()),
        ("reference_text", pa.string()),
        ("rewritten", pa.bool_()),
    ]
)


class TruthWriter:
    """Buffers truth rows and writes them as Parquet row groups."""

    def __init__(self, path: Path, *, batch: int = 100_000):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.batch = batch
        self._rows: list[dict] = []
        self._writer = pq.ParquetWriter(str(path), TRUTH_SCHEMA, compression="zstd")
        self.count = 0

    def add(self, row: dict) -> None:
        self._rows.append(row)
        if len(self._rows) >= self.batch:
            self._flush()

    def _flush(self) -> None:
        if self._rows:
            self._writer.write_table(pa.Table.from_pylist(self._rows, schema=TRUTH_SCHEMA))
            self.count += len(self._rows)
            self._rows = []

    def close(self) -> None:
        self._flush()
        self._writer.close()


def write_users(users, path: Path) -> None:
    rows = [
        {
            "user_id": u.user_id,
            "condition": u.condition,
            "home_state": u.home_state,
            "preferences": json.dumps(u.preferences, sort_keys=True),
            "patience": u.patience,
            "sessions_per_day": round(u.sessions_per_day, 3),
            "devices": json.dumps(u.devices, sort_keys=True),
        }
        for u in users
    ]
    pq.write_table(pa.Table.from_pylist(rows), str(path), compression="zstd")


def read_truth(run_dir: Path, ids=None) -> pa.Table:
    """The per-turn truth of a simulated run (evaluation only). With ``ids`` (a store's
    :class:`~selflearn.privacy.pseudonyms.Pseudonyms`) its session and user ids are the store's
    pseudonyms, so it joins the store that imported the run's logs."""
    path = run_dir / "truth" / "turns.parquet"
    if not path.exists():
        raise InvalidInputError(explain(str(path), "must exist (written by `selflearn world simulate`)", "pass the --out directory of a simulation"))
    table = pq.read_table(str(path))
    if ids is not None:
        for name in ("session_id", "user_id"):
            col = table.schema.get_field_index(name)
            table = table.set_column(col, name, pa.array([ids.of(v) for v in table.column(name).to_pylist()], pa.string()))
    return table
