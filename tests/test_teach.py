"""Teachable AI: the preference store (put/get/list/delete, provenance, validation, migration)."""

from __future__ import annotations

import json
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
    (lambda p: p.put("u", "device_nickname", "dev:1"), "needs the name it is for as the key"),
        (lambda p: p.put("u", "place", "wilkerson ohio"), "needs the name it is for as the key"),
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
        assert st.version == STORE_VERSION >= 3 and st.has_table("preferences") and st.has_table("teaching_prompts") and st.has_table("rewrite_reviews")
        Preferences(st).put("u", "music_genre", "jazz")
    assert set(KINDS) >= {"sports_team", "music_genre", "music_artist", "cuisine", "home_city", "device_nickname", "news_source"}
    from selflearn.teach.teaching import SAID

    assert set(SAID) == set(KINDS)  # every kind can be named back to the user


# -- teaching by statement and by guided Q&A ---------------------------------------------------
from selflearn.teach import (Moment, MomentConfig, PreferenceRewriter, Teacher, answer_moment, apply_preferences,  # noqa: E402
                             parse_statement, teachable_moment)


@pytest.mark.parametrize("said, want", [
    ("I'm a Warriors fan", [("sports_team", "", "warriors")]),
    ("I am a big Golden State Warriors fan", [("sports_team", "", "golden state warriors")]),
    ("I like Italian restaurants", [("cuisine", "", "italian")]),
    ("i love jazz music", [("music_genre", "", "jazz")]),
    ("My favourite artist is Taylor Swift", [("music_artist", "", "taylor swift")]),
    ("I live in Wilkerson, Ohio", [("home_city", "", "wilkerson ohio")]),
    ("I get my news from the BBC", [("news_source", "", "bbc")]),
    ("call the kitchen light the lamp", [("device_nickname", "the lamp", "the kitchen light")]),
    ("what's the weather in wilkerson", []),
    ("play the game", []),
])
def test_statements_teach_preferences(said, want):
    assert parse_statement(said) == want


def test_guided_qa_asks_stores_skips_and_stops(store):
    prefs = Preferences(store)
    teacher = Teacher(prefs, kinds=("sports_team", "music_genre", "cuisine", "home_city"))
    assert teacher.turn("u1", "what time is it") is None
    r = teacher.turn("u1", "Alexa, learn my preferences")
    assert r.active and "sports team" in r.reply and teacher.asking("u1") == "sports_team" and teacher.asking("u2") is None
    r = teacher.turn("u1", "It's the Warriors")
    assert r.stored[0]["value"] == "warriors" and "music" in r.reply
    r = teacher.turn("u1", "skip")
    assert r.stored == [] and "food" in r.reply
    r = teacher.turn("u1", "I really like Italian food")
    assert r.stored[0]["value"] == "italian" and "city" in r.reply
    r = teacher.turn("u1", "stop")
    assert not r.active and not teacher.active("u1")
    assert {(p.kind, p.value, p.provenance) for p in prefs.list("u1")} == {("sports_team", "warriors", "taught"), ("cuisine", "italian", "taught")}
    r = teacher.turn("u2", "I'm a Chicago Bulls fan")
    assert not r.active and prefs.get("u2", "sports_team").value == "chicago bulls" and "chicago bulls" in r.reply
    with pytest.raises(InvalidInputError, match="must be among"):
        Teacher(prefs, kinds=("shoe_size",))


# -- preferences used on the next request -------------------------------------------------------
PREFS = {("home_city", ""): "wilkerson ohio", ("sports_team", ""): "golden state warriors", ("cuisine", ""): "italian",
         ("music_genre", ""): "jazz", ("news_source", ""): "bbc", ("device_nickname", "the lamp"): "the desk light"}


@pytest.mark.parametrize("said, want", [
    ("play the game", "play the golden state warriors game"),
    ("find a restaurant near me", "find an italian restaurant near me"),
    ("weather in wilkerson", "weather in wilkerson ohio"),
    ("weather in wilkerson ohio", "weather in wilkerson ohio"),
    ("play some music", "play some jazz music"),
    ("play the news", "play the news from bbc"),
    ("turn on the lamp", "turn on the desk light"),
    ("find a chinese restaurant", "find a chinese restaurant"),
    ("set an alarm for seven", "set an alarm for seven"),
])
def test_preferences_fill_in_ambiguous_requests(said, want):
    assert apply_preferences(said, PREFS) == want


def test_the_preference_rewriter_uses_what_was_taught_on_the_next_request(store):
    prefs = Preferences(store)
    rw = PreferenceRewriter(prefs)
    kw = {"device": {}, "context": {}}
    assert rw.rewrite("play the game", user_id="u1", **kw) is None  # nothing taught yet
    Teacher(prefs).turn("u1", "I'm a Warriors fan")
    assert rw.rewrite("play the game", user_id="u1", **kw) == "play the warriors game"
    assert rw.rewrite("play the game", user_id="u2", **kw) is None  # personal: another user is not affected
    assert rw.rewrite("what time is it", user_id="u1", **kw) is None
    assert rw.rewrite("", user_id="u1", **kw) is None and rw.rewrite("x" * 5000, user_id="u1", **kw) is None
    prefs.delete("u1")
    assert rw.rewrite("play the game", user_id="u1", **kw) is None  # deleting is forgetting


# -- teachable moments ---------------------------------------------------------------------------
def _ambiguous(text="what's the weather in wilkerson", *, feedback=None, score=0.62):
    from conftest import make_turn

    return make_turn(user_id="u1", utterance={"text": text, "asr_confidence": 0.9},
                     entity_resolution={"status": "resolved", "entities": [
                         {"slot": "place_name", "value": "wilkerson", "resolved_id": "place:wilkerson@washington",
                          "resolved_value": "wilkerson washington", "score": score, "candidates": 3}]},
                     feedback=feedback or {"barge_in": False})


ANY = MomentConfig(require_signal=False)  # ask on every ambiguous entity


def test_a_teachable_moment_asks_once_and_stores_on_yes(store):
    prefs = Preferences(store)
    m = teachable_moment(_ambiguous(), None, prefs, config=ANY, now=T0)
    assert (m.kind, m.key, m.value, m.reason) == ("place", "wilkerson", "wilkerson washington", "ambiguous_entity")
    assert m.question == "Did you mean wilkerson washington? Should I remember that?"
    assert teachable_moment(_ambiguous(score=0.97), None, prefs, config=ANY, now=T0) is None  # resolved confidently: no question
    flagged = _ambiguous(score=1.0)
    flagged["entity_resolution"]["status"] = "ambiguous"  # an exact name several places share
    assert teachable_moment(flagged, None, prefs, config=ANY, now=T0).kind == "place"
    artist = _ambiguous("play adele")
    artist["entity_resolution"]["entities"][0].update(slot="artist_name", value="adele", resolved_value="adele")
    assert teachable_moment(artist, None, prefs, config=ANY, now=T0) is None  # an unsure artist is not the user's favourite
    # by default the assistant asks only when the user showed it went wrong
    assert teachable_moment(_ambiguous(), None, prefs, now=T0) is None
    assert teachable_moment(_ambiguous(feedback={"barge_in": False, "explicit": "negative"}), None, prefs, now=T0).reason == "negative_feedback"
    assert teachable_moment(_ambiguous(), _ambiguous(), prefs, now=T0).reason == "repeated_request"
    assert teachable_moment(_ambiguous(feedback={"barge_in": True}), None, prefs, now=T0).reason == "barge_in"
    assert answer_moment(m, "no, I meant Wilkerson Ohio", prefs, now=T0) == "accepted"
    p = prefs.get("u1", "place", "wilkerson")
    assert (p.value, p.provenance) == ("wilkerson ohio", "taught")
    assert teachable_moment(_ambiguous(), None, prefs, config=ANY, now=T0 + timedelta(days=5)) is None  # known now: never asked again
    other = _ambiguous("weather in springfield")
    other["entity_resolution"]["entities"][0].update(value="springfield", resolved_value="springfield illinois")
    assert teachable_moment(other, None, prefs, config=ANY, now=T0 + timedelta(days=5)).key == "springfield"  # another place is another question
    prefs.delete("u1", "place")
    m = teachable_moment(_ambiguous(), None, prefs, config=ANY, now=T0 + timedelta(days=5))
    assert answer_moment(m, "yes please", prefs, now=T0 + timedelta(days=5)) == "accepted"
    assert prefs.get("u1", "place", "wilkerson").provenance == "confirmed"
    prefs.delete("u1", "place")
    m = teachable_moment(_ambiguous(), None, prefs, config=ANY, now=T0 + timedelta(days=7))
    assert answer_moment(m, "no, ohio", prefs, now=T0 + timedelta(days=7)) == "accepted"
    assert prefs.get("u1", "place", "wilkerson").value == "wilkerson ohio"  # the state alone names the place with it


def _said(text, slots=()):
    from conftest import make_turn

    return make_turn(user_id="u1", utterance={"text": text, "asr_confidence": 0.9},
                     nlu={"domain": "play", "intent": "play_music", "confidence": 0.9, "top_k": [],
                          "slots": [{"name": n, "value": v} for n, v in slots]})


def test_a_refined_request_is_a_teachable_moment(store):
    prefs = Preferences(store)
    opened = MomentConfig(open_requests=(("play_music", "music_genre"), ("takeaway_order", "cuisine")))
    first, again = _said("play some music"), _said("play some jazz music", [("music_genre", "jazz")])
    m = teachable_moment(again, first, prefs, config=opened, now=T0)
    assert teachable_moment(again, first, prefs, now=T0) is None  # the team did not mark music requests open
    assert (m.kind, m.value, m.reason) == ("music_genre", "", "refined_request")  # jazz this once: ask what they like
    assert m.question == "What kind of music do you like? I can remember it for next time."
    assert teachable_moment(again, None, prefs, config=opened, now=T0) is None  # no request before it
    assert teachable_moment(again, _said("play some jazz"), prefs, config=opened, now=T0) is None  # the value was said before
    assert teachable_moment(again, _said("play the radio"), prefs, config=opened, now=T0) is None  # another request, not a refinement
    food = _said("find italian restaurants near me", [("food_type", "italian")])
    assert teachable_moment(food, _said("find restaurants near me"), prefs, config=opened, now=T0).kind == "cuisine"
    assert answer_moment(m, "mostly jazz", prefs, now=T0) == "accepted" and prefs.get("u1", "music_genre").value == "jazz"


def test_a_place_said_again_with_its_state_is_a_moment_about_that_place(store):
    prefs = Preferences(store)
    first = _ambiguous("weather in wilkerson", score=1.0)
    first["entity_resolution"]["status"] = "ambiguous"
    first["entity_resolution"]["entities"][0].update(resolved_value="wilkerson, WA")
    again = _ambiguous("weather in wilkerson ohio", score=1.0)
    again["entity_resolution"]["entities"][0].update(value="wilkerson ohio", resolved_value="wilkerson, OH")
    m = teachable_moment(again, first, prefs, now=T0)
    assert (m.kind, m.key, m.value, m.reason) == ("place", "wilkerson", "wilkerson oh", "refined_request")
    assert m.question == "By wilkerson, do you mean wilkerson oh? Should I remember that?"
    assert teachable_moment(first, first, prefs, now=T0).reason == "repeated_request"  # the same again: no refinement


def test_an_open_request_asks_what_the_user_likes(store):
    prefs = Preferences(store)
    cfg = MomentConfig(open_requests=(("play_music", "music_genre"),))
    open_ = _said("play some music")
    assert teachable_moment(open_, None, prefs, config=cfg, now=T0) is None  # no sign it went wrong
    open_["feedback"] = {"barge_in": True}
    m = teachable_moment(open_, None, prefs, config=cfg, now=T0)
    assert (m.kind, m.value, m.reason) == ("music_genre", "", "barge_in")
    assert m.question == "What kind of music do you like? I can remember it for next time."
    assert teachable_moment(open_, None, prefs, now=T0) is None  # intents the team did not mark open are not asked about
    named = _said("play some jazz music", [("music_genre", "jazz")]) | {"feedback": {"barge_in": True}}
    assert teachable_moment(named, None, prefs, config=cfg, now=T0) is None  # the request named what it wants
    assert answer_moment(m, "I really like jazz", prefs, now=T0) == "accepted"
    assert (prefs.get("u1", "music_genre").value, prefs.get("u1", "music_genre").provenance) == ("jazz", "taught")
    m2 = Moment("u2", "cuisine", "", "barge_in", "What kind of food do you like?")
    assert answer_moment(m2, "no thanks", prefs, now=T0) == "declined" and prefs.get("u2", "cuisine") is None


def test_the_assistant_backs_off_when_users_decline(store):
    prefs = Preferences(store)
    cfg = MomentConfig(max_prompts=1, prompt_window_days=1, backoff_declines=2, backoff_days=30, require_signal=False)
    day = T0
    m = teachable_moment(_ambiguous(), None, prefs, config=cfg, now=day)
    assert answer_moment(m, "no thanks", prefs, now=day) == "declined"
    assert teachable_moment(_ambiguous(), None, prefs, config=cfg, now=day + timedelta(hours=2)) is None  # one prompt a day
    day += timedelta(days=2)
    m = teachable_moment(_ambiguous(), None, prefs, config=cfg, now=day)
    assert answer_moment(m, "no", prefs, now=day) == "declined"
    assert prefs.prompts("u1")["declined"] == 2 and prefs.get("u1", "place", "wilkerson") is None
    assert teachable_moment(_ambiguous(), None, prefs, config=cfg, now=day + timedelta(days=3)) is None  # declined twice: stop asking
    assert teachable_moment(_ambiguous(), None, prefs, config=cfg, now=day + timedelta(days=40)) is not None  # ... for a while
    assert answer_moment(m, "what's on tv", prefs, now=day) == "ignored"


def test_cli_prefs_teach_list_put_delete(tmp_path):
    from typer.testing import CliRunner

    from selflearn.cli.main import app

    runner = CliRunner()
    s = ["--store", str(tmp_path / "p.duckdb")]
    r = runner.invoke(app, ["prefs", "teach", "--user", "u1", "I'm a Warriors fan", *s])
    assert r.exit_code == 0 and "warriors" in r.output
    r = runner.invoke(app, ["prefs", "teach", "--user", "u1", *s], input="\njazz\nskip\nitalian food\nstop\n")  # Q&A: team (skip), genre, artist (skip), food
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["prefs", "put", "--user", "u1", "--kind", "device_nickname", "--key", "the lamp", "--value", "desk light", *s])
    assert r.exit_code == 0
    r = runner.invoke(app, ["prefs", "list", "--user", "u1", "--json", *s])
    got = {(p["kind"], p["value"]) for p in json.loads(r.stdout)}
    assert got == {("sports_team", "warriors"), ("music_genre", "jazz"), ("cuisine", "italian"), ("device_nickname", "desk light")}
    r = runner.invoke(app, ["prefs", "put", "--user", "u1", "--kind", "shoe_size", "--value", "9", *s])
    assert r.exit_code == 2 and "must be one of" in r.output
    r = runner.invoke(app, ["prefs", "delete", "--user", "u1", "--kind", "cuisine", *s])
    assert r.exit_code == 0 and "forgot 1" in r.output
    r = runner.invoke(app, ["prefs", "delete", "--user", "u1", *s])
    assert "forgot 3" in r.output
    r = runner.invoke(app, ["prefs", "list", "--user", "u1", *s])
    assert "nothing remembered" in r.output
