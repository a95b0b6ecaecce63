"""Rewriting a store for privacy: rotating the pseudonym key (which also pseudonymises a store an
older selflearn filled with raw ids), and scrubbing the texts of such a store in place.

Every id column of the store is rewritten in one transaction: a pseudonym ``p`` becomes
``HMAC(new, p)`` and the key chain grows by the new key (raw ids of an older store become
``HMAC(new, id)``). The new key file is written beside the old one first (``<store>.key.new``) and
moved into place once the store has committed, so a crash leaves either the old store and key, or
the new store and a ``.key.new`` that the next command names.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import InvalidInputError, PrivacyKeyError, explain
from ..store.derived import turns_state
from ..privacy.pseudonyms import FINGERPRINT_META, KEY_ENV, Pseudonyms, create_key_file, model_pseudonyms

__all__ = ["rotate_key", "ID_COLUMNS", "rekey_model", "scrub_store"]

#: every store column that holds a user, device or session id
ID_COLUMNS = {
    "turns": ("session_id", "user_id", "device_id"),
    "sessions": ("session_id", "user_id", "device_id"),
    "raw_text": ("session_id",),
    "preferences": ("user_id",),
    "teaching_prompts": ("user_id",),
    "signals": ("session_id", "user_id"),
    "rephrases": ("session_id",),
    "failure_points": ("session_id",),
}


def rotate_key(store, *, models: list[Path] = ()) -> dict:
    """Re-key ``store`` (and the online model directories in ``models``) under a fresh key."""
    if os.environ.get(KEY_ENV) is not None:
        raise PrivacyKeyError(explain(f"${KEY_ENV}", "is set; a rotation writes the new key chain to the key file",
                                      f"unset ${KEY_ENV}, rotate, then copy {store.key_path} into your secret store"))
    raw = store.meta("ids") == "raw"
    if raw:
        old = None
        new = Pseudonyms((os.urandom(32),))
        rekey = new.of
    else:
        old = store.pseudonyms()
        new = old.rotated()
        rekey = new.rekey
    model_ids = [model_pseudonyms(Path(m), _privacy(Path(m))) for m in models]
    if old is not None and any(ids is not None and ids.fingerprint != old.fingerprint for ids in model_ids):
        raise InvalidInputError(explain(str(models), "a model was trained under another key than the store's", "rotate each store with its own models"))
    path = store.key_path
    pending = path.with_name(path.name + ".new")
    create_key_file(pending, new, replace=True)
    con = store.writer()
    con.create_function("sl_rekey", lambda v: rekey(v), ["VARCHAR"], "VARCHAR")
    counts = {}
    try:
        with store.transaction() as tx:
            before = turns_state(tx)
            for table, columns in ID_COLUMNS.items():
                if not store.has_table(table):
                    continue
                sets = ", ".join(f"{c} = sl_rekey({c})" for c in columns)
                counts[table] = tx.execute(f"UPDATE {table} SET {sets}").fetchall()[0][0]
            # derived tables computed from the turns before stay current: the same turns, re-keyed
            tx.execute("UPDATE derived SET turns_state = ? WHERE turns_state = ?", [turns_state(tx), before])
            tx.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", [FINGERPRINT_META, new.fingerprint])
            tx.execute("DELETE FROM meta WHERE key = 'ids'")
    finally:
        con.remove_function("sl_rekey")
    os.replace(pending, path)
    store._ids = Pseudonyms(new.keys, str(path))
    for m in models:
        rekey_model(Path(m), rekey, store._ids)
    return {"store": str(store.path), "key_file": str(path), "old_fingerprint": None if old is None else old.fingerprint,
            "new_fingerprint": new.fingerprint, "was_raw": raw, "rows": counts, "models": [str(m) for m in models]}


def _privacy(directory: Path) -> dict | None:
    try:
        return json.loads((directory / "config.json").read_text()).get("privacy")
    except (OSError, ValueError) as exc:
        raise InvalidInputError(explain(str(directory), f"is not a model directory ({exc})", "pass an online model directory")) from None


def rekey_model(directory: Path, rekey, new: Pseudonyms) -> None:
    """Re-key the user ids an online model's personal layer holds and record the new fingerprint."""
    personal = directory / "personal"
    for f in sorted(personal.glob("*.parquet")) if personal.is_dir() else []:
        table = pq.read_table(str(f))
        if "user_id" in table.column_names:
            col = table.schema.get_field_index("user_id")
            table = table.set_column(col, "user_id", pa.array([rekey(u) for u in table.column("user_id").to_pylist()], pa.string()))
            tmp = f.with_suffix(".parquet.tmp")
            pq.write_table(table, str(tmp))
            os.replace(tmp, f)
    cfg_path = directory / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["privacy"] = {**(cfg.get("privacy") or {}), "pseudonym_key": new.fingerprint, "key_file": new.source}
    tmp = cfg_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(cfg, indent=2) + "\n")
    os.replace(tmp, cfg_path)


def scrub_store(store) -> dict:
    """Scrub the texts of every turn in place (a store an older selflearn imported unscrubbed);
    derived tables computed from the old texts are dropped from the record, so they are recomputed."""
    from ..store.importer import TEXT_COLUMNS, JSON_TEXT_COLUMNS
    from ..text import normalise_sql
    from ..privacy.scrub import Scrubber

    scrubber = Scrubber()
    con = store.writer()
    con.create_function("sl_scrub", scrubber.text, ["VARCHAR"], "VARCHAR")
    con.create_function("sl_scrub_json", scrubber.json, ["VARCHAR"], "VARCHAR")
    try:
        with store.transaction() as tx:
            sets = [f"{c} = sl_scrub({c})" for c in TEXT_COLUMNS] + [f"{c} = sl_scrub_json({c})" for c in JSON_TEXT_COLUMNS]
            tx.execute(f"UPDATE turns SET {', '.join(sets)}")
            tx.execute(f"UPDATE turns SET text_norm = {normalise_sql('asr_text')}")
            for table in ("signals", "rephrases", "rewrites", "failure_points"):
                tx.execute(f"DELETE FROM {table}")
            tx.execute("DELETE FROM derived")
            tx.execute("DELETE FROM meta WHERE key = 'text'")
    finally:
        con.remove_function("sl_scrub")
        con.remove_function("sl_scrub_json")
    return {"store": str(store.path), "scrubbed": dict(sorted(scrubber.counts.items()))}
