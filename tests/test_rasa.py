"""The Rasa tracker-store adapter on a realistic multi-session, multi-channel export."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import count

from selflearn.errors import InvalidInputError
from selflearn.logs.rasa import rasa_turns, tracker_to_turns
from selflearn.store.importer import import_files

EXPORT = Path(__file__).parent / "data" / "rasa_tracker_export.json"


@pytest.fixture(scope="module")
def turns():
    return [t for _, t in rasa_turns(EXPORT)]


def test_sessions_and_turn_indexes(turns):
    sessions = {}
    for t in turns:
        sessions.setdefault(t["session_id"], []).append(t["turn_index"])
    assert sessions == {
        "+14155550123#0": [0, 1, 2],
        "+14155550123#1": [0, 1, 2],
        "b5c1-voice-caller#0": [0, 1],
        "b5c1-voice-caller#1": [0],  # a restart starts a new session
    }


def test_sender_ids_reach_the_store_only_as_keyed_pseudonyms(turns, store):
    assert {t["user_id"] for t in turns} == {"+14155550123", "b5c1-voice-caller"}  # the adapter keeps them; the import hashes
    import_files(store, [EXPORT], fmt="rasa")
    ids = store.pseudonyms()
    rows = store.reader().execute("SELECT DISTINCT user_id, session_id, device_id FROM turns").fetchall()
    assert {r[0] for r in rows} == {ids.of("+14155550123"), ids.of("b5c1-voice-caller")}
    assert ids.of("+14155550123#0") in {r[1] for r in rows}  # the session id embeds the sender: hashed whole
    assert not any("555" in v or "voice-caller" in v for r in rows for v in r)


def test_nlu_entities_ranking_and_response(turns):
    first = turns[0]
    assert first["timestamp"] == "2026-01-01T08:00:01.000000Z"
    assert first["nlu"]["intent"] == "weather_query" and first["nlu"]["domain"] == "weather"
    assert first["nlu"]["slots"] == [{"name": "place_name", "value": "wilkerson"}]
    assert [h["intent"] for h in first["nlu"]["top_k"]] == ["weather_query", "general_quirky"]
    assert first["response"] == {"status": "success", "text": "It's 14 degrees and cloudy in Wilkerson, Washington.",
                                 "action": "action_weather"}
    assert first["latency_ms"] == pytest.approx(620.0, abs=1)
    assert first["rasa"]["slots_set"] == {"place_name": "wilkerson"}
    assert first["device"] == {"type": "rest", "has_screen": True}


def test_statuses(turns):
    by_text = {t["utterance"]["text"]: t for t in turns}
    assert by_text["make me a sandwich"]["response"]["status"] == "unsupported"
    assert by_text["play we don't talk anymore"]["response"]["status"] == "failure"
    assert by_text["play we don't talk anymore by charlie puth"]["response"]["status"] == "success"
    assert by_text["thanks"]["response"]["status"] == "no_response"
    assert by_text["thanks"]["rasa"]["rewound"] is True
    garage = by_text["open the garage door"]
    assert garage["device"] == {"type": "twilio_voice", "has_screen": False}


def test_import_with_format_rasa(store):
    report = import_files(store, [EXPORT], fmt="rasa")
    assert (report.imported, report.quarantined) == (9, 0), report.as_dict()
    assert count(store, "sessions") == 4
    # importing the export again adds nothing
    assert import_files(store, [EXPORT], fmt="rasa").duplicates == 9


def test_not_a_tracker(tmp_path):
    with pytest.raises(InvalidInputError, match="sender_id"):
        tracker_to_turns({"events": []})
    bad = tmp_path / "x.json"
    bad.write_text(json.dumps([{"conversation": 1}]))
    from selflearn.store.store import Store

    with Store(tmp_path / "s.duckdb") as st:
        report = import_files(st, [bad], fmt="rasa")
    assert "sender_id" in report.files[0].error
