"""Store versioning and migrations."""

from __future__ import annotations

import duckdb
import pytest

from selflearn.errors import StoreVersionError
from selflearn.store import store as store_mod
from selflearn.store.store import STORE_VERSION, Store


def _sql(db, statement: str) -> None:
    """Change a store file behind selflearn's back, as another tool would."""
    con = duckdb.connect(str(db))
    con.execute(statement)
    con.close()


def test_new_store_is_at_current_version(tmp_path):
    with Store(tmp_path / "s.duckdb") as st:
        assert st.version == STORE_VERSION
        tables = {r[0] for r in st.reader().execute("SELECT table_name FROM information_schema.tables").fetchall()}
    assert {"meta", "turns", "sessions", "imports"} <= tables


def test_newer_store_is_refused_with_upgrade_hint(tmp_path):
    db = tmp_path / "s.duckdb"
    Store(db).close()
    _sql(db, "UPDATE meta SET value = '99' WHERE key = 'store_version'")
    with pytest.raises(StoreVersionError, match="store version 99.*upgrade selflearn"):
        Store(db)


def test_older_store_is_migrated_on_write_and_named_on_read(tmp_path, monkeypatch):
    db = tmp_path / "s.duckdb"
    Store(db).close()  # a store of today's version ...

    def add_labels(con):  # ... and a future migration that adds a table
        con.execute("CREATE TABLE labels (session_id VARCHAR, turn_index INTEGER, label VARCHAR)")

    monkeypatch.setattr(store_mod, "MIGRATIONS", [*store_mod.MIGRATIONS, add_labels])
    monkeypatch.setattr(store_mod, "STORE_VERSION", STORE_VERSION + 1)
    with pytest.raises(StoreVersionError, match=f"run `selflearn store migrate --store {db}`"):
        Store(db, read_only=True)
    with Store(db) as st:
        assert st.version == STORE_VERSION + 1
        assert st.reader().execute("SELECT count(*) FROM labels").fetchone()[0] == 0


def test_a_failing_migration_changes_nothing(tmp_path, monkeypatch):
    db = tmp_path / "s.duckdb"
    Store(db).close()

    def broken(con):
        con.execute("CREATE TABLE half_done (x INTEGER)")
        raise RuntimeError("boom")

    monkeypatch.setattr(store_mod, "MIGRATIONS", [*store_mod.MIGRATIONS, broken])
    monkeypatch.setattr(store_mod, "STORE_VERSION", STORE_VERSION + 1)
    with pytest.raises(RuntimeError, match="boom"):
        Store(db)
    con = duckdb.connect(str(db))
    assert con.execute("SELECT value FROM meta").fetchone()[0] == str(STORE_VERSION)
    assert not con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name='half_done'").fetchone()[0]
    con.close()


def test_foreign_duckdb_file_is_refused(tmp_path):
    db = tmp_path / "other.duckdb"
    _sql(db, "CREATE TABLE customers (id INTEGER)")
    with pytest.raises(StoreVersionError, match="not a selflearn store"):
        Store(db)


def test_store_path_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("SELFLEARN_STORE", str(tmp_path / "env.duckdb"))
    with Store() as st:
        assert st.path == tmp_path / "env.duckdb"


def test_a_damaged_version_is_one_line_not_a_traceback(tmp_path):
    db = tmp_path / "s.duckdb"
    Store(db).close()
    _sql(db, "UPDATE meta SET value = 'abc' WHERE key = 'store_version'")
    with pytest.raises(StoreVersionError, match="store_version 'abc'.*damaged.*fix: restore"):
        Store(db)


def _cli(*args: str):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "selflearn.cli.main", *args], capture_output=True, text=True, timeout=120)


def test_a_damaged_data_block_is_one_line_not_a_traceback(tmp_path):
    from conftest import session, write_jsonl

    from selflearn.store.importer import import_files

    db = tmp_path / "s.duckdb"
    with Store(db) as st:
        import_files(st, [write_jsonl(tmp_path / "l.jsonl", session("s1", 200))])
    data = bytearray(db.read_bytes())
    for at in range(3 * 262144 // 2, len(data) - 4096, 4096):  # scribble over blocks past the headers
        data[at:at + 512] = b"\xa5" * 512
    db.write_bytes(bytes(data))
    r = _cli("store", "stats", "--store", str(db))
    assert r.returncode != 0 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.startswith("error: ") and "fix:" in r.stderr and len(r.stderr.strip().splitlines()) <= 3, r.stderr


@pytest.mark.skipif(__import__("os").access("/proc/sys", __import__("os").W_OK), reason="needs a directory this user cannot write")
def test_a_directory_that_cannot_be_written_is_named_as_such(tmp_path):
    r = _cli("store", "import", "--store", "/proc/sys/s.duckdb", str(tmp_path / "none.jsonl"))
    assert r.returncode == 2 and "Traceback" not in r.stderr and "is not writable (permission denied)" in r.stderr, r.stderr
    r = _cli("store", "import", "--store", "/proc/sys/new/s.duckdb", str(tmp_path / "none.jsonl"))
    assert r.returncode == 2 and "cannot create the store's directory" in r.stderr, r.stderr


def test_the_normalised_text_is_the_same_in_python_and_in_the_store():
    """selflearn.text.normalise (serving) and the store's text_norm (mining, reviews, the report)
    give the same string for any text, Unicode case and spacing included."""
    import random

    import duckdb

    from selflearn.text import normalise, normalise_sql

    rng = random.Random(0)
    alphabet = [chr(i) for i in range(0x20, 0x250)] + list(" \t\n\r\x0b\x0c\u00a0\u2003ΣİẞΩ")
    texts = ["  Play\tJAZZ ", "ΣΑΣ", "İstanbul", "\u2003hi\u2003"] + ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12))) for _ in range(5000)]
    got = duckdb.connect().execute(f"SELECT {normalise_sql('x')} FROM (SELECT unnest(?) AS x, generate_subscripts(?, 1) AS i) ORDER BY i",
                                   [texts, texts]).fetchall()
    assert [normalise(t) for t in texts] == [g[0] for g in got]
    assert normalise("  Play\tJAZZ ") == "play jazz"
