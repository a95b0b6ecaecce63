"""The online layers' serving calibration: hand-worked values for each part, then the trained model."""

from __future__ import annotations

from collections import Counter
from types import SimpleNamespace

import numpy as np
import pytest

from selflearn.errors import InvalidInputError
from selflearn.online import OnlineRewriter
from selflearn.online.calibration import choose_threshold_by_win_loss, covers, fix_chance, intended_meanings, judge_top, win_loss_curve
from selflearn.store.store import Store


def _row(user, text, ok, meaning, **kw):
    return {"user_id": user, "text": text, "rewrite": None, "ok": ok, "meaning": meaning, "device_type": "speaker", "has_screen": False,
            "location": None, "hour": 9, "ts": 0.0, "asr_confidence": None, **kw}


def _history():
    """'whats the whether': three chains reached the weather, one the news; 'sing a dirge': one chain
    that reached the meaning it had (failed for another reason), never another."""
    from selflearn.online.train import History

    rows, target = [], {}
    for u, meant in enumerate(["weather|", "weather|", "weather|", "news|"]):
        rows += [_row(f"u{u}", "whats the whether", False, "none|"), _row(f"u{u}", meant.replace("|", " please"), True, meant)]
        target[len(rows) - 2] = len(rows) - 1
    rows += [_row("u9", "sing a dirge", False, "music|"), _row("u9", "sing a dirge", True, "music|")]
    target[len(rows) - 2] = len(rows) - 1
    return History(rows, target)


def test_what_other_chains_of_the_same_words_reached():
    intended = intended_meanings(_history())
    assert intended == {"whats the whether": Counter({"weather|": 3, "news|": 1}), "sing a dirge": Counter({"music|": 1})}
    assert fix_chance(intended, "whats the whether", "weather|") == pytest.approx(3 / 5)  # one pseudo-chain elsewhere
    assert fix_chance(intended, "whats the whether", "news|") == pytest.approx(1 / 5)
    assert fix_chance(intended, "whats the whether", "timer|") == 0.0
    assert fix_chance(intended, "what is your mother language", "weather|") == 0.0  # no chain ever fixed it
    assert fix_chance(intended, "whats the whether", None) == 0.0  # a candidate with no meaning fixes nothing


def test_a_meaning_covers_another_with_the_same_intent_and_at_least_its_words():
    assert covers("weather_query|date=this week;weather_descriptor=rain", "weather_query|date=this week")
    assert covers("cooking_recipe|food_type=thanksgiving turkey", "cooking_recipe|food_type=turkey")
    assert covers("play_radio|music_genre=romantic;radio_name=fm one", "play_radio|radio_name=fm one;radio_name=romantic")  # words, not slot names
    assert not covers("weather_query|date=this week", "weather_query|date=this week;weather_descriptor=rain")  # drops the rain
    assert not covers("alarm_set|time=eight", "alarm_set|time=seven")
    assert not covers("news_query|date=today", "weather_query|date=today")
    assert not covers("none|", "none|") and not covers(None, "weather_query|") and not covers("weather_query|", None)
    intended = {"look for a thank you for giving turkey recipe": Counter({"cooking_recipe|food_type=turkey": 2, "cooking_recipe|food_type=thank;food_type=turkey": 1})}
    assert fix_chance(intended, "look for a thank you for giving turkey recipe", "cooking_recipe|food_type=thanksgiving turkey") == pytest.approx(2 / 4)


def test_the_outcome_of_one_rewrite():
    from selflearn.online.calibration import outcome

    assert outcome("fix", covers_own=False, covers_target=True, fix=0.0, works=0.0) == (1.0, 0.0, 0.0)
    assert outcome("fix", covers_own=False, covers_target=False, fix=0.9, works=0.9) == (0.0, 0.0, 1.0)  # the chain says what was meant
    assert outcome("same", covers_own=True, covers_target=True, fix=0.0, works=0.5) == (0.0, 0.0, 0.0)
    assert outcome("worked", covers_own=True, covers_target=False, fix=0.0, works=1.0) == (0.0, 0.0, 0.0)  # harmless
    assert outcome("worked", covers_own=False, covers_target=False, fix=0.5, works=0.8) == pytest.approx((0.1, 0.8, 0.1))
    assert outcome("unfixed", covers_own=False, covers_target=False, fix=0.5, works=0.0) == (0.5, 0.0, 0.5)
    assert outcome("unfixed", covers_own=False, covers_target=False, fix=0.0, works=0.0) == (0.0, 0.0, 1.0)  # "what is your mother language"


def test_win_loss_threshold_hand_worked():
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    wins = np.array([1.0, 1.0, 0.5, 1.0, 0.0])
    losses = np.array([0.0, 0.0, 0.5, 0.0, 1.0])
    curve = win_loss_curve(scores, wins, losses, np.array([1, 1, 2, 1, 1]))
    assert [(p["threshold"], p["wins"], p["losses"]) for p in curve] == [(0.9, 1, 0), (0.8, 2, 0), (0.7, 3, 1), (0.6, 4, 1), (0.5, 4, 2)]
    t, at = choose_threshold_by_win_loss(scores, wins, losses, np.array([1, 1, 2, 1, 1]), min_ratio=4, min_rewrites=1)
    assert t == 0.6 and (at["wins"], at["losses"]) == (4, 1)
    assert choose_threshold_by_win_loss(scores, wins, losses, min_ratio=2, min_rewrites=1)[0] == 0.5  # 3.5 : 1.5 unweighted
    assert choose_threshold_by_win_loss(scores, wins, losses, min_ratio=100, min_rewrites=3)[0] == 1.0  # never: nothing qualifies
    assert choose_threshold_by_win_loss(scores, np.zeros(5), np.zeros(5), min_ratio=1, min_rewrites=1)[0] == 1.0  # no wins, no threshold
    with pytest.raises(InvalidInputError, match="min_ratio=0"):
        choose_threshold_by_win_loss(scores, wins, losses, min_ratio=0)


def test_each_kind_of_request_is_judged_as_the_ab_would():
    h = _history()
    rows = h.rows
    rows += [_row("u5", "whats the whether", False, "none|"),  # gave up: the words' other chains say weather 3 in 5
             _row("u6", "weather please", True, "weather|"),  # worked; rewritten to the same meaning: harmless
             _row("u7", "news please", True, "news|"),  # worked; rewritten to another meaning: broken
             _row("u8", "what is your mother language", False, "none|")]  # failed, never fixed by anyone
    works = {"weather please": 0.9, "news please": 1.0}  # "weather please" works 9 times in 10
    g = SimpleNamespace(row={"weather please": 0, "news please": 1}, meaning=np.array([0, 1]), meanings=["weather|", "news|"],
                        success_share=works.get)
    fixable = {0, 2, 4}  # the chains that reached another meaning
    ex = [(0, ["weather please"], None, False, ["global"], ["weather|"]),  # fixed by a retry, right candidate: a win
          (2, ["news please"], None, False, ["global"], ["news|"]),  # fixed by a retry to the weather, candidate the news: still defective
          (8, ["sing a dirge"], None, False, ["personal"], [None]),  # a retry worked with the meaning it had: rewriting cannot fix it
          (10, ["weather please", "news please"], None, True, ["global", "personal"], ["weather|", "news|"]),
          (11, ["weather please"], None, False, ["global"], ["weather|"]), (12, ["weather please"], None, False, ["global"], ["weather|"]),
          (13, ["weather please"], None, False, ["phonetic"], ["weather|"])]
    scores = [np.array([0.9]), np.array([0.8]), np.array([0.7]), np.array([0.6, 0.1]), np.array([0.5]), np.array([0.4]), np.array([0.3])]
    labels = [np.array([1]), np.array([0]), np.array([0]), np.array([0, 0]), np.array([0]), np.array([0]), np.array([0])]
    weight_of = {"fix": 2.0, "ok": 3.0, "fail": 5.0}
    j = judge_top(h, g, ex, scores, labels, fixable, weight_of)
    assert j.win.tolist() == pytest.approx([1, 0, 0, 0.6, 0, 0, 0])
    assert j.broken.tolist() == [0, 0, 0, 0, 0, 1, 0]  # only a request that worked can be broken
    # "weather please" worked but its words fail 1 time in 10: rewritten to the same meaning, still failing then
    assert j.still.tolist() == pytest.approx([0, 1, 1, 0.4, 0.1, 0, 1])
    assert j.loss(0.5).tolist() == pytest.approx([0, 0.5, 0.5, 0.2, 0.05, 1, 0.5])
    assert j.weight.tolist() == [2, 2, 5, 1, 3, 3, 5]  # the census row counts once
    assert j.source.tolist() == ["global", "global", "personal", "global", "global", "global", "phonetic"]
    assert j.right.tolist() == [True, False, False, False, True, False, False]
    assert not j.by_table.any()
    online = j.online(("global", "phonetic"))
    assert len(online.score) == 6 and "personal" not in online.source.tolist()
    g2 = SimpleNamespace(row={"sing it": 0}, meaning=np.array([0]), meanings=["music|"], success_share={}.get)
    same = judge_top(h, g2, [(8, ["sing it"], None, False, ["global"], ["music|"])], [np.array([0.9])], [np.array([0])], fixable, weight_of)
    assert (same.win.tolist(), same.loss(1.0).tolist()) == ([0.0], [0.0])  # failed for another reason; the rewrite means what then worked
    # a request only its user says is judged by the meaning it had when it worked for them (the replay's)
    own = judge_top(h, g, [(2, ["wether pls"], None, False, ["personal"], ["weather|"])], [np.array([0.9])], [np.array([1])], fixable, weight_of)
    assert (own.win.tolist(), own.fixed.tolist()) == ([1.0], [True])
    table = SimpleNamespace(rewrite=lambda text, context=None: "weather please" if text == "news please" else None)
    assert judge_top(h, g, ex, scores, labels, fixable, weight_of, table=table).by_table.tolist() == [False] * 5 + [True, False]


def test_win_loss_calibration_gives_each_source_its_threshold(online_model, tmp_path):
    from selflearn.online import OnlineConfig, train_online

    cfg = OnlineConfig(max_pairs=256, examples=600, batch_size=32, calibrate="win-loss", harm_ratio=3.0, still_failing_loss=0.5)
    with Store(online_model["dir"] / "s.duckdb") as st:
        stats = train_online(st, tmp_path / "m", table=online_model["table"], config=cfg, encoder_from=online_model["model"])
    assert stats["calibrate"] == "win-loss" and stats["threshold"] == stats["win_loss_threshold"]["threshold"]
    assert stats["personal_threshold"] == stats["personal_win_loss_threshold"]["threshold"]
    at = stats["win_loss_threshold"]
    assert at["rewrites"] == 0 or at["wins"] >= 3.0 * at["losses"]
    with pytest.raises(InvalidInputError, match="still_failing_loss=2"):
        OnlineConfig(still_failing_loss=2).check()
    rw = OnlineRewriter.load(tmp_path / "m")
    assert (rw.threshold, rw.personal_threshold) == (stats["threshold"], stats["personal_threshold"])
    assert rw.threshold_of("global") == rw.threshold and rw.threshold_of("personal") == rw.personal_threshold
    one = OnlineRewriter.load(tmp_path / "m", threshold=0.42)  # one threshold asked for: both layers
    assert one.threshold_of("personal") == one.threshold_of("global") == 0.42
    two = OnlineRewriter.load(tmp_path / "m", threshold=0.42, personal_threshold=0.9)
    assert (two.threshold_of("global"), two.threshold_of("phonetic"), two.threshold_of("personal")) == (0.42, 0.42, 0.9)


def test_a_personal_candidate_is_served_by_its_own_threshold(online_model):
    """Each candidate is served by its own layer's threshold: the best of those that clear theirs."""
    rw = OnlineRewriter.load(online_model["model"], fix_min=0, phrase_min=0)
    mine = "put on my special sunday morning playlist"
    for sid, ts, text in (("n1", "08:00:00", mine), ("n2", "22:00:00", "good night")):
        rw.observe({"user_id": "newcomer", "session_id": sid, "timestamp": f"2026-04-01T{ts}Z", "utterance": {"text": text},
                    "response": {"status": "success"}, "feedback": {"barge_in": False}, "nlu": {"intent": "music_play", "slots": []}})
    q, args = "put on my sunday playlist", dict(user_id="newcomer", device={"type": "speaker"}, context={"hour": 8})
    texts, sources, _ = rw.candidates(q, user_id=rw.ids.of("newcomer"), device=args["device"], context=args["context"])
    assert sources[texts.index(mine)] == "personal"
    # a ranker that likes the user's own request best (0.5) and every other candidate less (0.4)
    rw.ranker = SimpleNamespace(score=lambda x: np.array([0.5 if t == mine else 0.4 for t in texts]))
    rw.threshold, rw.personal_threshold = 0.9, 0.45
    assert (rw.decide(q, **args).rewrite, rw.decide(q, **args).source) == (mine, "personal")
    rw.threshold, rw.personal_threshold = 0.3, 0.6  # the best is personal and under its threshold: the best global one is served
    d = rw.decide(q, **args)
    assert d.source == "global" and d.rewrite != mine and d.score == pytest.approx(0.4)
    rw.threshold = 0.45  # nothing clears its threshold: nothing is served
    assert rw.decide(q, **args).rewrite is None
    rw.personal_threshold = None  # no threshold of its own: the global layer's
    assert rw.decide(q, **args).rewrite == mine


def test_served_outcome_hand_worked():
    from selflearn.online.served import served_outcome

    assert served_outcome(True, 0.25) == (0.75, 0.0, 0.0)  # worked, where the words fail 3 times in 4: mostly a win
    assert served_outcome(False, 0.9) == (0.0, 0.9, pytest.approx(0.1))  # failed where the words usually work: mostly broken
    assert served_outcome(True, 1.0) == (0.0, 0.0, 0.0)  # harmless


def test_the_global_threshold_is_calibrated_on_served_traffic(online_model, world_dir, world, tmp_path):
    """A pilot served at threshold 0 by the table and the global layer; its logs calibrate the global
    layer's threshold, written into the model directory (the personal layer keeps its own)."""
    import json
    import shutil

    from selflearn.online.served import calibrate_on_served
    from selflearn.store.importer import import_files
    from selflearn.world.experiments import simulate_to
    from selflearn.world.simulate import SimConfig

    model = tmp_path / "m"
    shutil.copytree(online_model["model"], model)
    before = json.loads((model / "config.json").read_text())["learned"]["threshold"]
    pilot = OnlineRewriter.load(model, layers=("table", "global"), threshold=0.0)
    simulate_to(tmp_path / "pilot", world_dir, world, SimConfig(users=60, days=2, seed=12, first_day=7), rewriter=pilot)
    assert pilot.counts["global"] > 20
    with Store(tmp_path / "p.duckdb") as st:
        import_files(st, [tmp_path / "pilot" / "logs.jsonl"])
        stats = calibrate_on_served(model, st, min_ratio=1.0, min_rewrites=5, write=True)
        assert stats["served_rewrites"] > 20 and stats["before"] == before
        assert stats["left_out"].get("the table's", 0) == pilot.counts["table"]  # the table's rewrites are the table's
        at = stats["at_threshold"]
        assert stats["threshold"] == 1.0 or (at["rewrites"] >= 5 and at["wins"] >= at["losses"])
        saved = json.loads((model / "config.json").read_text())
        assert saved["learned"] == {"threshold": stats["threshold"], "personal_threshold": before}
        assert saved["served_calibration"]["served_rewrites"] == stats["served_rewrites"]
        assert saved["params"]["user_free_global"] and OnlineRewriter.load(model).user_free_global
        assert not OnlineRewriter.load(online_model["model"]).user_free_global  # a model no pilot calibrated: one pool
        assert OnlineRewriter.load(model).threshold_of("global") == stats["threshold"]
        with pytest.raises(InvalidInputError, match="still_failing_loss=-1"):
            calibrate_on_served(model, st, still_failing_loss=-1)
    with Store(online_model["dir"] / "s.duckdb") as st:  # the training logs: nothing the global layer rewrote
        with pytest.raises(InvalidInputError, match="none the global layer's"):
            calibrate_on_served(model, st)


def test_calibrate_command_reports_and_refuses_bad_input(online_model, tmp_path):
    from typer.testing import CliRunner

    from selflearn.cli.main import app

    store = str(online_model["dir"] / "s.duckdb")
    r = CliRunner().invoke(app, ["online", "calibrate", "--store", store, "--model", str(online_model["model"]), "--ratio", "0"])
    assert r.exit_code == 2 and "min_ratio=0" in r.output
    r = CliRunner().invoke(app, ["online", "calibrate", "--store", store, "--model", str(online_model["model"]), "--no-write"])
    assert r.exit_code == 2 and "none the global layer's" in r.output and "serve" in r.output


def test_a_pilot_service_lowers_only_the_global_threshold(online_model, api_keys):
    from selflearn.service import create_app

    rw = OnlineRewriter.load(online_model["model"])
    rw.threshold, rw.personal_threshold = 0.7, None
    create_app(online_model["model"], keys=api_keys["ring"], rewriter=rw, global_threshold=0.2)
    assert (rw.threshold_of("global"), rw.threshold_of("personal")) == (0.2, 0.7)
    with pytest.raises(InvalidInputError, match="global_threshold=1.5"):
        create_app(online_model["model"], keys=api_keys["ring"], rewriter=rw, global_threshold=1.5)



def test_habits_after_the_global_layer_yield_to_a_global_candidate_that_clears(online_model):
    from dataclasses import replace

    from selflearn.online.online_rewriter import Decision

    said, meant = "what is the weather in springfield", "what is the weather in springfield ohio"
    rw = OnlineRewriter.load(online_model["model"], fix_min=1, phrase_min=1)
    rw.observe({"user_id": "habit", "session_id": "h1", "timestamp": "2026-04-01T08:00:00Z", "utterance": {"text": said},
                "response": {"status": "failure"}, "feedback": {"barge_in": False}, "nlu": {"intent": "weather_query", "slots": []}})
    rw.observe({"user_id": "habit", "session_id": "h1", "timestamp": "2026-04-01T08:00:09Z", "utterance": {"text": meant},
                "response": {"status": "success"}, "feedback": {"barge_in": False}, "nlu": {"intent": "weather_query", "slots": []}})
    rw.observe({"user_id": "habit", "session_id": "h2", "timestamp": "2026-04-01T22:00:00Z", "utterance": {"text": "good night"},
                "response": {"status": "success"}, "feedback": {"barge_in": False}, "nlu": {"intent": "music_play", "slots": []}})
    rw.habits = replace(rw.habits, skip_working=False, fix_similarity=0.0)
    assert rw.decide(said, user_id="habit") == Decision(meant, "personal", None)  # the habit first
    texts, sources, _ = rw.candidates(said, user_id=rw.ids.of("habit"), device={}, context={})
    top = next(t for t, s in zip(texts, sources) if s == "global" and t != meant)
    rw.ranker = SimpleNamespace(score=lambda x: np.array([0.9 if t == top else 0.1 for t in texts]))
    rw.threshold, rw.personal_threshold = 0.5, 1.0
    assert rw.decide(said, user_id="habit").source == "personal"  # habits first: the rule answers before any ranking
    rw.habits = replace(rw.habits, after_global=True)
    assert rw.decide(said, user_id="habit") == Decision(top, "global", pytest.approx(0.9))  # a global candidate clears: it is served
    rw.threshold = 0.95
    assert rw.decide(said, user_id="habit") == Decision(meant, "personal", None)  # none clears: the habit
    # the request's recogniser confidence reaches the habits' gate: no habit
    rw.habits = replace(rw.habits, after_global=False, max_confidence=0.85)
    assert rw.decide(said, user_id="habit", context={"asr_confidence": 0.5}) == Decision(meant, "personal", None)
    assert rw.decide(said, user_id="habit", context={"asr_confidence": 0.9}).rewrite is None


def test_a_user_free_global_layer_decides_as_for_a_user_without_history(online_model):
    """The global layer's threshold is calibrated on a pilot of table + global: scores without any
    user's history. With ``user_free_global`` it decides on those scores for every user."""
    from selflearn.online.features import FEATURES

    q = "what is the weather in springfield"
    rw = OnlineRewriter.load(online_model["model"], fix_min=0, phrase_min=0)
    rw.observe({"user_id": "regular", "session_id": "r1", "timestamp": "2026-04-01T08:00:00Z", "utterance": {"text": q},
                "response": {"status": "success"}, "feedback": {"barge_in": False}, "nlu": {"intent": "weather_query", "slots": []}})
    rw.observe({"user_id": "regular", "session_id": "r2", "timestamp": "2026-04-01T22:00:00Z", "utterance": {"text": "good night"},
                "response": {"status": "success"}, "feedback": {"barge_in": False}, "nlu": {"intent": "music_play", "slots": []}})
    at = FEATURES.index("u_q_log_attempts")
    rw.ranker = SimpleNamespace(score=lambda x: np.where(x[:, at] == 0, 0.9, 0.1))  # likes a request only for a stranger
    rw.threshold, rw.personal_threshold = 0.5, 1.0
    assert rw.decide(q, user_id="regular").rewrite is None  # ranked with the user's history: 0.1
    assert rw.decide(q, user_id="stranger").source == "global"
    rw.user_free_global = True
    d = rw.decide(q, user_id="regular")
    assert d.source == "global" and d.score == pytest.approx(0.9)
    # a ranker that likes a request only for a user with history: the global layer, user-free, serves
    # nothing, and the user's own ranked candidates (their threshold below 1) never bring a global one back
    rw.ranker = SimpleNamespace(score=lambda x: np.where(x[:, at] == 0, 0.1, 0.9))
    rw.personal_threshold = 0.6
    assert rw.decide(q, user_id="regular").source != "global"
    assert rw.decide(q, user_id="stranger").rewrite is None
