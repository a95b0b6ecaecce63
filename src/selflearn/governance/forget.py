"""Forgetting a user: every row and file that holds them, in one transaction, then the store file
rewritten so no deleted page keeps their text.

Per-user data (turns, sessions, signals, rephrases, failure points, raw texts, preferences, teaching
prompts, the quarantine's records, an online model's personal layer) is deleted. Artefacts shared
across users (the mined table, the global index, trained models) are listed with what the user
contributed; ``rebuild`` re-mines the table and retrains online models without them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import duckdb

from ..errors import InvalidInputError, explain
__all__ = ["forget_user", "compact_store", "FORGOTTEN_TABLES"]

_BY_SESSION = ("signals", "rephrases", "failure_points", "raw_text")
_BY_USER = ("turns", "sessions", "preferences", "teaching_prompts")
#: every store table forgetting deletes from (a test checks it covers every table holding an id)
FORGOTTEN_TABLES = frozenset(_BY_SESSION + _BY_USER)


def forget_user(store, user_id: str, *, models: list[Path] = (), quarantine: Path | None = None) -> dict:
    """Delete ``user_id`` (the assistant's own id) from ``store`` and the online model directories in
    ``models``; returns what was deleted and which shared artefacts the user contributed to. Call
    :func:`compact_store` on the store's path once it is closed."""
    from ..online.online_rewriter import OnlineRewriter

    pid = store.pseudonyms().of(user_id)
    con = store.reader()
    sessions = [r[0] for r in con.execute("SELECT session_id FROM sessions WHERE user_id = ?", [pid]).fetchall()]
    texts = {r[0] for r in con.execute("SELECT DISTINCT text_norm FROM turns WHERE user_id = ? AND text_norm <> ''", [pid]).fetchall()}
    known = bool(sessions) or any(
        con.execute(f"SELECT count(*) FROM {t} WHERE user_id = ?", [pid]).fetchall()[0][0] for t in ("preferences", "teaching_prompts"))
    loaded = []
    for m in models:
        rw = OnlineRewriter.load(Path(m))
        loaded.append((Path(m), rw))
        known = known or bool(rw.history(user_id))
    if not known:
        raise InvalidInputError(explain(f"user {user_id!r}", "has no turns, preferences or personal history in this store or these models",
                                        "check the id (the assistant's own user id, not a pseudonym) and the --store"))
    shared = _contributions(con, texts, loaded)
    deleted: dict[str, int] = {}
    with store.transaction() as tx:
        tx.execute("CREATE OR REPLACE TEMP TABLE forget_sessions AS SELECT session_id FROM sessions WHERE user_id = ?", [pid])
        for table in _BY_SESSION:
            if store.has_table(table):
                deleted[table] = _count(tx.execute(f"DELETE FROM {table} WHERE session_id IN (SELECT session_id FROM forget_sessions)"))
        for table in _BY_USER:
            deleted[table] = _count(tx.execute(f"DELETE FROM {table} WHERE user_id = ?", [pid]))
        if store.has_table("signals"):
            deleted["signals"] = deleted.get("signals", 0) + _count(tx.execute("DELETE FROM signals WHERE user_id = ?", [pid]))
        tx.execute("DROP TABLE forget_sessions")
    for path, rw in loaded:
        rw.forget(user_id)
        rw.personal.save(path / "personal")
    removed = _forget_quarantine(quarantine, user_id, sessions) if quarantine else 0
    return {"user": pid, "deleted": {k: v for k, v in deleted.items() if v}, "quarantined_records_removed": removed,
            "models_personal_layer": [str(p) for p, _ in loaded], "shared_artefacts": shared}


def _count(cur) -> int:
    return int(cur.fetchall()[0][0])


def _contributions(con, texts: set[str], loaded) -> list[dict]:
    """The shared artefacts that hold a text the user said."""
    out = []
    if texts:
        con.execute("CREATE OR REPLACE TEMP TABLE forget_texts (t VARCHAR)")
        con.executemany("INSERT INTO forget_texts VALUES (?)", [[t] for t in sorted(texts)])
        n = con.execute("SELECT count(*) FROM rewrites WHERE utterance IN (SELECT t FROM forget_texts) OR rewrite IN (SELECT t FROM forget_texts)").fetchall()[0][0]
        con.execute("DROP TABLE forget_texts")
        if n:
            out.append({"artefact": "store table rewrites (the mined table)", "rows_with_their_text": int(n),
                        "rebuild": "selflearn rewrites mine (or forget --rebuild)"})
    for path, rw in loaded:
        g = rw.global_
        n = sum(1 for i in g.candidates if g.texts[i] in texts)
        if n:
            out.append({"artefact": f"{path} global index", "entries_with_their_text": n, "rebuild": f"selflearn online train --out {path} (or forget --rebuild)"})
        if rw.table is not None:
            n = sum(1 for u, r in rw.table.table_.items() if u in texts or r in texts)
            if n:
                out.append({"artefact": f"{path} rewrite table", "entries_with_their_text": n, "rebuild": "re-mine, then retrain"})
    out.append({"artefact": "every model trained on this store before now (labels, rephrase, failure points, ranker, encoder)",
                "rebuild": "retrain it: a trained model cannot be edited to forget one user's examples"})
    return out


def _forget_quarantine(path: Path, user_id: str, sessions: list[str]) -> int:
    """Drop the quarantined records of the user (matched on their raw id)."""
    if not path.exists():
        return 0
    needle = json.dumps(user_id)[1:-1]
    kept, removed = [], 0
    for line in path.read_text(encoding="utf-8").splitlines(keepends=True):
        try:
            record = json.loads(line).get("record", "")
        except ValueError:
            record = line
        if needle in str(record):
            removed += 1
        else:
            kept.append(line)
    if removed:
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.writelines(kept)
        os.replace(tmp, path)
    return removed


def compact_store(path: Path) -> None:
    """Rewrite the store file from its live rows (deleted rows leave no bytes behind), atomically."""
    path = Path(path)
    tmp = path.with_name(path.name + ".compact")
    tmp.unlink(missing_ok=True)
    con = duckdb.connect(str(tmp))
    try:
        con.execute(f"ATTACH '{_sql_str(path)}' AS old (READ_ONLY)")
        db = con.execute("SELECT current_database()").fetchall()[0][0]
        con.execute(f'COPY FROM DATABASE old TO "{db}"')
        con.execute("DETACH old")
        con.execute("CHECKPOINT")
    finally:
        con.close()
    os.replace(tmp, path)
    Path(str(path) + ".wal").unlink(missing_ok=True)


def _sql_str(p: Path) -> str:
    return str(p).replace("'", "''")



def rebuild_after_forget(store_path: Path, *, table: Path | None = None, models: list[Path] = ()) -> list[str]:
    """Re-mine ``table`` and retrain each online model in ``models`` (with the configuration it was
    trained with) from the store as it is now."""
    from ..online.train import OnlineConfig, train_online
    from ..rewrites.mining import mine
    from ..store.store import Store

    done = []
    with Store(store_path) as st:
        if table is not None:
            mine(st, Path(table))
            done.append(f"re-mined {table}")
        for m in models:
            cfg = json.loads((Path(m) / "config.json").read_text()).get("config") or {}
            own_table = Path(m) / "rewrites.parquet"
            source = Path(table) if table is not None else (own_table if own_table.exists() else None)
            if source is not None and source == own_table:  # train_online copies the table in: read it from a copy
                source = Path(m).with_name(Path(m).name + ".table.parquet")
                source.write_bytes(own_table.read_bytes())
            try:
                train_online(st, Path(m), table=source, config=OnlineConfig(**cfg))
            finally:
                if source is not None and source.name.endswith(".table.parquet"):
                    source.unlink(missing_ok=True)
            done.append(f"retrained {m}")
    return done
