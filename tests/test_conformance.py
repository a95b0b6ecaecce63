"""Every registered estimator and every registered rewriter passes the one conformance check
(selflearn.models.checks): a new model or rewriter is added to the registry and to CASES below."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

import selflearn.world.nlu  # noqa: F401  (registers the world's NLU)
from selflearn.models import ESTIMATORS, REWRITERS
from selflearn.models.checks import EstimatorCase, RewriterCase, check_estimator, check_rewriter


# -- estimators ---------------------------------------------------------------------------------
def _rephrase(_):
    from test_rephrase import _toy

    from selflearn.rephrase import ContextualRephraseDetector

    exs, labels = _toy(24)
    return EstimatorCase(lambda rs: ContextualRephraseDetector(epochs=1, batch_size=8, lr=1e-4, random_state=rs), (exs, labels),
                         lambda m: m.predict(exs[:8]), (exs, labels[:2]))


def _biencoder(_):
    from selflearn.online import BiEncoder

    pairs = [(f"play song number {i} plz", f"play song number {i}") for i in range(16)]
    return EstimatorCase(lambda rs: BiEncoder(epochs=1, batch_size=8, lr=1e-4, random_state=rs), (pairs,),
                         lambda m: m.encode(["play song number 3", "what time is it", ""]), ([],))


def _ranker(_):
    from selflearn.online import Ranker
    from selflearn.online.features import FEATURES

    rng = np.random.default_rng(0)
    x = rng.random((600, len(FEATURES))).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 1).astype(int)
    return EstimatorCase(lambda rs: Ranker(hidden=8, max_iter=30, random_state=rs), (x, y), lambda m: m.score(x[:50]),
                         (x[:, :3], y))


def _label_model(_):
    from test_labels import SMALL, synthetic

    from selflearn.labels import Dialogue, Exchange, LabelModel

    held = synthetic(6, seed=1) + [Dialogue("odd", [Exchange(""), Exchange("x" * 5000, "y" * 3000), Exchange("¿qué hora es?", "", {"gap_s": 1e9})])]
    return EstimatorCase(lambda rs: LabelModel(**{**SMALL, "epochs": 1, "random_state": rs}), (synthetic(24),), lambda m: m.predict(held),
                         ([Dialogue("x", [Exchange("hi")])],))


def _odd_turns(turns):
    out = []
    for text in ("", "x" * 5000, "¿qué hora es?"):
        t = copy.copy(turns[0])  # the fixture's turns are shared: change copies
        t.text = text
        out.append(t)
    return turns[:200] + out


def _fpi_model(request):
    from selflearn.fpi import FailurePointModel

    train, y, _, _ = request.getfixturevalue("fpi_runs")["train"]
    test = _odd_turns(request.getfixturevalue("fpi_runs")["eval"][0])
    return EstimatorCase(lambda rs: FailurePointModel(epochs=2, hidden=32, text_dim=32, random_state=rs), (train[:1500], y[:1500]),
                         lambda m: m.predict_proba(test), (train[:3], ["asr", "nlu", "not-a-class"]))


def _fpi_rules(request):
    from selflearn.fpi import RuleBaseline

    train, y, _, _ = request.getfixturevalue("fpi_runs")["train"]
    test = _odd_turns(request.getfixturevalue("fpi_runs")["eval"][0])
    return EstimatorCase(lambda rs: RuleBaseline(), (train[:1500], y[:1500]), lambda m: m.predict(test), (train[:3], ["asr", "nlu", "not-a-class"]))


def _world_nlu(_):
    from selflearn.world.corpus import Sentence
    from selflearn.world.nlu import JointNLU

    songs, rooms, cities = ["hey jude", "so what", "take five"], ["kitchen", "hall"], ["boston", "denver", "austin"]
    sents = [Sentence(i, f"play {s} in the {r}", "play_music", "music", (("song_name", s),), ("", *(["song_name"] * len(s.split())), "", "", ""))
             for i, (s, r) in enumerate((s, r) for s in songs for r in rooms)]
    sents += [Sentence(100 + i, f"what is the weather in {c}", "weather_query", "weather", (("place_name", c),), ("",) * 5 + ("place_name",))
              for i, c in enumerate(cities)]
    return EstimatorCase(lambda rs: JointNLU(epochs=1, batch_size=4, random_state=rs), (sents,),
                         lambda m: m.predict(["play hey jude in the kitchen", "weather in boston", ""]), ([],))


CASES = {"rephrase-detector": _rephrase, "biencoder": _biencoder, "ranker": _ranker, "label-model": _label_model,
         "failure-point-model": _fpi_model, "failure-point-rules": _fpi_rules, "world-nlu": _world_nlu}


def test_every_registered_estimator_has_a_case():
    assert set(CASES) == set(ESTIMATORS)


@pytest.mark.parametrize("component", sorted(CASES))
def test_estimator_conformance(component, request, tmp_path):
    check_estimator(CASES[component](request), tmp_path)


def test_a_model_from_another_format_is_refused_with_the_fix(tmp_path):
    from selflearn.errors import StoreVersionError, UnreadableInputError
    from selflearn.models import load_model

    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text(json.dumps({"component": "failure-point-rules", "format_version": 0, "params": {}}))
    with pytest.raises(StoreVersionError, match="fix: "):
        load_model(tmp_path / "m")
    with pytest.raises(UnreadableInputError, match="model directory"):
        load_model(tmp_path / "nothing")


# -- rewriters ----------------------------------------------------------------------------------
_PREFS: dict = {}


def _requests(m, n=150):
    lines = m["logs"].read_text().splitlines()
    out = []
    for x in lines[:: max(1, len(lines) // n)]:
        t = json.loads(x)
        if not t["utterance"]["text"].strip():  # nothing heard: not a rewrite request (the checks' odd inputs cover it)
            continue
        out.append((t["utterance"]["text"], t["user_id"], t["device"], {"hour": int(t["timestamp"][11:13])}))
    return out


def _preference_rewriter(m):
    """The taught-preferences rewriter over a store where the logs' first users taught a few things."""
    from selflearn.store.store import Store
    from selflearn.teach import PreferenceRewriter, Preferences, Teacher

    if "prefs" not in _PREFS:
        prefs = _PREFS["prefs"] = Preferences(Store(m["dir"] / "conformance-prefs.duckdb"))
        users = sorted({json.loads(x)["user_id"] for x in m["logs"].read_text().splitlines()[:400]})
        teacher = Teacher(prefs)
        for u, said in zip(users, ["I'm a Warriors fan", "I like Italian restaurants", "I love jazz music", "I live in Wilkerson Ohio"] * 10):
            teacher.turn(u, said)
    return PreferenceRewriter(_PREFS["prefs"])


def _rewriter_cases(request, tmp_path):
    from selflearn.online import OnlineRewriter
    from selflearn.rewriters import HttpRewriter, NoOpRewriter, load_rewriter
    from selflearn.rewrites.table import TableRewriter

    m = request.getfixturevalue("online_model")
    reqs = _requests(m)
    bad_spec = lambda: load_rewriter("ftp://example.org/rewrite")  # noqa: E731
    return {
        "no-op": lambda: RewriterCase(NoOpRewriter, reqs, bad_spec),
        "table": lambda: RewriterCase(lambda: TableRewriter.load(m["table"]), reqs, lambda: TableRewriter.load(tmp_path / "none.parquet")),
        "table-by-spec": lambda: RewriterCase(lambda: load_rewriter(str(m["table"])), reqs, lambda: load_rewriter(str(tmp_path / "none.parquet"))),
        "preferences": lambda: RewriterCase(lambda: _preference_rewriter(m), reqs),
        "online": lambda: RewriterCase(lambda: OnlineRewriter.load(m["model"]), reqs, lambda: OnlineRewriter.load(tmp_path / "none")),
        "online-global-only": lambda: RewriterCase(lambda: OnlineRewriter.load(m["model"], layers=("global",)), reqs),
        "http": lambda: _http_case(request, m, reqs, HttpRewriter, bad_spec),
    }


def _http_case(request, m, reqs, HttpRewriter, bad_spec):
    from conftest import serve

    keys = request.getfixturevalue("api_keys")
    proc, base = serve(m["model"], keys["file"], "--deadline-ms", "10000")  # a busy test machine must not turn answers into 503s
    request.addfinalizer(lambda: (proc.terminate(), proc.wait(timeout=20)))
    return RewriterCase(lambda: HttpRewriter(f"{base}/v1/rewrite", api_key=keys["reader"], timeout_s=10.0), reqs[:60], bad_spec)


REWRITER_CASES = ["no-op", "table", "table-by-spec", "preferences", "online", "online-global-only", "http"]


def test_every_registered_rewriter_has_a_case():
    assert set(REWRITERS) <= set(REWRITER_CASES)


@pytest.mark.parametrize("name", REWRITER_CASES)
def test_rewriter_conformance(name, request, tmp_path):
    check_rewriter(_rewriter_cases(request, tmp_path)[name]())


def test_the_http_rewriter_answers_as_the_model_it_serves(online_model, api_keys):
    """The same requests through `selflearn online serve` and the model loaded in process: the same rewrites."""
    from conftest import serve

    from selflearn.online import OnlineRewriter
    from selflearn.rewriters import HttpRewriter

    proc, base = serve(online_model["model"], api_keys["file"], "--deadline-ms", "10000")
    try:
        http = HttpRewriter(f"{base}/v1/rewrite", api_key=api_keys["reader"], timeout_s=10.0)
        local = OnlineRewriter.load(online_model["model"])
        for text, user, device, context in _requests(online_model, 60):
            assert http.rewrite(text, user_id=user, device=device, context=context) == local.rewrite(text, user_id=user, device=device, context=context)
        assert http.errors == 0
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_a_model_directory_is_a_rewriter_spec(online_model):
    from selflearn.online import OnlineRewriter
    from selflearn.rewriters import load_rewriter

    rw = load_rewriter(str(online_model["model"]))
    assert isinstance(rw, OnlineRewriter) and rw.layers == ("table", "global", "personal")


def test_a_world_nlu_saved_by_the_previous_format_still_loads(tmp_path):
    """Worlds built before the shared model directory keep working: same weights, config upgraded on load."""
    case = _world_nlu(None)
    model = case.make(0).fit(*case.fit_args)
    model.save(tmp_path / "nlu")
    new = json.loads((tmp_path / "nlu" / "config.json").read_text())
    old = {"format_version": 1, "component": "selflearn.world.nlu.JointNLU",
           "params": {k: v for k, v in new["params"].items() if k != "random_state"} | {"seed": 0},
           "intents": new["learned"]["intents_"], "tags": new["learned"]["tags_"], "n_train": 9, "train_seconds": 1.0}
    (tmp_path / "nlu" / "config.json").write_text(json.dumps(old))
    from selflearn.world.nlu import JointNLU

    again = JointNLU.load(tmp_path / "nlu")
    assert again.random_state == 0 and case.predict(again) == case.predict(model)


@pytest.mark.parametrize("component", ["ranker", "biencoder", "rephrase-detector", "world-nlu"])
def test_progress_is_one_protocol(component):
    """Every model reports progress(stage, done, total); None means quiet."""
    case = CASES[component](None)
    seen = []
    model = case.make(0)
    kw = {} if component == "ranker" else {"progress": lambda stage, done, total: seen.append((stage, done, total))}
    model.fit(*case.fit_args, **kw)
    if component != "ranker":  # the ranker's MLP is fitted by scikit-learn in one call
        assert seen and all(isinstance(s, str) and 0 < d <= t for s, d, t in seen)
        case.make(0).fit(*case.fit_args, progress=None)
