"""Teachable AI: the preference store (put/get/list/delete, provenance, validation, migration)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import duckdb
import pytest

from selflearn.errors import InvalidInputError
from selflearn.store.store import STORE_VERSION, Store
from selflearn.teach import KINDS, Preferences

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=timezone.utc)


def test_put_get_list_and_update_keep_the_first_time(store):
    prefs = Preferences(store)
    p = prefs.put("u1", "sports_team", "Golden State  Warriors", at=T0)
    assert (p.value, p.provenance, p.confidence, p.created_at, p.updated_at) == ("golden state warriors", "taught", 1.0, T0, T0)
    later = T0 + timedelta(days=1)
    p = prefs.put("u1", "sports_team", "chicago bulls", at=later)
    assert p.value == "chicago bulls" and p.created_at == T0 and p.updated_at == later
    prefs.put("u1", "device_nickname", "dev:42", key="The Lamp", at=T0)
    prefs.put("u2", "cuisine", "italian", at=T0)
    assert [(x.kind, x.key) for x in prefs.list("u1")] == [("device_nickname", "the lamp"), ("sports_team", "")]
    assert prefs.get("u1", "device_nickname", "the lamp").value == "dev:42"
    assert prefs.get("u1", "cuisine") is None and prefs.list("nobody") == []


def test_inferred_never_overwrites_what_the_user_taught(store):
    prefs = Preferences(store)
    prefs.put("u1", "home_city", "wilkerson ohio", at=T0)
    p = prefs.put("u1", "home_city", "wilkerson washington", provenance="inferred", confidence=0.6, at=T0 + timedelta(hours=1))
    assert (p.value, p.provenance) == ("wilkerson ohio", "taught")
    p = prefs.put("u1", "home_city", "wilkerson washington", provenance="confirmed", at=T0 + timedelta(hours=2))
    assert (p.value, p.provenance) == ("wilkerson washington", "confirmed")
    prefs.put("u2", "cuisine", "thai", provenance="inferred", confidence=0.5)
    assert prefs.put("u2", "cuisine", "italian").value == "italian"  # the user's word beats an inference


def test_delete_one_kind_or_everything_and_the_prompts(store):
    prefs = Preferences(store)
    for kind, value in (("sports_team", "warriors"), ("cuisine", "italian"), ("news_source", "bbc")):
        prefs.put("u1", kind, value)
    prefs.put("u1", "device_nickname", "dev:1", key="the lamp")
    prefs.put("u1", "device_nickname", "dev:2", key="the fan")
    prefs.record_prompt("u1", "sports_team", "declined", question="Should I remember that?")
    assert prefs.delete("u1", "device_nickname", "the lamp") == 1
    assert prefs.delete("u1", "cuisine") == 1 and prefs.prompts("u1")["declined"] == 1
    assert prefs.delete("u1") == 3 and prefs.list("u1") == [] and prefs.prompts("u1")["declined"] == 0
    assert prefs.delete("u1") == 0


def test_prompts_are_counted_by_outcome_and_time(store):
    prefs = Preferences(store)
    prefs.record_prompt("u1", "sports_team", "declined", at=T0)
    prefs.record_prompt("u1", "cuisine", "accepted", at=T0 + timedelta(days=2))
    prefs.record_prompt("u1", "cuisine", "declined", at=T0 + timedelta(days=3))
    assert prefs.prompts("u1") == {"accepted": 1, "declined": 2, "ignored": 0}
    assert prefs.prompts("u1", since=T0 + timedelta(days=1)) == {"accepted": 1, "declined": 1, "ignored": 0}


@pytest.mark.parametrize("call, match", [
    (lambda p: p.put("", "cuisine", "thai"), "user_id"),
    (lambda p: p.put("u", "pizza", "thai"), "must be one of"),
    (lambda p: p.put("u", "cuisine", "  "), "value"),
    (lambda p: p.put("u", "cuisine", "x" * 500), "at most 200"),
    (lambda p: p.put("u", "device_nickname", "dev:1"), "needs its name as the key"),
    (lambda p: p.put("u", "cuisine", "thai", provenance="guessed"), "provenance"),
    (lambda p: p.put("u", "cuisine", "thai", confidence=1.5), "confidence"),
    (lambda p: p.record_prompt("u", "cuisine", "maybe"), "outcome"),
    (lambda p: p.list("u", kind="nope"), "must be one of"),
])
def test_bad_input_names_the_value_rule_and_fix(store, call, match):
    with pytest.raises(InvalidInputError, match=match) as e:
        call(Preferences(store))
    assert "fix:" in str(e.value)
    assert Preferences(store).list("u") == []  # nothing half-written


def test_an_older_store_gains_the_preference_tables_on_open(tmp_path):
    from selflearn.store.store import MIGRATIONS

    path = tmp_path / "old.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE meta (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL)")
    MIGRATIONS[0](con)
    con.execute("INSERT INTO meta VALUES ('store_version', '1')")
    con.close()
    with Store(path) as st:
        assert st.version == STORE_VERSION == 2 and st.has_table("preferences") and st.has_table("teaching_prompts")
        Preferences(st).put("u", "music_genre", "jazz")
    assert set(KINDS) >= {"sports_team", "music_genre", "music_artist", "cuisine", "home_city", "device_nickname", "news_source"}
