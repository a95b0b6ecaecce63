"""Failure point isolation: features, weak labels, rules, the model (learning, save/load, bad input),
the seed's garage-door dialogue, the store's failure points and breakdown, and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from selflearn.cli.main import app
from selflearn.errors import InvalidInputError, NotFittedError
from selflearn.fpi import (CLASSES, TRACE_FEATURES, FailurePointModel, RuleBaseline, apply_fpi, breakdown, fpi_metrics, read_failure_labels,
                           store_turns, trace_features, weak_failure_points)
from selflearn.fpi.features import relation
from selflearn.fpi.isolation import labelled
from selflearn.store.importer import import_files
from selflearn.store.store import Store

from conftest import make_turn, write_jsonl

SMALL = {"epochs": 12, "hidden": 64, "text_dim": 64, "batch_size": 128}


@pytest.fixture(scope="module")
def runs(fpi_runs):
    return fpi_runs


@pytest.fixture(scope="module")
def model(runs):
    train, y, _, _ = runs["train"]
    return FailurePointModel(**SMALL).fit(train, y)


def _garage_door(tmp_path):
    """The seed's dialogue: "open the garage door" misheard, entity resolution fails on the misheard
    name, the action fails; the repeat drops "the" but works; "make me a sandwich" cannot be served."""
    dev = {"type": "speaker", "has_screen": False, "state": {}, "location": "hall"}

    def turn(i, second, text, conf, intent, slots, er, response, status):
        return make_turn(session_id="garage", turn_index=i, timestamp=f"2026-03-02T08:15:{second:02d}Z", device=dev,
                         utterance={"text": text, "asr_confidence": conf},
                         nlu={"domain": intent.split("_")[0], "intent": intent, "slots": slots, "confidence": 0.93,
                              "top_k": [{"intent": intent, "confidence": 0.93}]},
                         entity_resolution=er, response={"status": status, "text": response, "action": intent if status == "success" else None},
                         feedback={"barge_in": False})

    logs = [
        turn(0, 0, "open the garbage door", 0.52, "iot_open", [{"name": "device_name", "value": "garbage door"}],
             {"status": "unresolved", "entities": [{"slot": "device_name", "value": "garbage door", "resolved_id": None, "score": 0.31, "candidates": 0}]},
             "Sorry, I couldn't find garbage door.", "failure"),
        turn(1, 6, "open garage door", 0.81, "iot_open", [{"name": "device_name", "value": "garage door"}],
             {"status": "resolved", "entities": [{"slot": "device_name", "value": "garage door", "resolved_id": "dev:garage", "score": 0.97, "candidates": 1}]},
             "OK, opening the garage door.", "success"),
        turn(2, 40, "make me a sandwich", 0.95, "general_quirky", [], {"status": "not_applicable", "entities": []},
             "Sorry, I can't help with that yet.", "unsupported"),
    ]
    with Store(tmp_path / "garage.duckdb") as st:
        import_files(st, [write_jsonl(tmp_path / "garage.jsonl", logs)])
        return store_turns(st)


def test_trace_features_are_named_and_flag_missing_traces(tmp_path):
    turns = _garage_door(tmp_path)
    x = np.stack([trace_features(t) for t in turns])
    assert x.shape == (3, len(TRACE_FEATURES)) and np.isfinite(x).all()
    f = dict(zip(TRACE_FEATURES, x[0]))
    assert f["nbest_missing"] == 1.0 and f["asr_conf_missing"] == 0.0 and f["n_unresolved"] == 1.0
    assert f["has_next"] == 1.0 and f["has_final"] == 1.0 and f["final_success"] == 1.0 and f["first_turn"] == 1.0
    assert dict(zip(TRACE_FEATURES, x[2]))["last_turn"] == 1.0
    assert turns[0].final is turns[1] and turns[1].final is turns[1] and turns[2].prev is turns[1]


def test_relation_tells_a_namesake_from_a_misheard_value(tmp_path):
    a, b, _ = _garage_door(tmp_path)
    a.entities = [{"value": "wilkerson", "resolved_id": "place:wilkerson@washington"}]
    b.entities = [{"value": "wilkerson ohio", "resolved_id": "place:wilkerson@ohio"}]
    assert relation(a, b)["other_entity_same_value"] == 1.0
    b.entities = [{"value": "wilkerson", "resolved_id": "place:wilkerson@washington"}]
    assert relation(a, b)["other_entity_same_value"] == 0.0 and relation(a, b)["same_entities"] == 1.0


def test_garage_door_dialogue(tmp_path, model):
    turns = _garage_door(tmp_path)
    want = ["asr", "correct", "correct"]  # ASR failed first; a small ASR error that still worked; a request no one can serve
    assert weak_failure_points(turns) == want
    assert RuleBaseline().fit(turns).predict(turns) == want
    assert model.predict(turns) == want  # the model trained on the world's annotated run agrees


def test_model_learns_from_annotations_and_beats_the_rules_on_a_held_out_run(runs, model):
    train, y_train, _, _ = runs["train"]
    test, y_test, _, _ = runs["eval"]
    assert model.history_[-1] < 0.6 * model.history_[0]  # training lowers the loss
    ours = fpi_metrics(y_test, model.predict(test))
    rules = fpi_metrics(y_test, RuleBaseline().fit(train, y_train).predict(test))
    weak = fpi_metrics(y_test, weak_failure_points(test))
    assert ours["accuracy"] > 0.85 and ours["accuracy"] > rules["accuracy"] and ours["accuracy"] > weak["accuracy"], (ours, rules, weak)
    assert ours["per_class"]["correct"]["f1"] > 0.9 and ours["per_class"]["asr"]["f1"] > 0.8
    m = np.array(ours["confusion"]["matrix"])
    assert m.shape == (len(CLASSES), len(CLASSES)) and m.sum() == len(test)


def test_weak_labels_need_no_truth_and_train_a_model(runs):
    train, y_train, _, _ = runs["train"]
    weak = weak_failure_points(train)
    assert set(weak) <= set(CLASSES) and len(weak) == len(train)
    agree = np.mean([a == b for a, b in zip(weak, y_train)])
    assert 0.6 < agree < 1.0  # noisy, but far better than chance
    m = FailurePointModel(**{**SMALL, "text": False}).fit(train, weak)
    assert set(m.predict(train[:200])) <= set(CLASSES)


def test_save_load_and_seeding(runs, model, tmp_path):
    test = runs["eval"][0][:300]
    model.save(tmp_path / "m")
    assert {p.name for p in (tmp_path / "m").iterdir()} >= {"config.json", "model.safetensors"}
    again = FailurePointModel.load(tmp_path / "m")
    assert np.allclose(again.predict_proba(test), model.predict_proba(test), atol=1e-6)
    train, y, _, _ = runs["train"]
    a = FailurePointModel(**{**SMALL, "text": False, "epochs": 3}, random_state=5).fit(train[:800], y[:800])
    b = FailurePointModel(**{**SMALL, "text": False, "epochs": 3}, random_state=5).fit(train[:800], y[:800])
    assert np.array_equal(a.predict_proba(test), b.predict_proba(test))
    assert model.predict([]) == [] and model.predict_proba([]).shape == (0, len(CLASSES))
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    cfg["learned"]["trace_features"] = cfg["learned"]["trace_features"][:-1]
    (tmp_path / "m" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(InvalidInputError, match="retrain"):
        FailurePointModel.load(tmp_path / "m")


def test_bad_input_is_rejected_with_the_fix(runs, tmp_path):
    train, y, _, _ = runs["train"]
    with pytest.raises(NotFittedError, match="fit"):
        FailurePointModel().predict(train[:2])
    with pytest.raises(NotFittedError):
        RuleBaseline().predict(train[:2])
    with pytest.raises(InvalidInputError, match="labels among"):
        FailurePointModel(**SMALL).fit(train[:3], ["asr", "nlu", "coffee"])
    with pytest.raises(InvalidInputError, match="one label per turn"):
        FailurePointModel(**SMALL).fit(train[:3], y[:2])
    with pytest.raises(InvalidInputError, match="epochs"):
        FailurePointModel(epochs=0).fit(train[:3], y[:3])
    with pytest.raises(InvalidInputError, match="does not exist"):
        read_failure_labels(tmp_path / "nope.parquet")
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(InvalidInputError, match=".parquet, .csv or .jsonl"):
        read_failure_labels(tmp_path / "a.txt")
    write_jsonl(tmp_path / "cols.jsonl", [{"session_id": "s", "turn_index": 0}])
    with pytest.raises(InvalidInputError, match="failure_point"):
        read_failure_labels(tmp_path / "cols.jsonl")
    write_jsonl(tmp_path / "cls.jsonl", [{"session_id": "s", "turn_index": 0, "failure_point": "tts"}])
    with pytest.raises(InvalidInputError, match="must be one of"):
        read_failure_labels(tmp_path / "cls.jsonl")
    write_jsonl(tmp_path / "none.jsonl", [{"session_id": "nobody", "turn_index": 0, "failure_point": "asr"}])
    with pytest.raises(InvalidInputError, match="none matches"):
        labelled(train, read_failure_labels(tmp_path / "none.jsonl"))


def test_apply_adds_failure_points_and_breaks_them_down(runs, model, tmp_path):
    import shutil

    path = tmp_path / "eval.duckdb"
    shutil.copy(runs["eval"][2], path)
    with Store(path) as st:
        with pytest.raises(InvalidInputError, match="fpi apply"):
            breakdown(st)
        b = apply_fpi(st, model)
        n = st.reader().execute("SELECT count(*) FROM turns").fetchall()[0][0]
        fp = st.reader().execute("SELECT count(*), count(DISTINCT failure_point), min(confidence) FROM failure_points").fetchall()[0]
    assert fp[0] == n == b["turns"] and fp[1] >= 3 and 0 < fp[2] <= 1
    assert sum(v["turns"] for v in b["by_component"].values()) == n
    assert b["defects"] == n - b["by_component"]["correct"]["turns"]
    for key in ("by_domain", "by_intent", "by_device_type", "by_day"):
        assert b[key] and all(r["defects"] == sum(r[c] for c in CLASSES if c != "correct") for r in b[key])
    assert len(b["by_day"]) == 7 and sum(r["turns"] for r in b["by_device_type"]) == n


def test_cli_train_evaluate_apply_breakdown(runs, tmp_path):
    import shutil

    runner = CliRunner()
    store = tmp_path / "train.duckdb"
    shutil.copy(runs["train"][2], store)
    labels = runs["train"][3]
    r = runner.invoke(app, ["fpi", "breakdown", "--store", str(store)])
    assert r.exit_code == 2 and "fpi apply" in r.output
    r = runner.invoke(app, ["fpi", "train", "--store", str(store), "--labels", str(labels), "--out", str(tmp_path / "m"), "--no-text",
                            "--epochs", "4", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["labels"].startswith("annotations")
    r = runner.invoke(app, ["fpi", "evaluate", "--store", str(store), "--labels", str(labels), "--model", str(tmp_path / "m"), "--json"])
    assert r.exit_code == 0, r.output
    m = json.loads(r.stdout)
    assert set(m) >= {"accuracy", "macro_f1", "per_class", "confusion"} and m["accuracy"] > 0.8
    r = runner.invoke(app, ["fpi", "evaluate", "--store", str(store), "--labels", str(labels), "--rules"])
    assert r.exit_code == 0 and "accuracy" in r.output
    r = runner.invoke(app, ["fpi", "apply", "--store", str(store), "--model", str(tmp_path / "m")])
    assert r.exit_code == 0 and "by component" in r.output and "by device type" in r.output and "by day" in r.output, r.output
    r = runner.invoke(app, ["fpi", "breakdown", "--store", str(store), "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["turns"] > 0
    r = runner.invoke(app, ["fpi", "train", "--store", str(tmp_path / "missing.duckdb")])
    assert r.exit_code == 2 and "does not exist" in r.output
    r = runner.invoke(app, ["fpi", "train", "--store", str(store), "--out", str(tmp_path / "weak"), "--no-text", "--epochs", "2", "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["labels"].startswith("weak"), r.output
