"""Privacy: keyed pseudonyms and their key, the PII scrubber, the store's privacy scan, key rotation,
scrubbing an older store, and forgetting a user (every table, every file)."""

from __future__ import annotations

import json
import os
import stat

import pytest
from conftest import make_turn, session, write_jsonl
from typer.testing import CliRunner

from selflearn.cli.main import app
from selflearn.errors import InvalidInputError, PrivacyKeyError, UnreadableInputError
from selflearn.privacy.pseudonyms import KEY_ENV, PSEUDONYM_RE, Pseudonyms, key_path_for, load_key
from selflearn.privacy.scrub import find_pii, luhn_ok, scrub
from selflearn.store.importer import import_files
from selflearn.store.store import Store

runner = CliRunner()


@pytest.fixture
def key_file_only(monkeypatch):
    """No key in the environment: the store's key file is used (and created on first use)."""
    monkeypatch.delenv(KEY_ENV, raising=False)


# -- pseudonyms and the key ------------------------------------------------------------------
def test_pseudonyms_are_keyed_stable_and_chain_on_rotation():
    a, b = Pseudonyms((b"k" * 32,)), Pseudonyms((b"j" * 32,))
    assert a.of("u1") == a.of("u1") != b.of("u1") and PSEUDONYM_RE.fullmatch(a.of("u1"))
    assert a.of("u1") != a.of("u2")
    r = a.rotated()
    assert r.of("u1") == r.rekey(a.of("u1"))  # what the service computes = what the store was re-keyed to
    assert a.fingerprint != r.fingerprint and "k" * 8 not in repr(a)


def test_the_key_file_is_created_once_owner_only_and_checked(tmp_path, key_file_only):
    db = tmp_path / "s.duckdb"
    with Store(db) as st:
        import_files(st, [write_jsonl(tmp_path / "l.jsonl", session("s1", 2))])
        fp = st.meta("pseudonym_key_fingerprint")
    key = key_path_for(db)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and fp == load_key(key).fingerprint
    assert json.loads(key.read_text())["keys"][0] not in db.read_bytes().hex()  # the store holds the fingerprint, never the key
    os.chmod(key, 0o644)
    with pytest.raises(UnreadableInputError, match="chmod 600"):
        Store(db).pseudonyms()
    os.chmod(key, 0o600)
    saved = key.read_text()
    key.unlink()
    with pytest.raises(PrivacyKeyError, match="missing.*fix: restore the key file"):
        Store(db).pseudonyms()
    key.write_text(saved)
    os.chmod(key, 0o600)
    os.environ[KEY_ENV] = "a-different-key-of-enough-bytes"
    try:
        with pytest.raises(PrivacyKeyError, match="is not the key of"):
            Store(db).pseudonyms()
    finally:
        del os.environ[KEY_ENV]
    os.environ[KEY_ENV] = "short"
    try:
        with pytest.raises(InvalidInputError, match="at least 16 bytes"):
            Store(db).pseudonyms()
    finally:
        del os.environ[KEY_ENV]


def test_a_wrong_key_stops_an_import_before_anything_is_written(tmp_path, monkeypatch):
    db = tmp_path / "s.duckdb"
    with Store(db) as st:
        import_files(st, [write_jsonl(tmp_path / "l.jsonl", session("s1", 2))])
    monkeypatch.setenv(KEY_ENV, "not-the-key-this-store-was-written-with")
    with Store(db) as st, pytest.raises(PrivacyKeyError, match="fingerprint"):
        import_files(st, [write_jsonl(tmp_path / "m.jsonl", session("s2", 2))])
    monkeypatch.delenv(KEY_ENV)
    r = runner.invoke(app, ["store", "import", str(tmp_path / "m.jsonl"), "--store", str(db)], env={KEY_ENV: "not-the-key-this-store-was-written-with"})
    assert r.exit_code == 2 and "fix:" in r.output


def test_raw_ids_never_reach_the_store(store, tmp_path):
    turns = session("alice@example.com#1", 2, user_id="alice@example.com", device_id="alices-phone-+14155550123")
    import_files(store, [write_jsonl(tmp_path / "l.jsonl", turns)])
    ids = store.pseudonyms()
    for table in ("turns", "sessions", "signals"):
        if store.has_table(table):
            rows = store.reader().execute(f"SELECT * FROM {table}").fetchall()
            assert "alice" not in repr(rows) and "4155550123" not in repr(rows)
    assert store.reader().execute("SELECT DISTINCT user_id, device_id FROM sessions").fetchall() == [
        (ids.of("alice@example.com"), ids.of("alices-phone-+14155550123"))]


# -- the scrubber ----------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "kinds"), [
    ("text my email john.doe@example.com", ["email"]),
    ("email it to john dot doe at example dot com", ["email"]),
    ("call 415 555 0134", ["phone"]),
    ("call +44 20 7946 0958 please", ["phone"]),
    ("call four one five five five five zero one three four", ["phone"]),
    ("my card is 4111 1111 1111 1111", ["card"]),
    ("ping 192.168.1.20 and fe80::1ff:fe23:4567:890a", ["ip", "ip"]),
    ("my account number is 12345678", ["number"]),
    ("set a timer for 15 minutes", []),
    ("wake me up at 7 30", []),
    ("what's the weather in 94110", []),
    ("play one direction", []),
    ("remind me on 2026-02-14", []),
    ("set an alarm for six thirty", []),
])
def test_the_scrubber_finds_each_kind_and_leaves_ordinary_numbers(text, kinds):
    assert [f.kind for f in find_pii(text)] == kinds
    out = scrub(text)
    assert (out == text) == (not kinds)
    for k in kinds:
        assert f"<{k.upper()}>" in out


def test_luhn():
    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112")
    assert find_pii("order 4111 1111 1111 1112 shipped")[0].kind == "number"  # fails Luhn: a long number, not a card


def test_import_scrubs_texts_and_keeps_raw_only_when_asked(tmp_path, monkeypatch):
    t = make_turn(session_id="p1", utterance={"text": "text john.doe@example.com that I'm late", "asr_confidence": 0.9,
                                                "nbest": [{"text": "text john.doe@example.com that I'm late", "confidence": 0.9}]},
                  feedback={"barge_in": False, "comment": "call me on 415 555 0134"})
    t["nlu"]["slots"] = [{"name": "email", "value": "john.doe@example.com"}]
    logs = write_jsonl(tmp_path / "l.jsonl", [t])
    with Store(tmp_path / "a.duckdb") as st:
        report = import_files(st, [logs])
        row = st.reader().execute("SELECT asr_text, text_norm, CAST(asr_nbest AS VARCHAR), CAST(slots AS VARCHAR), feedback_comment FROM turns").fetchone()
        assert st.reader().execute("SELECT count(*) FROM raw_text").fetchall()[0][0] == 0
    assert report.scrubbed == {"email": 3, "phone": 1}
    assert "john" not in repr(row) and "555" not in repr(row) and row[0] == "text <EMAIL> that I'm late" and "<PHONE>" in row[4]
    with Store(tmp_path / "b.duckdb") as st:
        import_files(st, [logs], keep_raw_text=True)
        raw = st.reader().execute("SELECT asr_text, feedback_comment FROM raw_text").fetchone()
        kept = st.reader().execute("SELECT asr_text FROM turns").fetchone()
    assert raw == ("text john.doe@example.com that I'm late", "call me on 415 555 0134") and kept == ("text <EMAIL> that I'm late",)
    r = runner.invoke(app, ["privacy", "scan", "--store", str(tmp_path / "b.duckdb"), "--json"])
    scan = json.loads(r.stdout)
    assert r.exit_code == 0 and scan["raw_text_kept"] and scan["pii_found"] == {"email": 3, "phone": 1, "card": 0, "ip": 0, "number": 0}
    assert scan["found_in"] == {"raw_text.asr_nbest": 1, "raw_text.asr_text": 1, "raw_text.feedback_comment": 1, "raw_text.slots": 1}
    assert scan["placeholders"]["email"] >= 3 and not scan["ids_not_pseudonymous"]
    assert "john.doe" not in r.stdout and "<EMAIL>" in r.stdout  # examples only as placeholders


# -- rotation and older stores ---------------------------------------------------------------
def test_rotating_the_key_rekeys_every_id_and_the_service_side_agrees(tmp_path, key_file_only):
    from selflearn.signals import compute_signals
    from selflearn.store.derived import entry, turns_state
    from selflearn.teach import Preferences

    db = tmp_path / "s.duckdb"
    with Store(db) as st:
        import_files(st, [write_jsonl(tmp_path / "l.jsonl", session("s1", 2, user_id="u1") + session("s2", 1, user_id="u2", start_minute=5))])
        compute_signals(st)
        Preferences(st).put("u1", "music_genre", "jazz")
        old = st.pseudonyms()
        old_users = {r[0] for r in st.reader().execute("SELECT user_id FROM turns").fetchall()}
    r = runner.invoke(app, ["privacy", "rotate-key", "--store", str(db), "--json"])
    assert r.exit_code == 0, r.output
    with Store(db) as st:
        new = st.pseudonyms()  # read back from the key file: the chain
        users = {r[0] for r in st.reader().execute("SELECT user_id FROM turns").fetchall()}
        assert users == {new.of("u1"), new.of("u2")} and not users & old_users
        assert {r[0] for r in st.reader().execute("SELECT user_id FROM signals").fetchall()} == users
        assert Preferences(st).get("u1", "music_genre").value == "jazz"  # the raw id still finds what u1 taught
        assert entry(st.reader(), "signals")["turns_state"] == turns_state(st.reader())  # still current: the same turns, re-keyed
    assert new.fingerprint != old.fingerprint and len(json.loads(key_path_for(db).read_text())["keys"]) == 2


def test_an_older_store_with_raw_ids_is_refused_until_pseudonymised(tmp_path, key_file_only):
    import duckdb

    db = tmp_path / "old.duckdb"
    with Store(db) as st:
        import_files(st, [write_jsonl(tmp_path / "l.jsonl", session("s1", 2, user_id="u1"))])
    con = duckdb.connect(str(db))  # make it what an older selflearn left: raw ids and texts, no key
    con.execute("UPDATE turns SET user_id = 'u1', session_id = 's1', asr_text = 'mail bob@example.com'")
    con.execute("UPDATE sessions SET user_id = 'u1', session_id = 's1'")
    con.execute("DELETE FROM meta WHERE key = 'pseudonym_key_fingerprint'")
    con.execute("INSERT INTO meta VALUES ('ids', 'raw'), ('text', 'raw')")
    con.close()
    key_path_for(db).unlink()
    with Store(db) as st, pytest.raises(PrivacyKeyError, match="rotate-key"):
        st.pseudonyms()
    assert runner.invoke(app, ["privacy", "rotate-key", "--store", str(db)]).exit_code == 0
    assert runner.invoke(app, ["privacy", "scrub", "--store", str(db)]).exit_code == 0
    with Store(db) as st:
        ids = st.pseudonyms()
        assert st.reader().execute("SELECT DISTINCT user_id, session_id, asr_text FROM turns").fetchall() == [(ids.of("u1"), ids.of("s1"), "mail <EMAIL>")]


# -- forgetting a user -------------------------------------------------------------------------
def _files_mention(root, needles: list[str]) -> list[str]:
    hits = []
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            hits += [f"{path.name}: {n}" for n in needles if n.encode() in data]
    return hits


def test_forget_leaves_no_trace_in_any_table_or_file(tmp_path):
    from selflearn.signals import compute_signals
    from selflearn.teach import Preferences

    unique = "play the zyxwvut quartet in the yellow kitchen"
    mine = session("ghost-1", 3, user_id="ghost", device_id="ghost-device")
    for t in mine:
        t["utterance"] = {"text": unique, "asr_confidence": 0.9}
    others = [t for i in range(4) for t in session(f"o{i}", 2, user_id=f"other-{i}", start_minute=10 + i)]
    bad = {**make_turn(session_id="ghost-9", user_id="ghost"), "timestamp": "yesterday"}  # quarantined, raw
    db = tmp_path / "s.duckdb"
    with Store(db) as st:
        import_files(st, [write_jsonl(tmp_path / "l.jsonl", mine + others + [bad])])
        compute_signals(st)
        Preferences(st).put("ghost", "music_genre", "zyxwvut polka")
        Preferences(st).record_prompt("ghost", "cuisine", "declined")
        pid = st.pseudonyms().of("ghost")
        assert st.reader().execute("SELECT count(*) FROM turns WHERE user_id = ?", [pid]).fetchall()[0][0] == 3
    (tmp_path / "l.jsonl").unlink()
    assert _files_mention(tmp_path, ["zyxwvut"])  # the check can fail: the text is there before
    r = runner.invoke(app, ["forget", "--user", "ghost", "--store", str(db), "--json"])
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    assert report["deleted"]["turns"] == 3 and report["deleted"]["preferences"] == 1 and report["quarantined_records_removed"] == 1
    assert not _files_mention(tmp_path, ["zyxwvut", pid, '"ghost"'])
    with Store(db) as st:
        tables = [r[0] for r in st.reader().execute("SELECT table_name FROM information_schema.tables").fetchall()]
        for table in tables:
            assert "zyxwvut" not in repr(st.reader().execute(f"SELECT * FROM {table}").fetchall()) and pid not in repr(
                st.reader().execute(f"SELECT * FROM {table}").fetchall())
        assert st.reader().execute("SELECT count(DISTINCT user_id) FROM turns").fetchall()[0][0] == 4  # the others stay
    r = runner.invoke(app, ["forget", "--user", "ghost", "--store", str(db)])
    assert r.exit_code == 2 and "no turns, preferences or personal history" in r.output and "fix:" in r.output


def test_forget_covers_every_table_that_holds_an_id():
    from selflearn.governance.forget import FORGOTTEN_TABLES
    from selflearn.governance.rotation import ID_COLUMNS

    assert set(ID_COLUMNS) <= FORGOTTEN_TABLES


def test_a_failed_forget_changes_nothing(tmp_path, monkeypatch):
    import selflearn.governance.forget as forget_mod

    db = tmp_path / "s.duckdb"
    with Store(db) as st:
        import_files(st, [write_jsonl(tmp_path / "l.jsonl", session("g1", 2, user_id="ghost") + session("o1", 2, user_id="other", start_minute=5))])
    monkeypatch.setattr(forget_mod, "_BY_USER", ("turns", "sessions", "no_such_table"))
    with Store(db) as st:
        with pytest.raises(Exception):
            forget_mod.forget_user(st, "ghost")
        assert st.reader().execute("SELECT count(*) FROM turns").fetchall()[0][0] == 4  # one transaction: all or nothing
