"""Tables derived from the turns (signals, rephrases, rewrites, failure points): their schemas,
created by the store's migrations, and the record of how each was computed.

One writer replaces a derived table (in one transaction) and records, in ``derived``, the config
it was computed with and the state of the turns it was computed from; a reader asks
:func:`is_current` and reuses the table, or recomputes (into a TEMP table when it only reads)."""

from __future__ import annotations

import json

import duckdb

__all__ = ["DERIVED_DDL", "TABLES", "turns_state", "entry", "is_current", "replace_table"]

DERIVED_DDL = """CREATE TABLE derived (
  name VARCHAR PRIMARY KEY, config VARCHAR NOT NULL, turns_state VARCHAR NOT NULL, n_rows BIGINT NOT NULL,
  computed_at TIMESTAMPTZ NOT NULL)"""

#: the derived tables, as the current store version defines them
TABLES = {
    "signals": """CREATE TABLE signals (
  session_id VARCHAR, turn_index INTEGER, ts TIMESTAMPTZ, user_id VARCHAR, device_type VARCHAR, asr_text VARCHAR,
  text_norm VARCHAR, intent VARCHAR, response_status VARCHAR, barge_in BOOLEAN, explicit_negative BOOLEAN,
  explicit_positive BOOLEAN, prompted BOOLEAN, rephrase_candidate BOOLEAN, system_failure BOOLEAN, abandoned BOOLEAN,
  next_turn INTEGER, next_text VARCHAR, next_norm VARCHAR, next_gap_s DOUBLE, next_similarity DOUBLE, defect_score DOUBLE)""",
    "rephrases": "CREATE TABLE rephrases (session_id VARCHAR, turn_index INTEGER, rephrase VARCHAR)",
    "rewrites": """CREATE TABLE rewrites (
  utterance VARCHAR, rewrite VARCHAR, probability DOUBLE, self_probability DOUBLE, share DOUBLE, direct_success DOUBLE,
  rewrite_success DOUBLE, support BIGINT, rephrase_support BIGINT)""",
    "failure_points": "CREATE TABLE failure_points (session_id VARCHAR, turn_index INTEGER, failure_point VARCHAR, confidence DOUBLE)",
}


def turns_state(con: duckdb.DuckDBPyConnection) -> str:
    """A fingerprint of which turns the store holds (their count and an order-free hash of their
    keys): it changes with every import and every deletion."""
    n, h = con.execute("SELECT count(*), coalesce(bit_xor(hash(session_id, turn_index)), 0) FROM turns").fetchone()
    return f"{n}:{h}"


def entry(con: duckdb.DuckDBPyConnection, name: str) -> dict | None:
    """How ``name`` was last computed (config, turns_state, n_rows, computed_at), or None."""
    row = con.execute("SELECT config, turns_state, n_rows, computed_at FROM derived WHERE name = ?", [name]).fetchone()
    return None if row is None else {"config": json.loads(row[0]), "turns_state": row[1], "n_rows": row[2], "computed_at": row[3]}


def is_current(con: duckdb.DuckDBPyConnection, name: str, config: dict) -> bool:
    """Whether ``name`` was computed with ``config`` from the turns the store holds now."""
    e = entry(con, name)
    return e is not None and e["config"] == json.loads(json.dumps(config)) and e["turns_state"] == turns_state(con)


def replace_table(con: duckdb.DuckDBPyConnection, name: str, select_sql: str, config: dict) -> int:
    """Replace the rows of derived table ``name`` with ``select_sql`` (columns by name) and record
    ``config`` and the turns' state; call inside the store's write transaction. Returns the row count."""
    if name not in TABLES:
        raise KeyError(name)
    con.execute(f"DELETE FROM {name}")
    con.execute(f"INSERT INTO {name} BY NAME {select_sql}")
    n = con.execute(f"SELECT count(*) FROM {name}").fetchone()[0]
    con.execute("INSERT OR REPLACE INTO derived VALUES (?, ?, ?, ?, now())", [name, json.dumps(config, sort_keys=True), turns_state(con), n])
    return n
