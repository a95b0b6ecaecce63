"""Every bad-input case: a one-line reason (value, rule, fix), good records kept, nothing dropped."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pytest
from conftest import count, make_turn, quarantined, session, write_jsonl

from selflearn.store.importer import import_files


def _reason(st, line: int) -> str:
    rows = [q for q in quarantined(st) if q["line"] == line]
    assert len(rows) == 1, quarantined(st)
    return rows[0]["reason"]


def _assert_explains(reason: str, *needles: str) -> None:
    assert "; fix: " in reason, reason
    assert "\n" not in reason
    for needle in needles:
        assert needle in reason, reason


def test_malformed_json_line_is_quarantined_and_the_rest_kept(store, tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl", [*session("s1", 2), '{"schema_version": 1, "session_id": ', session("s2", 1)[0]])
    report = import_files(store, [path])
    assert (report.imported, report.quarantined) == (3, 1)
    _assert_explains(_reason(store, 3), "not valid JSON")
    q = quarantined(store)[0]
    assert q["file"] == str(path) and q["record"] == '{"schema_version": 1, "session_id":'


@pytest.mark.parametrize(
    ("field", "value", "needles"),
    [
        ("turn_index", "3", ("turn_index = '3'", "integer")),
        ("turn_index", -1, ("turn_index = -1", "greater than or equal to 0")),
        ("turn_index", 2**31, ("turn_index = 2147483648", "less than or equal to 2147483647")),
        ("timestamp", "1700000000", ("timestamp = '1700000000'", "ISO 8601", "within ±14:00")),
        ("timestamp", 1700000000, ("timestamp = 1700000000", "ISO 8601")),
        ("timestamp", "2026-03-02T08:15:00+25:00", ("timestamp = '2026-03-02T08:15:00+25:00'", "within ±14:00")),
        ("timestamp", "2026-02-30T08:15:00Z", ("not a real date",)),
        ("timestamp", "2026-03-02T08:15:00", ("timestamp", "timezone", "Z")),
        ("timestamp", "yesterday", ("timestamp = 'yesterday'",)),
        ("device", {"type": "speaker", "has_screen": "no"}, ("device.has_screen = 'no'", "true or false")),
        ("latency_ms", "fast", ("latency_ms = 'fast'",)),
        ("user_id", "", ("user_id = ''", "at least 1 character")),
    ],
)
def test_wrong_types_and_values(store, tmp_path, field, value, needles):
    path = write_jsonl(tmp_path / "a.jsonl", [make_turn(**{field: value}), make_turn(session_id="ok")])
    report = import_files(store, [path])
    assert (report.imported, report.quarantined) == (1, 1)
    _assert_explains(_reason(store, 1), *needles)


def test_wrong_type_inside_a_list(store, tmp_path):
    turn = make_turn()
    turn["nlu"]["slots"] = [{"name": "song_name", "value": 5}]
    import_files(store, [write_jsonl(tmp_path / "a.jsonl", [turn])])
    _assert_explains(_reason(store, 1), "nlu.slots[0].value = 5")


@pytest.mark.parametrize("field", ["session_id", "timestamp", "utterance", "device"])
def test_missing_required_field(store, tmp_path, field):
    import_files(store, [write_jsonl(tmp_path / "a.jsonl", [make_turn(**{field: None})])])
    _assert_explains(_reason(store, 1), field, "required field is missing")
    assert count(store) == 0


def test_unknown_schema_version(store, tmp_path):
    import_files(store, [write_jsonl(tmp_path / "a.jsonl", [make_turn(schema_version=7)])])
    _assert_explains(_reason(store, 1), "schema_version = 7", "reads schema_version 1", "upgrade selflearn")


def test_line_that_is_not_an_object(store, tmp_path):
    import_files(store, [write_jsonl(tmp_path / "a.jsonl", ["[1, 2]", make_turn()])])
    _assert_explains(_reason(store, 1), "JSON object")
    assert count(store) == 1


def test_duplicate_turn_id_same_content_is_a_duplicate_not_an_error(store, tmp_path):
    turn = make_turn()
    report = import_files(store, [write_jsonl(tmp_path / "a.jsonl", [turn, turn])])
    assert (report.imported, report.duplicates, report.quarantined) == (1, 1, 0)


def test_duplicate_turn_id_with_other_content_is_quarantined(store, tmp_path):
    first, second = make_turn(), make_turn(latency_ms=1.0)
    report = import_files(store, [write_jsonl(tmp_path / "a.jsonl", [first, second])])
    assert (report.imported, report.quarantined) == (1, 1)
    _assert_explains(_reason(store, 2), "('s1', 0)", "different content", "first at line 1")
    # ... and against what an earlier import stored.
    report = import_files(store, [write_jsonl(tmp_path / "b.jsonl", [make_turn(latency_ms=2.0)])])
    assert report.quarantined == 1
    assert "already stored" in quarantined(store)[-1]["reason"]


def test_duplicate_ids_across_batches_of_one_file(store, tmp_path):
    turns = session("s1", 5)
    report = import_files(store, [write_jsonl(tmp_path / "a.jsonl", turns + turns)], batch_size=3)
    assert (report.imported, report.duplicates) == (5, 5)


def test_turns_out_of_order_within_a_session(store, tmp_path):
    turns = session("s1", 3)
    turns[2]["timestamp"] = "2026-03-02T07:00:00Z"  # index 2 earlier than index 1
    report = import_files(store, [write_jsonl(tmp_path / "a.jsonl", turns)])
    assert (report.imported, report.quarantined) == (2, 1)
    _assert_explains(_reason(store, 3), "('s1', 2)", "earlier than turn 1", "must not decrease")


def test_out_of_order_against_turns_already_stored(store, tmp_path):
    import_files(store, [write_jsonl(tmp_path / "a.jsonl", [session("s1", 3)[2]])])  # index 2 at 08:02
    late = make_turn(session_id="s1", turn_index=1, timestamp="2026-03-02T09:00:00Z")
    report = import_files(store, [write_jsonl(tmp_path / "b.jsonl", [late])])
    assert report.quarantined == 1
    assert "later than turn 2" in quarantined(store)[0]["reason"]


def test_turns_of_a_session_may_arrive_in_any_file_order(store, tmp_path):
    turns = session("s1", 4)
    report = import_files(store, [write_jsonl(tmp_path / "a.jsonl", turns[::-1])])
    assert (report.imported, report.quarantined) == (4, 0)


def test_empty_file(store, tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    report = import_files(store, [empty])
    assert not report.ok
    _assert_explains(report.files[0].error, "no records")


@pytest.mark.parametrize(
    ("name", "content", "needle"),
    [
        ("logs.jsonl.gz", b'{"a": 1}\n', "not gzip"),
        ("logs.jsonl", gzip.compress(b'{"a": 1}\n'), "gzip data, not JSONL"),
        ("logs.jsonl", b"PAR1\x00\x00binary", "Parquet data, not JSONL"),
        ("logs.parquet", b'{"a": 1}\n', "not a Parquet file"),
        ("logs.txt", b'{"a": 1}\n', "cannot tell the format"),
    ],
)
def test_file_that_is_not_the_format_its_name_claims(store, tmp_path, name, content, needle):
    path = tmp_path / name
    path.write_bytes(content)
    good = write_jsonl(tmp_path / "good.jsonl", [make_turn()])
    report = import_files(store, [path, good])
    assert report.files[0].error is not None
    _assert_explains(report.files[0].error, needle)
    assert report.imported == 1 and report.ok  # the other file still imports


def test_unreadable_paths(store, tmp_path):
    missing = tmp_path / "nope.jsonl"
    folder = tmp_path / "dir.jsonl"
    folder.mkdir()
    report = import_files(store, [missing, folder])
    assert not report.ok
    _assert_explains(report.files[0].error, "cannot be read")
    _assert_explains(report.files[1].error, "is a directory")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_permissions(store, tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl", [make_turn()])
    path.chmod(0)
    report = import_files(store, [path])
    _assert_explains(report.files[0].error, "cannot be read")


def test_invalid_utf8_line_is_quarantined(store, tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_bytes(b'{"session_id": "\xff\xfe"}\n' + json.dumps(make_turn()).encode() + b"\n")
    report = import_files(store, [path])
    assert (report.imported, report.quarantined) == (1, 1)
    _assert_explains(_reason(store, 1), "fix")


def test_a_latin1_line_keeps_its_exact_bytes_in_quarantine(store, tmp_path):
    import base64

    line = json.dumps(make_turn(session_id="café"), ensure_ascii=False).encode("latin-1")
    path = tmp_path / "a.jsonl"
    path.write_bytes(line + b"\n" + json.dumps(make_turn(session_id="ok")).encode() + b"\n")
    report = import_files(store, [path])
    assert (report.imported, report.quarantined) == (1, 1)
    _assert_explains(_reason(store, 1), "byte 0xe9", "not UTF-8", "re-save the file as UTF-8")
    assert base64.b64decode(quarantined(store)[0]["record_base64"]) == line  # nothing lost: the raw bytes


def test_a_utf8_byte_order_mark_is_not_part_of_the_first_record(store, tmp_path):
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(make_turn()).encode() + b"\n" + json.dumps(make_turn(session_id="s2")).encode() + b"\n")
    csv_path = tmp_path / "bom.csv"
    csv_path.write_bytes(b"\xef\xbb\xbfschema_version,session_id,turn_index,timestamp,user_id,device_id,device.type,device.has_screen,utterance.text\n"
                         b"1,c1,0,2026-03-02T08:15:00Z,u,d,speaker,false,play jazz\n")
    report = import_files(store, [path, csv_path])
    assert (report.imported, report.quarantined) == (3, 0), quarantined(store)


def test_a_value_the_store_cannot_hold_spoils_only_its_own_file(store, tmp_path, monkeypatch):
    """Should validation ever let through what DuckDB refuses, that file is rolled back with a one-line
    reason and the next files are still imported."""
    from selflearn.store import importer

    first = write_jsonl(tmp_path / "a.jsonl", [make_turn(session_id="a")])
    second = write_jsonl(tmp_path / "b.jsonl", [make_turn(session_id="b")])
    real = importer._FileImport._store

    def refuse(self, staged, originals):
        if self.source == str(first):
            self.con.execute("SELECT CAST(2147483648 AS INTEGER)")
        return real(self, staged, originals)

    monkeypatch.setattr(importer._FileImport, "_store", refuse)
    report = import_files(store, [first, second])
    assert report.files[0].imported == 0 and "store refused a value" in report.files[0].error and "\n" not in report.files[0].error
    assert report.files[1].imported == 1 and count(store) == 1


def test_truncated_gzip_imports_nothing_from_that_file(store, tmp_path):
    data = gzip.compress("".join(json.dumps(t) + "\n" for t in session("s1", 50)).encode())
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(data[: len(data) // 2])
    report = import_files(store, [path])
    assert report.files[0].error and "unreadable" in report.files[0].error
    assert count(store) == 0


def test_extra_fields_are_kept_never_dropped(store, tmp_path):
    turn = make_turn(app_version="4.2.1")
    turn["device"]["firmware"] = "x9"
    turn["nlu"]["model"] = "nlu-2026-02"
    turn["nlu"]["slots"][0]["source"] = "tagger"
    import_files(store, [write_jsonl(tmp_path / "a.jsonl", [turn])])
    extra, slots = store.reader().execute("SELECT extra, slots FROM turns").fetchone()
    assert json.loads(extra) == {"app_version": "4.2.1", "device": {"firmware": "x9"}, "nlu": {"model": "nlu-2026-02"}}
    assert json.loads(slots)[0]["source"] == "tagger"


def test_cli_exit_code_is_nonzero_only_when_nothing_imported(tmp_path):
    from typer.testing import CliRunner

    from selflearn.cli.main import app

    runner = CliRunner()
    db = str(tmp_path / "s.duckdb")
    bad = write_jsonl(tmp_path / "bad.jsonl", ["{oops", make_turn(turn_index="x")])
    mixed = write_jsonl(tmp_path / "mixed.jsonl", ["{oops", make_turn()])
    res = runner.invoke(app, ["store", "import", str(bad), "--store", db])
    assert res.exit_code == 2, res.output
    res = runner.invoke(app, ["store", "import", str(mixed), "--store", db])
    assert res.exit_code == 0, res.output
    assert "quarantined 1" in res.output
    res = runner.invoke(app, ["store", "import", str(Path(tmp_path / "missing.jsonl")), "--store", db])
    assert res.exit_code == 2
