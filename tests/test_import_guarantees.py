"""Atomic per file (even under kill -9), idempotent, streaming, and a lossless round trip."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import count, make_turn, session, write_jsonl

from selflearn.logs.formats import read_batches
from selflearn.logs.schema import Turn
from selflearn.store.export import export_turns
from selflearn.store.importer import default_quarantine_path, import_files
from selflearn.store.store import Store


def _many(n_sessions: int, per: int = 5) -> list[dict]:
    turns = []
    for s in range(n_sessions):
        turns += session(f"s{s}", per)
    return turns


def _kill_mid_file(db: Path, files: list[Path], how: str) -> subprocess.CompletedProcess:
    """Import in a child process that dies (SIGKILL or Ctrl-C) after the 2nd batch of the LAST file."""
    code = textwrap.dedent(
        f"""
        import os, signal
        from selflearn.store.store import Store
        from selflearn.store.importer import import_files
        seen = {{}}
        def progress(path, n):
            seen[path] = seen.get(path, 0) + 1
            if path == {str(files[-1])!r} and seen[path] == 2:
                {"os.kill(os.getpid(), signal.SIGKILL)" if how == "kill" else "raise KeyboardInterrupt"}
        with Store({str(db)!r}) as st:
            import_files(st, {[str(f) for f in files]!r}, batch_size=100, progress=progress)
        """
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("how", ["kill", "interrupt"])
def test_a_killed_import_leaves_the_store_as_before_that_file(tmp_path, how):
    db = tmp_path / "s.duckdb"
    first = write_jsonl(tmp_path / "first.jsonl", _many(20))
    second = write_jsonl(tmp_path / "second.jsonl", [t | {"session_id": "x" + t["session_id"]} for t in _many(100)]
                         + ["{broken"])
    proc = _kill_mid_file(db, [first, second], how)
    assert proc.returncode != 0, proc.stderr
    with Store(db) as st:  # reopening recovers from the WAL
        assert count(st) == 100  # all of the first file, nothing of the second
        assert count(st, "imports") == 1
        assert count(st, "sessions") == 20
        assert not default_quarantine_path(db).exists()  # the killed file's rejects never landed
        if how == "interrupt":
            assert not list(tmp_path.glob("*.part"))  # cleaned up on Ctrl-C
        else:
            assert list(tmp_path.glob("*.part"))  # kill -9 cannot clean up ...
        # The store is consistent: importing the second file again now works completely.
        report = import_files(st, [second])
        assert not list(tmp_path.glob("*.part"))  # ... the next import removes what the dead process left
        assert (report.imported, report.quarantined) == (500, 1)
        assert count(st) == 600


def test_same_file_twice_adds_nothing(store, tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl", _many(10))
    first = import_files(store, [path])
    before = store.reader().execute("SELECT * EXCLUDE (import_id) FROM turns ORDER BY ALL").fetchall()
    second = import_files(store, [path])
    assert (first.imported, second.imported, second.duplicates) == (50, 0, 50)
    assert store.reader().execute("SELECT * EXCLUDE (import_id) FROM turns ORDER BY ALL").fetchall() == before
    assert count(store, "sessions") == 10


def test_reading_is_streamed_in_bounded_batches(tmp_path):
    path = tmp_path / "a.jsonl.gz"
    with gzip.open(path, "wt") as fh:
        for t in _many(50):
            fh.write(json.dumps(t) + "\n")
    sizes = [len(b) for b in read_batches(path, "jsonl", batch_size=64)]
    assert max(sizes) <= 64 and sum(sizes) == 250


def _canonical(records: list[dict]) -> list[dict]:
    models = sorted((Turn.model_validate_json(json.dumps(r)) for r in records),
                    key=lambda m: (m.session_id, m.turn_index))
    return [m.model_dump(mode="json") for m in models]


def test_import_export_round_trip_jsonl_and_parquet(store, tmp_path):
    records = _many(4)
    records[0]["app_version"] = "4.2"
    records[1]["nlu"] = None
    records[1]["entity_resolution"] = None
    records[2]["device"]["state"] = {}
    records[3]["feedback"] = {"barge_in": True, "explicit": "negative", "prompted": True, "comment": "no"}
    records[4]["timestamp"] = "2026-03-02T10:04:00.123456+02:00"  # stored in UTC
    records[5]["utterance"] = {"text": ""}
    records[6]["entity_resolution"] = {"status": "ambiguous", "entities": [  # explicit nulls inside a list
        {"slot": "place_name", "value": "nearest", "resolved_id": None, "score": 0.4, "candidates": 4}]}
    import_files(store, [write_jsonl(tmp_path / "in.jsonl", records)])

    out_jsonl, out_gz, out_pq = tmp_path / "out.jsonl", tmp_path / "out.jsonl.gz", tmp_path / "out.parquet"
    assert export_turns(store, out_jsonl) == len(records)
    exported = [json.loads(line) for line in out_jsonl.read_text().splitlines()]
    ids = store.pseudonyms()  # the store keeps keyed pseudonyms of the ids, never the ids
    expected = [{**r, **{k: ids.of(r[k]) for k in ("session_id", "user_id", "device_id")}} for r in records]
    assert _canonical(exported) == _canonical(expected)
    assert exported[0]["timestamp"].endswith("Z")

    export_turns(store, out_gz)
    export_turns(store, out_pq)
    for out in (out_jsonl, out_gz, out_pq):
        with Store(tmp_path / f"again-{out.name}.duckdb") as again:
            report = import_files(again, [out])
            assert (report.imported, report.quarantined) == (len(records), 0), report.as_dict()
            export_turns(again, tmp_path / "again.jsonl")
        # an export is pseudonymous; importing it again hashes its ids once more (under that store's key)
        assert _without_ids(tmp_path / "again.jsonl") == _without_ids(out_jsonl)


def _without_ids(path: Path) -> list[dict]:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return sorted(({k: v for k, v in r.items() if k not in ("session_id", "user_id", "device_id")} for r in rows),
                  key=lambda r: json.dumps(r, sort_keys=True))


def test_csv_import_with_dotted_columns(store, tmp_path):
    path = tmp_path / "logs.csv"
    path.write_text(
        "schema_version,session_id,turn_index,timestamp,user_id,device_id,device.type,device.has_screen,"
        "device.state,utterance.text,utterance.asr_confidence,nlu.domain,nlu.intent,nlu.slots,"
        "response.status,feedback.barge_in,team\n"
        '1,c1,0,2026-03-02T08:00:00Z,u1,d1,speaker,false,"{""light"": ""on""}",turn on the light,0.9,iot,'
        'iot_hue_lighton,[],success,false,warriors\n'
        "1,c1,1,2026-03-02T08:01:00Z,u1,d1,speaker,maybe,,what time is it,0.8,datetime,datetime_query,,"
        "success,true,\n"
    )
    report = import_files(store, [path])
    assert (report.imported, report.quarantined) == (1, 1)
    from conftest import quarantined

    q = quarantined(store)[0]
    assert q["line"] == 3 and "device.has_screen = 'maybe'" in q["reason"]
    state, extra = store.reader().execute("SELECT device_state, extra FROM turns").fetchone()
    assert json.loads(state) == {"light": "on"} and json.loads(extra) == {"team": "warriors"}


def test_a_store_accepts_one_writer_at_a_time(tmp_path):
    from selflearn.errors import StoreBusyError

    db = tmp_path / "s.duckdb"
    Store(db).close()
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import duckdb, time; c = duckdb.connect({str(db)!r}); print('ok', flush=True); "
                               "time.sleep(30)"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "ok"
        with pytest.raises(StoreBusyError, match="another process"):
            Store(db)
    finally:
        holder.kill()
        holder.wait()


def test_the_test_factory_makes_a_valid_turn():
    Turn.model_validate_json(json.dumps(make_turn()))
