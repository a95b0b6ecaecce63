"""Online rewriting: pure parts on hand-made values, then a model trained on the small world."""

from __future__ import annotations

import json
import math
import zlib

import numpy as np
import pytest

from selflearn.errors import SelflearnError, InvalidInputError, NotFittedError
from selflearn.online import BiEncoder, OnlineConfig, OnlineRewriter, OnnxEncoder, Ranker, agreement, choose_threshold, precision_coverage
from selflearn.online.encoder import _batches
from selflearn.online.habits import HabitRules
from selflearn.online.features import FEATURES, phonetic_key, smoothed_rate
from selflearn.online.memory import PersonalMemory, meaning_key, text_similarity, turn_success
from selflearn.online.online_rewriter import MODEL_FORMAT, Decision
from selflearn.store.store import Store


# -- pure parts ------------------------------------------------------------------
def test_phonetic_key_brings_sound_alikes_together():
    assert phonetic_key("wilkerson") == phonetic_key("wilkersen")
    assert phonetic_key("play adele") != phonetic_key("play abba")


def test_the_recognisers_confidence_is_a_request_feature_when_known():
    from selflearn.online.features import query_features

    at = FEATURES.index("q_asr_confidence")
    assert query_features(3, 1, 0, 0, 0.42)[at] == 0.42
    assert query_features(3, 1, 0, 0)[at] == query_features(3, 1, 0, 0, 1.7)[at] == query_features(3, 1, 0, 0, "high")[at] == 0.0
    assert len(query_features(0, 0, 0, 0)) == FEATURES.index("retrieval_cosine")


def test_the_global_layer_knows_which_failing_requests_a_retry_fixes():
    from selflearn.online.features import query_features
    from selflearn.online.train import History, build_global

    def row(user, text, ok, meaning):
        return {"user_id": user, "text": text, "rewrite": None, "ok": ok, "meaning": meaning, "device_type": "speaker", "has_screen": False,
                "location": None, "hour": 9}

    rows, target = [], {}
    for u in range(5):  # five users: "whats the whether" fails and a retry fixes it; "sing a dirge" fails, nobody fixes it
        rows += [row(f"u{u}", "whats the whether", False, "none|"), row(f"u{u}", "what's the weather", True, "weather|")]
        target[len(rows) - 2] = len(rows) - 1
        rows.append(row(f"u{u}", "sing a dirge", False, "none|"))
    g = build_global(History(rows, target), min_users=5)
    assert g.fixes[g.row["whats the whether"]] == 5 and g.fixes[g.row["sing a dirge"]] == 0
    assert (g.success_share("whats the whether"), g.success_share("what's the weather"), g.success_share("never said")) == (0.0, 1.0, None)
    at = FEATURES.index("q_fix_rate")
    assert query_features(5, 0, 0, 0, q_fixes=5)[at] > 0.8 > 0.2 > query_features(5, 0, 0, 0, q_fixes=0)[at]
    assert query_features(0, 0, 0, 0)[at] == 0.5  # no evidence


def test_smoothed_rate_and_meaning_key():
    assert smoothed_rate(0, 0) == 0.5 and smoothed_rate(8, 8) == 0.9
    a = meaning_key("weather_query", '[{"name": "place_name", "value": "wilkerson"}, {"name": "date", "value": "today"}]')
    b = meaning_key("weather_query", [{"name": "date", "value": "today"}, {"name": "place_name", "value": "wilkerson"}])
    assert a == b == "weather_query|date=today;place_name=wilkerson"
    assert meaning_key(None, "not json") == "none|"


def test_text_similarity_matches_the_signals_rule():
    assert text_similarity("play jazz", "play jazz") == 1.0
    assert text_similarity("turn on lamp", "turn on the lamp") >= 0.75
    assert text_similarity("set an alarm", "what's the weather") < 0.35


def test_turn_success():
    assert turn_success("success", False, None)
    assert not turn_success("success", True, None)
    assert not turn_success("success", False, "negative")
    assert not turn_success("failure", False, "positive")


def test_precision_coverage_and_threshold_hand_worked():
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    right = np.array([True, True, False, True, False])
    curve = precision_coverage(scores, right, fixable=4)
    assert [(c["rewrites"], round(c["precision"], 3), c["coverage"]) for c in curve] == [
        (1, 1.0, 0.25), (2, 1.0, 0.5), (3, 0.667, 0.5), (4, 0.75, 0.75), (5, 0.6, 0.75)]
    t, at = choose_threshold(scores, right, 4, min_precision=0.75, min_rewrites=1)
    assert t == 0.6 and at["coverage"] == 0.75  # the most coverage that keeps 75%
    t, at = choose_threshold(scores, right, 4, min_precision=1.0, min_rewrites=10)
    assert t == 1.0 and at["rewrites"] == 0  # never rewrite when no threshold qualifies
    with pytest.raises(InvalidInputError, match="min_precision"):
        choose_threshold(scores, right, 4, min_precision=0)


def test_precision_counts_harmless_rewrites_but_coverage_only_fixes():
    scores = np.array([0.9, 0.8, 0.7])
    right = np.array([True, True, False])  # the second rewrites a working request to the same meaning
    fixed = np.array([True, False, False])
    curve = precision_coverage(scores, right, fixable=2, weights=np.array([1.0, 3.0, 1.0]), fixed=fixed)
    assert [(round(c["precision"], 3), c["coverage"]) for c in curve] == [(1.0, 0.5), (1.0, 0.5), (0.8, 0.5)]


def test_batches_never_repeat_a_positive():
    pairs = [(f"q{i}", f"p{i % 3}") for i in range(12)]
    batches = list(_batches(pairs, 4))
    assert all(len({p for _, p in b}) == len(b) for b in batches)
    assert sum(len(b) for b in batches) == 12


# -- the ranker ---------------------------------------------------------------------
def _toy(n=3000, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((n, len(FEATURES))).astype(np.float32)
    y = (x[:, FEATURES.index("retrieval_cosine")] + 0.5 * (1 - x[:, FEATURES.index("q_success")]) > 0.9).astype(int)
    return x, y


def test_ranker_learns_saves_and_is_deterministic(tmp_path):
    x, y = _toy()
    a = Ranker(random_state=3).fit(x, y)
    b = Ranker(random_state=3).fit(x, y)
    assert np.array_equal(a.score(x), b.score(x))  # same seed, same model
    assert ((a.score(x) > 0.5) == y).mean() > 0.9
    a.threshold_ = 0.7
    a.save(tmp_path / "r")
    c = Ranker.load(tmp_path / "r")
    assert np.allclose(a.score(x), c.score(x), atol=1e-6) and c.threshold_ == 0.7


def test_an_ignored_feature_is_never_seen(tmp_path):
    x, y = _toy()
    r = Ranker(random_state=3, ignore=("retrieval_cosine",)).fit(x, y)
    moved = x.copy()
    moved[:, FEATURES.index("retrieval_cosine")] = 1 - moved[:, FEATURES.index("retrieval_cosine")]
    assert np.array_equal(r.score(x), r.score(moved))  # serving holds it at 0 too
    assert ((r.score(x) > 0.5) == y).mean() < ((Ranker(random_state=3).fit(x, y).score(x) > 0.5) == y).mean()
    r.save(tmp_path / "r")
    assert np.array_equal(Ranker.load(tmp_path / "r").score(moved), r.score(x))
    with pytest.raises(InvalidInputError, match="ctx_weather"):
        Ranker(ignore=("ctx_weather",)).fit(x, y)


def test_ranker_rejects_bad_input(tmp_path):
    with pytest.raises(NotFittedError):
        Ranker().score(np.zeros((1, len(FEATURES))))
    with pytest.raises(InvalidInputError, match="features"):
        Ranker().fit(np.zeros((4, 3)), np.array([0, 1, 0, 1]))
    with pytest.raises(InvalidInputError, match="positives and negatives"):
        Ranker().fit(np.zeros((4, len(FEATURES))), np.zeros(4))
    with pytest.raises(SelflearnError, match="ranker"):
        Ranker.load(tmp_path)


# -- the personal layer -----------------------------------------------------------------
def _turn(user, sid, ts, text, status="success", rewrite=None, barge=False, intent="music_play"):
    utt = {"text": text}
    if rewrite:
        utt["rewrite"] = rewrite
    return {"user_id": user, "session_id": sid, "timestamp": f"2026-03-02T08:{ts // 60:02d}:{ts % 60:02d}Z", "utterance": utt,
            "response": {"status": status}, "feedback": {"barge_in": barge}, "nlu": {"intent": intent, "slots": []}}


def test_personal_layer_settles_turns_by_what_follows():
    m = PersonalMemory()
    m.observe(_turn("u", "s1", 0, "play wilkerson weather", status="success", intent="music_play"))  # misheard: 'worked' but...
    m.observe(_turn("u", "s1", 10, "weather in wilkerson montana", intent="weather_query"))  # ...a quick similar retry: it failed
    m.observe(_turn("u", "s2", 600, "set an alarm", intent="alarm_set"))  # a later, different request: the retry worked
    m.flush()
    h = m.history("u")
    assert h["play wilkerson weather"][:2] == [1, 0]
    assert h["weather in wilkerson montana"][:2] == [1, 1] and h["weather in wilkerson montana"][3] == "weather_query|"
    assert h["set an alarm"][:2] == [1, 1]
    assert m.observed == 3
    # the user's own fix: the request that started the chain -> what worked
    assert m.fixes_of("u", "play wilkerson weather") == {"weather in wilkerson montana": 1}
    assert m.fixes_of("u", "set an alarm") == {} and m.fixes_of("someone else", "play wilkerson weather") == {}


def test_personal_fix_is_credited_to_the_start_of_the_chain_only_when_the_retry_works():
    m = PersonalMemory()
    m.observe(_turn("u", "s1", 0, "weather in wilkerson"))
    m.observe(_turn("u", "s1", 8, "weather in wilkerson please"))
    m.observe(_turn("u", "s1", 16, "weather in wilkerson ohio"))  # worked: nothing followed soon
    m.observe(_turn("u", "s2", 900, "play my song"))
    m.observe(_turn("u", "s2", 905, "play my songs", status="error"))  # a retry that failed teaches nothing
    m.flush()
    assert m.fixes_of("u", "weather in wilkerson") == {"weather in wilkerson ohio": 1}
    assert m.fixes_of("u", "weather in wilkerson please") == {}
    assert m.fixes_of("u", "play my song") == {}


def test_personal_layer_credits_the_rewrite_and_remembers_failed_serves():
    m = PersonalMemory()
    m.observe(_turn("u", "s1", 0, "play jaz", rewrite="play jazz"))
    m.observe(_turn("u", "s2", 900, "play jaz", rewrite="play jazz", barge=True))
    m.flush()
    h = m.history("u")
    assert "play jaz" not in h  # it never ran as it was
    assert h["play jazz"][:2] == [2, 1]
    assert m.served_stats("u", "play jaz", "play jazz") == (2, 1)


def test_personal_layer_ignores_partial_records_and_forgets():
    m = PersonalMemory()
    m.observe({"user_id": "u"})
    m.observe({"utterance": None})
    assert m.observed == 0
    m.observe(_turn("u", "s", 0, "hello"))
    m.observe(_turn("u", "s", 5, "hello there"))
    m.flush()
    assert m.fixes_of("u", "hello")
    assert m.forget("u") and not m.history("u") and not m.fixes_of("u", "hello") and not m.forget("u")


def test_personal_layer_round_trip(tmp_path):
    class Enc:
        def encode(self, texts):
            return np.ones((len(texts), 4), np.float32) / 2

    m = PersonalMemory(Enc())
    m.observe(_turn("u", "s1", 0, "play jaz", rewrite="play jazz"))
    m.observe(_turn("u", "s2", 900, "good night"))
    m.observe(_turn("u", "s2", 910, "good night now"))
    m.flush()
    m.save(tmp_path / "p")
    n = PersonalMemory.load(tmp_path / "p")
    assert n.history("u") == m.history("u") and n.served == m.served and n.fixes == m.fixes and n.fixes
    assert set(n.vectors) == {"play jazz", "good night now"}
    with pytest.raises(InvalidInputError, match="personal layer"):
        PersonalMemory.load(tmp_path / "nothing")


# -- the encoder ---------------------------------------------------------------------------
def test_biencoder_training_lowers_the_loss_and_is_seeded():
    pairs = [(f"play song number {i} plz", f"play song number {i}") for i in range(24)]
    a = BiEncoder(epochs=2, batch_size=8, random_state=1, lr=1e-4).fit(pairs)
    b = BiEncoder(epochs=2, batch_size=8, random_state=1, lr=1e-4).fit(pairs)
    assert a.training_["loss_last"] < a.training_["loss_first"]
    assert np.array_equal(a.encode(["play song number 3"]), b.encode(["play song number 3"]))
    with pytest.raises(InvalidInputError, match="pairs"):
        BiEncoder().fit([])


# -- a model trained on the small world -------------------------------------------------------
def _logged(online_model, n=300):
    lines = online_model["logs"].read_text().splitlines()
    return [json.loads(x) for x in lines[:: max(1, len(lines) // n)]]


def test_training_writes_a_complete_model_directory(online_model):
    d, s = online_model["model"], online_model["stats"]
    config = json.loads((d / "config.json").read_text())
    assert config["component"] == "online-rewriter" and config["format_version"] == MODEL_FORMAT == 3 and config["parts"]["table"] == "rewrites.parquet"
    for part in ("encoder/config.json", "encoder/model.safetensors", "encoder.onnx", "global/index.faiss", "global/entries.parquet",
                 "personal/history.parquet", "ranker/model.safetensors", "ranker/config.json", "rewrites.parquet"):
        assert (d / part).is_file(), part
    assert s["biencoder"]["loss_last"] < s["biencoder"]["loss_first"]
    assert s["global_candidates"] > 100 and s["personal_users"] > 100 and s["ranking_rows"] > s["ranking_examples"]
    assert 0 < s["threshold"] <= 1
    # the personal layer's retry window, learned from the logs' gaps (the signals' 45 s when it cannot be)
    assert 0 < s["retry_window_s"] <= 45 and json.loads((d / "personal" / "config.json").read_text())["window_s"] == s["retry_window_s"]


def test_reloaded_model_decides_the_same(online_model):
    a = OnlineRewriter.load(online_model["model"])
    b = OnlineRewriter.load(online_model["model"])
    for t in _logged(online_model):
        args = dict(user_id=t["user_id"], device=t["device"], context={"hour": 9})
        assert a.decide(t["utterance"]["text"], **args) == b.decide(t["utterance"]["text"], **args)


def test_onnx_encoder_agrees_with_torch(online_model):
    texts = [t["utterance"]["text"] for t in _logged(online_model, 200)]
    torch_enc = BiEncoder.load(online_model["model"] / "encoder")
    onnx_enc = OnnxEncoder(online_model["model"] / "encoder.onnx", online_model["model"] / "encoder" / "tokenizer")
    agree = agreement(torch_enc, onnx_enc, texts)
    assert agree["mean_cosine"] > 0.98 and agree["min_cosine"] > 0.9, agree


def test_table_first_then_layers_and_blocking(online_model):
    import pyarrow.parquet as pq

    row = pq.read_table(online_model["table"]).to_pylist()[0]
    rw = OnlineRewriter.load(online_model["model"])
    d = rw.decide(row["utterance"], user_id="nobody")
    assert (d.rewrite, d.source) == (row["rewrite"], "table")
    rw.blocked.add((row["utterance"], row["rewrite"]))
    assert rw.decide(row["utterance"], user_id="nobody").rewrite != row["rewrite"]
    off = OnlineRewriter.load(online_model["model"], layers=())
    assert all(off.decide(t["utterance"]["text"], user_id=t["user_id"]).rewrite is None for t in _logged(online_model, 50))
    with pytest.raises(InvalidInputError, match="layers"):
        OnlineRewriter.load(online_model["model"], layers=("table", "magic"))


def test_rewriter_passes_through_what_it_cannot_judge(online_model):
    rw = OnlineRewriter.load(online_model["model"])
    assert rw.decide("", user_id="u").rewrite is None
    assert rw.decide("x " * 600, user_id="u").rewrite is None
    d = rw.decide("zzqx vlorp", user_id="never-seen", device={}, context={})
    assert d.rewrite is None or isinstance(d.rewrite, str)


def test_personal_layer_updates_without_rebuild(online_model):
    rw = OnlineRewriter.load(online_model["model"])
    before = len(rw.global_.texts)
    text = "put on my special sunday morning playlist"
    rw.observe({**_turn("newcomer", "n1", 0, text), "timestamp": "2026-04-01T08:00:00Z"})
    rw.observe({**_turn("newcomer", "n2", 0, "good night"), "timestamp": "2026-04-01T22:00:00Z"})
    assert rw.history("newcomer")[text][:2] == [1, 1]
    assert text in rw.personal.vectors  # encoded once, on arrival
    texts, sources, x = rw.candidates("put on my sunday playlist", user_id=rw.ids.of("newcomer"), device={"type": "speaker"}, context={"hour": 8})
    assert text in texts and sources[texts.index(text)] == "personal"
    assert x[texts.index(text), FEATURES.index("u_c_log_successes")] == pytest.approx(math.log(2))
    assert len(rw.global_.texts) == before  # the global layer was not rebuilt


def test_a_users_own_fix_becomes_a_personal_candidate(online_model):
    rw = OnlineRewriter.load(online_model["model"])
    said, meant = "what is the weather in springfield", "what is the weather in springfield ohio"
    rw.observe({**_turn("wilkerson-fan", "w1", 0, said, intent="weather_query"), "timestamp": "2026-04-01T08:00:00Z"})
    rw.observe({**_turn("wilkerson-fan", "w1", 0, meant, intent="weather_query"), "timestamp": "2026-04-01T08:00:09Z"})
    rw.observe({**_turn("wilkerson-fan", "w2", 0, "good night"), "timestamp": "2026-04-01T22:00:00Z"})
    texts, sources, x = rw.candidates(said, user_id=rw.ids.of("wilkerson-fan"), device={"type": "speaker"}, context={"hour": 8})
    k = texts.index(meant)
    assert sources[k] == "personal" and x[k, FEATURES.index("u_pair_log_fixed")] == pytest.approx(math.log(2))
    other, _, y = rw.candidates(said, user_id=rw.ids.of("someone-else"), device={"type": "speaker"}, context={"hour": 8})
    assert meant not in other or y[other.index(meant), FEATURES.index("u_pair_log_fixed")] == 0
    # the ranker learns from it, and it is judged, by the meaning it had when it worked for this user
    if meant not in rw.global_.row:
        assert rw.meanings([meant], rw.ids.of("wilkerson-fan")) == ["weather_query|"]
        assert rw.meanings([meant], rw.ids.of("someone-else")) == [None]


def test_a_candidate_only_its_user_says_is_labelled_by_its_meaning_for_them():
    from selflearn.online.replay import ranking_labels
    from selflearn.online.train import History

    rows = [{"meaning": "X"}, {"meaning": "W"}, {"meaning": "W"}]
    h = History(rows, {0: 1})
    assert ranking_labels(h, 0, ["W", None, "J"]).tolist() == [1, 0, 0]  # (None: a request nobody knows the meaning of)
    assert ranking_labels(h, 2, ["W"]).tolist() == [0]  # a request that worked: nothing should change


def test_ranking_rows_stack_the_examples_with_candidates_and_count_fixes_the_global_layer_holds():
    import numpy as np

    from selflearn.online.features import FEATURES
    from selflearn.online.replay import ranking_rows
    from selflearn.online.train import History

    rows = [{"meaning": "X", "user_id": "a"}, {"meaning": "W", "user_id": "a"}, {"meaning": "Y", "user_id": "b"},
            {"meaning": "W", "user_id": "b"}, {"meaning": "Z", "user_id": "c"}]
    h = History(rows, {0: 1, 2: 3})
    x = lambda n: np.full((n, len(FEATURES)), float(n), np.float32)  # noqa: E731
    examples = [(0, ["w1", "w2"], x(2), False, ["global", "personal"], ["W", "V"]),   # a's fix, held by the global layer
                (4, [], x(0), False, [], []),                                          # no candidates: no rows
                (2, ["w3", "w4", "w5"], x(3), False, ["personal", "global", "global"], ["W", "V", None])]  # b's fix: personal only
    r = ranking_rows(h, examples, {"a": False, "b": True, "c": False})
    assert r.x.shape == (5, len(FEATURES)) and r.example == [0, 2] and r.example_train == [True, False]
    assert [y.tolist() for y in r.ys] == [[1, 0], [1, 0, 0]]
    assert r.group.tolist() == [0, 0, 2, 2, 2] and r.users.tolist() == ["a", "a", "b", "b", "b"]
    assert r.train.tolist() == [True, True, False, False, False]
    assert r.global_fixes == 1  # b is held out; and b's fix was a personal candidate anyway
    held_b_in = ranking_rows(h, examples, {"a": False, "b": False, "c": False})
    assert held_b_in.global_fixes == 1  # a personal candidate alone is no fix the global layer holds


def test_insertion_finds_words_added_after_a_word_and_nothing_else():
    from selflearn.online.memory import insertion

    assert insertion("weather in wilkerson".split(), "weather in wilkerson ohio".split()) == ("wilkerson", ("ohio",))
    assert insertion("population of troy".split(), "population of troy new york".split()) == ("troy", ("new", "york"))
    assert insertion("set alarm".split(), "please set alarm".split()) is None  # nothing before it to anchor on
    assert insertion("play jaz".split(), "play jazz".split()) is None  # a change, not an insertion
    assert insertion("a b".split(), "a x y z w b".split()) is None  # too many words
    assert insertion("a b".split(), "a b".split()) is None


def test_users_habits_are_served_by_the_rules_only_when_switched_on(online_model):
    said, meant = "what is the weather in springfield", "what is the weather in springfield ohio"
    other, other_meant = "how big is springfield", "how big is springfield ohio"
    rw = OnlineRewriter.load(online_model["model"], fix_min=2, phrase_min=1)
    trained = OnlineRewriter.load(online_model["model"])
    s = online_model["stats"]  # train online's defaults, kept in the manifest: a fix as unlike as it comes once the retry window is learned
    assert trained.habits == HabitRules(fix_min=1, phrase_min=1, fix_similarity=0.0 if s["retry_window_learned"] else 0.6, skip_working=True,
                                        max_confidence=OnlineConfig().fix_max_confidence)
    for day in (1, 2):
        rw.observe({**_turn("habit", f"h{day}", 0, said, intent="weather_query"), "timestamp": f"2026-04-0{day}T08:00:00Z"})
        rw.observe({**_turn("habit", f"h{day}", 0, meant, intent="weather_query"), "timestamp": f"2026-04-0{day}T08:00:09Z"})
        rw.observe({**_turn("habit", f"n{day}", 0, "good night"), "timestamp": f"2026-04-0{day}T22:00:00Z"})
    assert rw.personal.phrase_fixes(rw.ids.of("habit")) == {"springfield": {("ohio",): 2}}
    assert rw.decide(said, user_id="habit") == Decision(meant, "personal", None)  # fixed twice: the whole request
    assert rw.decide(other, user_id="habit") == Decision(other_meant, "personal", None)  # the place, in a new request
    assert rw.decide(other_meant, user_id="habit").rewrite != other_meant + " ohio"  # never inserted twice
    assert rw.decide(other, user_id="someone-else").source != "personal"
    rw.blocked.add((other, other_meant))
    assert rw.decide(other, user_id="habit").rewrite != other_meant
    off = OnlineRewriter.load(online_model["model"], fix_min=0, phrase_min=0)
    off.personal = rw.personal
    assert off.decide(other, user_id="habit").source != "personal" or off.decide(other, user_id="habit").score is not None


def test_a_fix_made_at_the_end_of_a_session_is_served_at_the_start_of_the_next(online_model):
    said, meant = "what is the weather in springfield", "what is the weather in springfield ohio"
    rw = OnlineRewriter.load(online_model["model"], fix_min=1, phrase_min=0)
    rw.observe({**_turn("once", "s1", 0, said, intent="weather_query"), "timestamp": "2026-04-01T08:00:00Z"})
    rw.observe({**_turn("once", "s1", 0, meant, intent="weather_query"), "timestamp": "2026-04-01T08:00:09Z"})
    assert rw.decide(said, user_id="once").source != "personal"  # no time given: the retry could still be retried
    nxt = rw.decide(said, user_id="once", context={"timestamp": "2026-04-02T08:00:00Z"})
    assert nxt == Decision(meant, "personal", None)  # a day later nothing can follow it: settled, the fix is known
    assert rw.personal.fixes_of(rw.ids.of("once"), said) == {meant: 1}


def test_unknown_user_gets_the_global_layer_only(online_model):
    rw = OnlineRewriter.load(online_model["model"])
    texts, sources, x = rw.candidates("play some jazz", user_id=rw.ids.of("nobody-at-all"), device={"type": "speaker"}, context={})
    assert texts and set(sources) == {"global"}
    for f in ("u_q_log_attempts", "u_c_log_successes", "u_c_recency", "u_pair_log_served", "u_pair_log_fixed"):
        assert np.all(x[:, FEATURES.index(f)] == 0)


def test_threshold_by_harm_hand_worked():
    from selflearn.online.ranker import choose_threshold_by_harm

    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    fixed = np.array([True, True, False, True, True])
    harmful = np.array([False, False, True, False, True])  # wrong rewrites of failing requests are not harm
    t, at = choose_threshold_by_harm(scores, fixed, harmful, min_ratio=3, min_rewrites=1)
    assert t == 0.6 and at["fixes"] == 3 and at["harm"] == 1
    t, _ = choose_threshold_by_harm(scores, fixed, harmful, min_ratio=100, min_rewrites=3)
    assert t == 1.0


def test_the_personal_layer_fills_in_what_the_user_taught(online_model, store):
    from selflearn.teach import Preferences

    prefs = Preferences(store)
    prefs.put("fan", "sports_team", "golden state warriors")
    rw = OnlineRewriter.load(online_model["model"])
    rw.preferences = prefs
    d = rw.decide("play the game", user_id="fan")
    assert d.rewrite and "golden state warriors" in d.rewrite and d.source in ("preferences", "table", "global", "personal")
    assert "golden state warriors" not in (rw.decide("play the game", user_id="someone else").rewrite or "")  # personal
    rw.blocked.add(("play the game", "play the golden state warriors game"))
    assert "golden state warriors" not in (rw.decide("play the game", user_id="fan").rewrite or "")  # an operator can block it
    off = OnlineRewriter.load(online_model["model"], layers=("table", "global"))
    off.preferences = prefs
    assert "golden state warriors" not in (off.decide("play the game", user_id="fan").rewrite or "")  # the personal layer's job


def test_phonetic_path_finds_sound_alikes_and_is_off_by_default(online_model):
    rw = OnlineRewriter.load(online_model["model"])
    g = rw.global_
    assert rw.k_phonetic == 0
    text = g.texts[int(g.candidates[0])]
    words = text.split()
    misheard = " ".join(words[:-1] + [words[-1] + "s"]) if len(words) > 1 else text + "s"  # one sound added
    ids, sims = g.phonetic_search(misheard, 5)
    assert text in {g.texts[i] for i in ids} and np.all(sims[:-1] >= sims[1:]) and 0 < sims[0] <= 1
    on = OnlineRewriter.load(online_model["model"], k_phonetic=5)
    texts, sources, x = on.candidates(misheard, user_id="", device={}, context={})
    assert x.shape[0] == len(texts) and text in texts
    off_texts = rw.candidates(misheard, user_id="", device={}, context={})[0]
    assert set(off_texts) <= set(texts) and all(s in ("global", "phonetic") for s in sources)
    assert ("phonetic" in sources) == bool(set(texts) - set(off_texts))


def test_recall_of_retrieval_and_of_the_ranked_global_layer(online_model):
    from selflearn.online.evaluate import ranked_recall, retrieval_recall, retrieval_recall_with_own
    from selflearn.online.train import load_history

    rw = OnlineRewriter.load(online_model["model"], layers=("global",))
    with Store(online_model["dir"] / "s.duckdb", read_only=True) as st:
        h = load_history(st)
    sem = retrieval_recall(rw.encoder, rw.global_, h, limit=300)
    ph = retrieval_recall(rw.encoder, rw.global_, h, limit=300, phonetic=True)
    assert sem["queries"] == ph["queries"] > 0 and sem["reachable"] == ph["reachable"]
    for r in (sem, ph):
        assert r["recall@1"] <= r["recall@5"] <= r["reachable"] <= 1
    assert ph["union@5"] >= max(ph["recall@5"], sem["recall@5"]) and ph["union@5"] <= ph["reachable"]
    own = retrieval_recall_with_own(rw.encoder, rw.global_, h, limit=300)
    assert own["queries"] == sem["queries"] and own["reachable_global"] == sem["reachable"] <= own["reachable"]
    assert own["recall@1"] <= own["recall@5"] <= own["reachable"]
    ranked = ranked_recall(rw, h, limit=200)
    assert ranked["queries"] > 0 and 0 <= ranked["top1"] <= 1 and 0 <= ranked["served"] <= 1
    assert ranked["served"] == 0 or 0 <= ranked["served_precision"] <= 1


def test_recall_of_the_ranker_over_every_layer_replayed(online_model):
    from selflearn.online.evaluate import replayed_recall
    from selflearn.online.memory import PersonalMemory
    from selflearn.online.train import load_history

    rw = OnlineRewriter.load(online_model["model"], layers=("global", "personal"))
    rw.personal = PersonalMemory.empty_like(online_model["model"] / "personal", rw.encoder, known=rw.global_.has_vector)
    with Store(online_model["dir"] / "s.duckdb", read_only=True) as st:
        h = load_history(st)
    r = replayed_recall(rw, h, limit=300)
    assert r["all"]["queries"] == min(300, len(h.target)) and 0 < r["fixable"]["queries"] < r["all"]["queries"]
    for part in ("all", "fixable"):
        c = r[part]
        for how in ("ranker", "cosine"):
            assert c[f"{how}@1"] <= c[f"{how}@5"] <= c["reachable"] <= 1
    assert r["all"]["ranker@5"] > 0 and sum(r["top_source"].values()) == round(r["all"]["ranker@1"] * r["all"]["queries"])
    assert rw.personal.observed == len(h.rows)  # the whole log was replayed through the empty layer


class _Trigrams:
    """A toy encoder: normalised character-trigram counts (close spellings come out close)."""

    def encode(self, texts):
        out = np.zeros((len(texts), 64), np.float32)
        for k, t in enumerate(texts):
            for j in range(len(t) - 2):
                out[k, zlib.crc32(t[j : j + 3].encode()) % 64] += 1
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


def test_recall_with_the_users_own_requests_finds_what_the_index_lacks():
    from selflearn.online.evaluate import retrieval_recall_with_own
    from selflearn.online.global_layer import assemble_global
    from selflearn.online.train import History

    g = assemble_global(["what is the weather", "play some jazz"], [5, 5], [5, 5], [0, 0], ["W", "J"], ["W", "J"],
                        np.zeros((2, 5), np.float32), [], [])
    row = lambda u, text, ok, meaning: {"user_id": u, "text": text, "ok": ok, "rewrite": None, "meaning": meaning}  # noqa: E731
    rows = [row("u1", "call my mother", True, "C"), row("u1", "call my mothers", False, "X"), row("u1", "call my mother", True, "C"),
            row("u2", "call my mothers", False, "X"), row("u2", "call my mother", True, "C"), row("u2", "whats the weather", False, "Y"),
            row("u2", "what is the weather", True, "W")]
    h = History(rows, {1: 2, 3: 4, 5: 6})
    r = retrieval_recall_with_own(_Trigrams(), g, h, k_global=2)
    # u1 said what they meant and it worked before failing; u2 had not: only the index can answer them
    assert r["queries"] == 3 and r["reachable_global"] == 1 / 3 and r["reachable"] == 2 / 3
    assert r["recall@1"] == 2 / 3 and r["same_meaning"] == 0


def test_retraining_with_a_reused_encoder(online_model, tmp_path):
    from selflearn.online import OnlineConfig, train_online

    cfg = OnlineConfig(max_pairs=256, examples=300, batch_size=32, ignore_features=("ctx_hour", "ctx_location"))
    with Store(online_model["dir"] / "s.duckdb") as st:
        stats = train_online(st, tmp_path / "m", config=cfg, encoder_from=online_model["model"])
        assert stats["biencoder"] == {"reused_from": str(online_model["model"])}
        assert (tmp_path / "m" / "encoder.onnx").read_bytes() == (online_model["model"] / "encoder.onnx").read_bytes()
        rw = OnlineRewriter.load(tmp_path / "m")
        assert list(rw.ranker.ignore) == ["ctx_hour", "ctx_location"]
        with pytest.raises(InvalidInputError, match="without differential privacy"):
            train_online(st, tmp_path / "p", config=OnlineConfig(dp_epsilon=300.0, dp_texts_per_user=30, min_users=2), encoder_from=online_model["model"])
        with pytest.raises(InvalidInputError, match="online model directory"):
            train_online(st, tmp_path / "q", config=cfg, encoder_from=tmp_path)
