"""Every rewriter goes through the same checks (as scikit-learn's test_common): it is a world
hook, a reload answers exactly as the original, and input it cannot judge passes through."""

from __future__ import annotations

import json

import pytest

from selflearn.online import OnlineRewriter
from selflearn.rewrites.table import TableRewriter
from selflearn.rewriters import Rewriter, load_rewriter

_PREFS: dict = {}


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


FACTORIES = {
    "preferences": _preference_rewriter,
    "table": lambda m: TableRewriter.load(m["table"]),
    "table-by-spec": lambda m: load_rewriter(str(m["table"])),
    "online": lambda m: OnlineRewriter.load(m["model"]),
    "online-global-only": lambda m: OnlineRewriter.load(m["model"], layers=("global",)),
}


def _requests(m, n=150):
    lines = m["logs"].read_text().splitlines()
    return [json.loads(x) for x in lines[:: max(1, len(lines) // n)]]


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_rewriter_conformance(name, online_model):
    make = FACTORIES[name]
    a, b = make(online_model), make(online_model)
    assert isinstance(a, Rewriter)
    for t in _requests(online_model):
        kw = dict(user_id=t["user_id"], device=t["device"], context={"hour": int(t["timestamp"][11:13])})
        got = a.rewrite(t["utterance"]["text"], **kw)
        assert got is None or (isinstance(got, str) and got.strip()), got
        assert got == b.rewrite(t["utterance"]["text"], **kw)  # a fresh load answers the same
    for odd in ("", "   ", "x" * 5000, "¿qué hora es?"):
        out = a.rewrite(odd, user_id="", device={}, context={})
        assert out is None or isinstance(out, str)


def test_a_model_directory_is_a_rewriter_spec(online_model):
    rw = load_rewriter(str(online_model["model"]))
    assert isinstance(rw, OnlineRewriter) and rw.layers == ("table", "global", "personal")


# -- labelers: every model that labels dialogues -----------------------------------------------
def _label_model(seed: int):
    from test_labels import SMALL, synthetic

    from selflearn.labels import LabelModel

    return LabelModel(**{**SMALL, "epochs": 1, "seed": seed}).fit(synthetic(24))


LABELERS = {"label-model": _label_model, "label-model-context-free": lambda seed: _context_free(seed)}


def _context_free(seed: int):
    from test_labels import SMALL, synthetic

    from selflearn.labels import LabelModel

    return LabelModel(**{**SMALL, "epochs": 1, "pretrain_epochs": 0, "context": False, "seed": seed}).fit(synthetic(24))


@pytest.mark.parametrize("name", sorted(LABELERS))
def test_labeler_conformance(name, tmp_path):
    from test_labels import synthetic

    from selflearn.labels import Dialogue, Exchange
    from selflearn.labels.model import LabelModel

    make = LABELERS[name]
    a = make(0)
    data = synthetic(6, seed=1)
    first = a.predict(data)
    assert len(first) == len(data) and all(len(p) == len(d.exchanges) for p, d in zip(first, data))
    a.save(tmp_path / "m")
    assert LabelModel.load(tmp_path / "m").predict(data) == first  # save/load answers identically
    assert make(0).predict(data) == first  # the same seed trains the same model
    odd = [Dialogue("odd", [Exchange(""), Exchange("x" * 5000, "y" * 3000), Exchange("¿qué hora es?", "", {"gap_s": 1e9})])]
    (rows,) = a.predict(odd)
    assert len(rows) == 3 and all(0.0 <= r["defect"] <= 1.0 for r in rows)
    assert a.predict([]) == []


# -- failure-point classifiers: every model that names a turn's failure point --------------------
FAILURE_POINT_MODELS = {"fpi-model": {}, "fpi-model-no-text": {"text": False}}


@pytest.mark.parametrize("name", sorted(FAILURE_POINT_MODELS))
def test_failure_point_model_conformance(name, fpi_runs, tmp_path):
    import numpy as np

    from selflearn.errors import InvalidInputError
    from selflearn.fpi import CLASSES, FailurePointModel

    train, y, _, _ = fpi_runs["train"]
    test = fpi_runs["eval"][0][:200]

    def make(seed):
        return FailurePointModel(epochs=2, hidden=32, text_dim=32, seed=seed, **FAILURE_POINT_MODELS[name]).fit(train[:1500], y[:1500])

    a = make(0)
    first = a.predict_proba(test)
    assert first.shape == (len(test), len(CLASSES)) and np.allclose(first.sum(1), 1.0, atol=1e-5)
    a.save(tmp_path / "m")
    assert np.allclose(FailurePointModel.load(tmp_path / "m").predict_proba(test), first, atol=1e-6)  # save/load answers the same
    assert np.array_equal(make(0).predict_proba(test), first)  # the same seed trains the same model
    import copy

    odd = copy.copy(test[0])  # the fixture's turns are shared: change a copy
    for text in ("", "x" * 5000, "¿qué hora es?"):
        odd.text = text
        assert a.predict([odd])[0] in CLASSES
    assert a.predict([]) == []
    with pytest.raises(InvalidInputError):
        make(0).fit(train[:3], ["asr", "nlu", "not-a-class"])
