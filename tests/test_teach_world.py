"""Issue 8 in the world: ambiguous requests, truthful users, and the assistant with teaching on."""

import random

import pytest

from selflearn.errors import InvalidInputError
from selflearn.store.store import Store
from selflearn.teach import Moment, Preferences
from selflearn.world.simulate import SimConfig, Simulator, load_nlu_for
from selflearn.world.teach_ab import teaching_ab
from selflearn.world.teaching import WorldTeaching, guided_answers, user_answer, vague_text


def test_a_vague_request_leaves_out_what_the_user_always_means():
    assert vague_text("play some jazz music", "jazz") == "play some music"
    assert vague_text("play some jaz music", "jazz") == "play some music"  # misheard, still found
    assert vague_text("play jazz", "jazz") is None  # nothing would be left to ask
    assert vague_text("what time is it", "jazz") is None


def test_users_answer_truthfully(world):
    user = Simulator(world, SimConfig(users=3, days=1)).users[0]
    place = next(e for e in world.entities if len(e["senses"]) > 1)
    mine, other = place["senses"][0], place["senses"][1]
    from selflearn.world.teaching import STATE_WORD

    names = {place["id"]: place["name"]}
    ask = lambda code: Moment(user.user_id, "place", f"{place['name']} {STATE_WORD[code]}", "barge_in", "?", place["name"])  # noqa: E731
    intended = [f"{place['id']}@{mine}"]
    r = random.Random(0)
    assert user_answer(user, ask(mine), intended, names, r, 0.0) == "yes"
    assert user_answer(user, ask(other), intended, names, r, 0.0) == f"no, i meant {place['name']} {STATE_WORD[mine]}"
    assert user_answer(user, ask(mine), [], names, r, 0.0) == "no"  # not the place they meant
    assert user_answer(user, ask(mine), intended, names, r, 1.0) == "no thanks"  # never wants to be asked
    genre = Moment(user.user_id, "music_genre", "", "barge_in", "?")
    assert user_answer(user, genre, [], names, r, 0.0) == f"i like {user.preferences['music_genre']}"
    qa = guided_answers(user)
    assert qa["sports_team"] == user.preferences["sports_team"] and qa["news_source"] == "skip"


def test_entity_resolution_uses_what_the_user_taught(world, store):
    place = next(e for e in world.entities if len(e["senses"]) > 1)
    genre = next(e for e in world.entities if e["type"] == "music_genre" and not e["id"].startswith("decoy"))
    t = WorldTeaching(Preferences(store), world.entities)
    from selflearn.world.teaching import STATE_WORD

    code = place["senses"][1]
    it = ["weather_query", 0.9, [], [["place_name", place["name"]]], "ambiguous",
          [["place_name", place["name"], "ambiguous", f"{place['id']}@{place['senses'][0]}", place["name"], 1.0, 3]]]
    assert t.resolve("u1", it) is it  # nothing taught: as it was
    t.preferences.put("u1", "place", f"{place['name']} {STATE_WORD[code]}", key=place["name"])
    t._cache.clear()
    got = t.resolve("u1", it)
    assert got[5][0][2:4] == ["resolved", f"{place['id']}@{code}"] and got[4] == "resolved"
    t.preferences.put("u1", "music_genre", genre["name"])
    t._cache.clear()
    music = t.resolve("u1", ["play_music", 0.9, [], [], "not_applicable", []])
    assert [genre["name"]] == [v for _, v in music[3]] and music[5][0][3] == genre["id"]
    named = ["play_music", 0.9, [], [["artist_name", "adele"]], "resolved", []]
    assert t.resolve("u1", named)[3] == [["artist_name", "adele"]]  # a request that names what it wants keeps it


def test_teaching_ab_on_identical_traffic(world, world_dir, tmp_path):
    cfg = SimConfig(users=40, days=6, seed=3, vague_share=1.0)
    r = teaching_ab(world, cfg, tmp_path / "prefs.duckdb", nlu_loader=load_nlu_for(world_dir), measure_from_day=2, n_boot=200)
    assert r["all_first_attempts"]["goals"] > 0
    assert r["turns"]["control"] > 0 and r["turns"]["teaching"] > 0
    assert r["guided"]["users"] >= 1 and r["guided"]["turns"] == 7 * r["guided"]["users"]  # start + six questions each
    assert r["prompts"]["total"] == sum(r["prompts"][k] for k in ("accepted", "declined", "ignored"))
    assert r["learned"]["learned"] <= r["learned"]["needs"]
    with Store(tmp_path / "prefs.duckdb") as st:
        assert st.reader().execute("SELECT count(*) FROM preferences").fetchall()[0][0] == sum(x["n"] for x in r["stored"]) > 0
    with pytest.raises(InvalidInputError, match="must not exist yet"):
        teaching_ab(world, cfg, tmp_path / "prefs.duckdb")
    with pytest.raises(InvalidInputError, match="must be a simulated day"):
        teaching_ab(world, cfg, tmp_path / "other.duckdb", measure_from_day=9)
    with pytest.raises(InvalidInputError, match="vague_share"):
        SimConfig(vague_share=2.0).check()


def test_vague_requests_and_teaching_leave_the_rest_of_the_traffic_unchanged(world, world_dir, store):
    """The same users pursue the same goals in every arm: a vague first attempt or a taught
    preference changes what happens to a goal, never which goals come."""
    def goals(**kw):
        seen = []
        Simulator(world, SimConfig(users=25, days=3, seed=5, **kw.pop("cfg", {})), nlu_loader=load_nlu_for(world_dir), **kw).run(
            kw.get("teaching"), lambda turn, truth: seen.append((truth["goal_id"], truth["true_intent"])) if truth["attempt"] == 0 else None)
        return seen

    plain = goals()
    assert goals(cfg={"vague_share": 1.0}) == plain
    t = WorldTeaching(Preferences(store), world.entities)
    assert goals(cfg={"vague_share": 1.0}, teaching=t) == plain


def test_cli_teach_ab(world_dir, tmp_path):
    from typer.testing import CliRunner

    from selflearn.cli.main import app

    runner = CliRunner()
    args = ["world", "teach-ab", "--world", str(world_dir), "--users", "30", "--days", "4", "--measure-from", "1", "--vague-share", "1"]
    r = runner.invoke(app, [*args, "--store", str(tmp_path / "p.duckdb")])
    assert r.exit_code == 0, r.output
    assert "ambiguous" in r.output.lower() and "prompts" in r.output and "per 1,000 turns" in r.output
    r = runner.invoke(app, [*args, "--store", str(tmp_path / "p.duckdb")])
    assert r.exit_code != 0 and "must not exist yet" in r.output  # the treatment starts knowing nothing
    r = runner.invoke(app, [*args, "--store", str(tmp_path / "q.duckdb"), "--prompt-window-days", "0"])
    assert r.exit_code != 0 and "prompt_window_days" in r.output
