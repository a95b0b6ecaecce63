"""Ground-truth generation: the dialogue format, weak labels, batching and masking, the label
model (training lowers the loss, save/load, seeding), metrics, apply at a precision, the CLI."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest
from typer.testing import CliRunner

from selflearn.cli.main import app
from selflearn.errors import SelflearnError, InvalidInputError, NotFittedError
from selflearn.labels import Dialogue, Exchange, LabelModel, evaluate_predictions, labels_as_predictions, read_dialogues, reference_targets, write_dialogues
from selflearn.labels.batches import IGNORE, Vocab, collate, corrupt, encode_dialogues
from selflearn.labels.dialogues import parse_dialogue
from selflearn.labels.feeding import plan_batches
from selflearn.labels.evaluate import precision_coverage, threshold_for
from selflearn.labels.training import apply_labels, nlu_examples
from selflearn.labels.weak import align_slot, store_dialogues
from selflearn.store.importer import import_files
from selflearn.store.store import Store

from conftest import raw_ids, write_jsonl

SONGS = ["purple haze", "yellow submarine", "hey jude", "blue in green", "so what", "take five"]
CITIES = ["boston", "denver", "austin", "seattle", "miami"]


def synthetic(n: int, seed: int = 0) -> list[Dialogue]:
    """Dialogues whose labels follow from the text: a 'sorry' reply is a defect, the user then
    retries the same goal; intent from the verb; the song or city is the slot."""
    r = random.Random(seed)
    out = []
    for k in range(n):
        ex = []
        for g in range(r.randint(1, 2)):
            if r.random() < 0.5:
                song = r.choice(SONGS)
                intent, said, slot = "music_play", f"play {song}", {"name": "song_name", "value": song}
                good = f"Playing {song}"
            else:
                city = r.choice(CITIES)
                intent, said, slot = "weather_query", f"weather in {city}", {"name": "place_name", "value": city}
                good = f"It is sunny in {city}"
            fail = r.random() < 0.4
            if fail:
                ex.append(Exchange(said, "Sorry, I don't know that", {"status": "failure", "asr_confidence": 0.5},
                                   {"defect": 1, "goal": g, "goal_success": 1, "intent": intent, "slots": [slot]}))
            ex.append(Exchange(said + (" please" if fail else ""), good, {"status": "success", "asr_confidence": 0.9},
                               {"defect": 0, "goal": g, "goal_success": 1, "intent": intent, "slots": [slot]}))
        out.append(Dialogue(f"d{k}", ex, label=int(len(ex) == 1)))
    return out


SMALL = dict(text_layers=1, d_model=32, dialogue_layers=1, epochs=3, pretrain_epochs=1, batch_turns=16, random_state=0, lr=1e-4, head_lr=3e-3)


@pytest.fixture(scope="module")
def small_model():
    return LabelModel(**SMALL).fit(synthetic(80))


# -- the dialogue format -----------------------------------------------------------------
def test_reader_keeps_good_dialogues_and_quarantines_bad_lines_with_reasons(tmp_path):
    good = {"dialogue_id": "a", "label": 1, "turns": [{"speaker": "system", "text": "Hi!"},
                                                      {"speaker": "user", "text": "play jaz", "turn_id": 3, "labels": {"defect": 1, "satisfaction": 2},
                                                       "features": {"asr_confidence": 0.4, "domain": "music", "mood": "x"}},
                                                      {"speaker": "system", "text": "Playing jazz"}, {"speaker": "system", "text": "Enjoy."}]}
    lines = [good, "{not json", {"turns": [{"speaker": "user", "text": "x"}]},
             {"dialogue_id": "b", "turns": []},
             {"dialogue_id": "c", "turns": [{"speaker": "bot", "text": "x"}]},
             {"dialogue_id": "d", "turns": [{"speaker": "user", "text": "x", "labels": {"defect": 2}}]},
             {"dialogue_id": "e", "turns": [{"speaker": "user", "text": "x", "labels": {"mood": "sad"}}]},
             {"dialogue_id": "f", "turns": [{"speaker": "user", "text": "x"}, {"speaker": "system", "text": "y", "labels": {"defect": 0}}]},
             {"dialogue_id": "g", "turns": [{"speaker": "user", "text": "x", "features": {"asr_confidence": -1}}]},
             {"dialogue_id": "h", "turns": [{"speaker": "system", "text": "only me"}]},
             {"dialogue_id": "a", "turns": [{"speaker": "user", "text": "again"}]},
             [1, 2]]
    path = write_jsonl(tmp_path / "d.jsonl", lines)
    dialogues, bad = read_dialogues(path)
    assert [d.dialogue_id for d in dialogues] == ["a"]
    e = dialogues[0].exchanges[0]
    assert (e.user, e.system, e.turn_id, e.labels["defect"], e.features["mood"]) == ("play jaz", "Playing jazz Enjoy.", 3, 1, "x")
    reasons = {b["line"]: b["reason"] for b in bad}
    assert len(bad) == len(lines) - 1
    assert "dialogue_id" in reasons[3] and "non-empty list" in reasons[4] and "'user' or 'system'" in reasons[5]
    assert "labels.defect=2: must be 0 or 1" in reasons[6] and "not a known label" in reasons[7]
    assert "belong on user turns" in reasons[8] and "asr_confidence=-1" in reasons[9] and "no user turn" in reasons[10]
    assert "appears twice" in reasons[11] and "fix:" in reasons[12]
    assert all("fix:" in r for r in reasons.values() if not r.startswith("Expecting"))


def test_reader_refuses_a_file_without_one_good_dialogue(tmp_path):
    with pytest.raises(InvalidInputError, match="no valid dialogue"):
        read_dialogues(write_jsonl(tmp_path / "bad.jsonl", ["{", {"dialogue_id": "x"}]))
    with pytest.raises(InvalidInputError, match="empty"):
        read_dialogues(write_jsonl(tmp_path / "empty.jsonl", []))
    with pytest.raises(OSError):
        read_dialogues(tmp_path / "missing.jsonl")


def test_dialogues_round_trip_through_the_format(tmp_path):
    ds = synthetic(5)
    write_dialogues(ds, tmp_path / "x.jsonl")
    back, bad = read_dialogues(tmp_path / "x.jsonl")
    assert not bad and [d.to_json() for d in back] == [d.to_json() for d in ds]
    with pytest.raises(ValueError, match="must be a JSON object"):
        parse_dialogue("text")


# -- weak labels from the store ----------------------------------------------------------
def test_align_slot_finds_exact_then_misheard_spans():
    assert align_slot("play purple haze now".split(), "purple haze") == (1, 3)
    assert align_slot("play purple hays now".split(), "purple haze") == (1, 3)
    assert align_slot("play something else".split(), "purple haze") is None
    assert align_slot([], "x") is None


def _log(sid, k, text, status, intent, slots, second):
    return {"schema_version": 1, "session_id": sid, "turn_index": k, "timestamp": f"2026-03-02T08:00:{second:02d}Z", "user_id": "u1",
            "device_id": "d1", "device": {"type": "speaker", "has_screen": False}, "utterance": {"text": text, "asr_confidence": 0.8},
            "nlu": {"domain": intent.split("_")[0], "intent": intent, "confidence": 0.7, "slots": slots}, "response": {"status": status, "text": f"reply {k}"},
            "feedback": {"barge_in": False}}


def test_weak_labels_follow_the_signals(tmp_path):
    logs = [_log("s1", 0, "play purple hays", "failure", "music_play", [{"name": "song_name", "value": "purple hays"}], 0),
            _log("s1", 1, "play purple haze by jimi hendrix", "success", "music_play",
                 [{"name": "song_name", "value": "purple haze"}, {"name": "artist_name", "value": "jimi hendrix"}], 6),
            _log("s2", 0, "what time is it", "success", "datetime_query", [], 0)]
    with Store(tmp_path / "s.duckdb") as st:
        import_files(st, [write_jsonl(tmp_path / "l.jsonl", logs)])
        raw = raw_ids(st, "s1", "s2")
        ds = {raw[d.dialogue_id]: d for d in store_dialogues(st)}
    a, b = ds["s1"].exchanges
    assert a.labels["defect"] == 1 and b.labels["defect"] == 0
    assert a.labels["goal"] == b.labels["goal"] and a.labels["goal_success"] == b.labels["goal_success"] == 1
    assert a.labels["intent"] == b.labels["intent"] == "music_play"
    assert "slots" not in a.labels  # 'jimi hendrix' was never heard in the first attempt: no tagging target
    assert b.labels["slots"] == [{"name": "song_name", "value": "purple haze"}, {"name": "artist_name", "value": "jimi hendrix"}]
    assert a.features["asr_confidence"] == 0.8 and b.features["gap_s"] == pytest.approx(6.0) and "gap_s" not in a.features
    assert (a.turn_id, b.turn_id) == (0, 1)
    (c,) = ds["s2"].exchanges
    assert c.labels["defect"] == 0 and c.labels["intent"] == "datetime_query" and c.labels["slots"] == []


# -- batches and masking -----------------------------------------------------------------
def test_collate_pads_dialogues_and_masks_what_is_unknown(small_model):
    ds = synthetic(6, seed=3)
    ds[0].exchanges[0].labels.pop("defect")
    enc = encode_dialogues(ds, small_model.tokenizer_, small_model.vocab_)
    t = collate(enc, small_model.tokenizer_.pad_token_id)
    n = sum(len(d.exchanges) for d in ds)
    assert t["u_ids"].shape[0] == n == t["cats"].shape[0] == t["nums"].shape[0]
    assert t["turn_pos"].shape == (6, max(len(d.exchanges) for d in ds))
    assert (t["turn_pos"] >= 0).sum() == n and sorted(t["turn_pos"][t["turn_pos"] >= 0].tolist()) == list(range(n))
    assert math.isnan(t["y_defect"][0]) and not math.isnan(t["y_defect"][1])
    first = t["turn_pos"][:, 0]
    assert all(math.isnan(t["y_same_goal"][k]) for k in first.tolist())  # a dialogue's first turn has no previous goal
    tagged = (t["y_slots"] != IGNORE).sum(1)
    assert all(int(tagged[k]) == len(e.user.split()) for k, e in enumerate(x for d in ds for x in d.exchanges))  # one tag per word
    assert (t["u_ids"][t["u_mask"] == 0] == small_model.tokenizer_.pad_token_id).all()


def test_corruptions_mark_what_they_changed():
    rng = random.Random(1)
    ds = synthetic(20, seed=2)
    vocab = Vocab.fit(ds)
    from transformers import AutoTokenizer

    from selflearn.models.backbone import encoder_path

    enc = encode_dialogues(ds, AutoTokenizer.from_pretrained(encoder_path()), vocab)
    for kind in ("swap", "shuffle", "insert"):
        out = corrupt(enc, (kind,), rng, rate=1.0)
        for before, after in zip(enc, out):
            marked = [e.corrupted for e in after]
            assert sum(marked) >= 1
            if kind == "insert":
                assert len(after) == len(before) + 1 and sum(marked) == 1
            if kind == "swap":
                assert len(after) == len(before)
    assert all(e.corrupted == 0 for d in enc for e in d)  # the originals are untouched


def test_padding_does_not_change_a_dialogues_labels(small_model):
    ds = synthetic(12, seed=5)
    short = next(d for d in ds if len(d.exchanges) == 1)
    long = max(ds, key=lambda d: len(d.exchanges))
    alone = small_model.predict([short])[0]
    together = small_model.predict([long, short])[1]
    assert alone[0]["defect"] == pytest.approx(together[0]["defect"], abs=1e-5)
    assert alone[0]["intent"][1] == pytest.approx(together[0]["intent"][1], abs=1e-5)


# -- the model -----------------------------------------------------------------------------
def test_fine_tuning_lowers_the_loss(small_model):
    h = small_model.history_
    assert len(h["pretrain"]) >= 5 and len(h["finetune"]) >= 20
    assert np.mean(h["finetune"][-5:]) < 0.6 * np.mean(h["finetune"][:5])


def test_pretraining_on_swapped_replies_lowers_its_loss():
    ds = synthetic(48)
    m = LabelModel(**{**SMALL, "pretrain_epochs": 10, "epochs": 0, "corruptions": ("swap",)}).fit(ds)
    h = m.history_["pretrain"]
    per_epoch = len(plan_batches([len(d.exchanges) for d in ds], SMALL["batch_turns"], None))
    assert len(h) == 10 * per_epoch and not m.history_["finetune"]
    assert np.mean(h[-12:]) < 0.75 * np.mean(h[:12])


def test_model_learns_the_synthetic_labels(small_model):
    ds = synthetic(40, seed=9)
    m = evaluate_predictions(small_model.predict(ds), reference_targets(ds))
    assert m["defect"]["auc"] >= 0.95 and m["defect"]["accuracy"] >= 0.8 and m["intent"]["accuracy"] >= 0.9
    assert m["slots"]["slot_types"]["f1"] >= 0.8 and m["same_goal"]["auc"] >= 0.9


def test_save_load_and_seeding_give_identical_labels(small_model, tmp_path):
    ds = synthetic(10, seed=4)
    small_model.save(tmp_path / "m")
    assert {p.name for p in (tmp_path / "m").iterdir()} == {"config.json", "model.safetensors", "tokenizer"}
    back = LabelModel.load(tmp_path / "m")
    assert back.predict(ds) == small_model.predict(ds)
    again = LabelModel(**SMALL).fit(synthetic(80))
    assert again.predict(ds) == small_model.predict(ds)


def test_bad_use_is_refused(tmp_path):
    with pytest.raises(NotFittedError):
        LabelModel().predict(synthetic(1))
    with pytest.raises(InvalidInputError, match="labelled turn"):
        LabelModel(**SMALL).fit([Dialogue("x", [Exchange("hi")])])
    with pytest.raises(InvalidInputError, match="corruptions"):
        LabelModel(**{**SMALL, "corruptions": ("melt",)}).fit(synthetic(2))
    with pytest.raises(SelflearnError, match="label-model"):
        LabelModel.load(tmp_path)


def test_context_free_variant_trains_and_labels():
    m = LabelModel(**{**SMALL, "context": False, "epochs": 1, "pretrain_epochs": 0}).fit(synthetic(20))
    p = m.predict(synthetic(3, seed=1))
    assert all(0.0 <= r["defect"] <= 1.0 for d in p for r in d) and not m.history_["pretrain"]


# -- metrics and thresholds ----------------------------------------------------------------
def test_precision_coverage_hand_worked():
    conf = np.array([0.99, 0.9, 0.8, 0.7])
    right = np.array([True, True, False, True])
    curve = precision_coverage(conf, right, total=8)
    assert curve[0] == {"threshold": 0.99, "count": 1, "precision": 1.0, "coverage": 0.125}
    assert curve[-1] == {"threshold": 0.7, "count": 4, "precision": 0.75, "coverage": 0.5}
    assert threshold_for(curve, 0.95)["coverage"] == 0.25 and threshold_for(curve, 1.01) is None
    flat = precision_coverage(np.ones(10), np.arange(10) < 9, total=10)  # labels without a confidence: one point
    assert flat == [{"threshold": 1.0, "count": 10, "precision": 0.9, "coverage": 1.0}]


def test_weak_labels_scored_against_themselves_are_perfect_and_slots_count_values():
    ds = synthetic(10)
    m = evaluate_predictions(labels_as_predictions(ds), reference_targets(ds))
    assert m["defect"]["f1"] == 1.0 and m["intent"]["macro_f1"] == 1.0 and m["slots"]["slot_values"]["f1"] == 1.0
    pred = labels_as_predictions(ds)
    for rows in pred:
        for r in rows:
            r["slots"] = [{"name": s["name"], "value": s["value"] + "x"} for s in r["slots"]]
    m = evaluate_predictions(pred, reference_targets(ds))
    assert m["slots"]["slot_types"]["f1"] == 1.0 and m["slots"]["slot_values"]["f1"] == 0.0


def test_apply_keeps_only_confident_labels_and_exports_nlu_rows(small_model):
    ds = synthetic(30, seed=6)
    metrics = evaluate_predictions(small_model.predict(ds), reference_targets(ds))
    small_model.calibration_ = {"source": "test", "curves": {t: m["curve"] for t, m in metrics.items() if isinstance(m, dict) and "curve" in m}}
    strict, s1 = apply_labels(small_model, ds, min_precision=1.0)
    loose, s2 = apply_labels(small_model, ds, min_precision=0.5)
    for t in ("defect", "intent"):
        assert s1["tasks"][t]["coverage"] <= s2["tasks"][t]["coverage"]
    assert s2["tasks"]["defect"]["coverage"] > 0.5
    rows = nlu_examples(loose)
    assert rows and all(set(r) == {"text", "intent", "slots", "users"} for r in rows)
    with pytest.raises(InvalidInputError, match="min_precision"):
        apply_labels(small_model, ds, min_precision=0)


# -- the world's truth as reference labels -------------------------------------------------
def test_weak_labels_against_the_worlds_truth(online_model):
    from selflearn.world.gold import attach_truth
    from selflearn.world.truth import read_truth

    with Store(online_model["dir"] / "s.duckdb") as st:
        weak = store_dialogues(st, limit=400)
        plain = store_dialogues(st, weak_labels=False, limit=400)
        ids = st.pseudonyms()
    gold = attach_truth(plain, read_truth(online_model["dir"] / "sim", ids))
    assert len(gold) == len(plain) == 400
    m = evaluate_predictions(labels_as_predictions(weak), reference_targets(gold))
    assert 0.8 <= m["defect"]["accuracy"] < 1.0 and m["intent"]["accuracy"] > 0.7
    assert m["intent"]["coverage_of_reference"] < 1.0  # weak intents exist only for goals that worked


# -- the CLI -------------------------------------------------------------------------------
def test_cli_train_evaluate_apply(tmp_path):
    data = tmp_path / "d.jsonl"
    write_dialogues(synthetic(24), data)
    with data.open("a") as f:
        f.write("{broken\n")
    r = CliRunner().invoke(app, ["labels", "train", "--data", str(data), "--out", str(tmp_path / "m"), "--text-layers", "1",
                                 "--epochs", "1", "--pretrain-epochs", "0", "--json"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "d.jsonl.quarantine.jsonl").exists()
    r = CliRunner().invoke(app, ["labels", "evaluate", "--model", str(tmp_path / "m"), "--data", str(data), "--json", "--calibrate"])
    assert r.exit_code == 0, r.output
    metrics = json.loads(r.stdout[r.stdout.index("{"):])
    assert {"accuracy", "macro_f1", "per_class", "auc"} <= set(metrics["defect"]) and "slots" in metrics
    r = CliRunner().invoke(app, ["labels", "apply", "--model", str(tmp_path / "m"), "--data", str(data), "--out", str(tmp_path / "o.jsonl"),
                                 "--min-precision", "0.9", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout[r.stdout.index("{"):])["calibration"] == "evaluation labels"
    assert read_dialogues(tmp_path / "o.jsonl")[0]
    r = CliRunner().invoke(app, ["labels", "evaluate", "--model", str(tmp_path / "nothing"), "--data", str(data)])
    assert r.exit_code == 2 and "label-model" in r.output
    r = CliRunner().invoke(app, ["labels", "train", "--data", str(data), "--store", str(tmp_path / "s.duckdb")])
    assert r.exit_code == 2 and "exactly one source" in r.output


def test_nlu_rows_need_a_successful_goal_and_an_intent_and_say_when_slots_are_unknown():
    ok = {"goal_success": 1, "intent": "music_play", "slots": [{"name": "song_name", "value": "y"}]}
    ds = [Dialogue("a", [Exchange("play x", labels={"goal_success": 1, "intent": "music_play"}),  # slots not labelled
                         Exchange("play y", labels=ok), Exchange("play y", labels=ok),  # counted once
                         Exchange("play z", labels={**ok, "goal_success": 0}), Exchange("", labels=ok)])]
    assert nlu_examples(ds) == [{"text": "play x", "intent": "music_play", "slots": None, "users": ["a"]},
                                {"text": "play y", "intent": "music_play", "slots": ok["slots"], "users": ["a"]}]


def test_nlu_sentences_without_slot_labels_teach_the_intent_only():
    from selflearn.world.nlu import JointNLU
    from selflearn.world.retrain import tagged_sentence

    assert tagged_sentence("play x", "music_play", None).tags is None
    assert tagged_sentence("play hey jude", "music_play", [("song_name", "hey jude")]).tags == ("", "song_name", "song_name")
    assert tagged_sentence("play x", "music_play", [("song_name", "absent words")]) is None
    nlu = JointNLU()
    nlu.intents_, nlu.tags_ = ["music_play"], ["O", "B-song_name", "I-song_name"]
    (ex,) = nlu._examples([tagged_sentence("play x", "music_play", None)])
    assert ex == (["play", "x"], 0, [-100, -100])


def test_intents_the_nlu_did_not_say_get_their_own_curve_and_threshold():
    from selflearn.labels.training import apply_labels

    def ex(nlu, ref):
        return Exchange("play it", "ok", {"intent": nlu}, {"intent": ref})

    # the model agrees with the NLU on 20 turns (right) and overrides it on 10 (right on the 5 most confident only)
    data = [Dialogue(f"d{i}", [ex("play_music", "play_music")]) for i in range(20)]
    data += [Dialogue(f"c{i}", [ex("play_radio", "play_music" if i < 5 else "play_radio")]) for i in range(10)]
    pred = [[{"intent": ("play_music", 0.99)}] for _ in range(20)] + [[{"intent": ("play_music", 0.98 - 0.01 * i)}] for i in range(10)]
    m = evaluate_predictions(pred, reference_targets(data))
    assert m["intent_change"]["n"] == 10 and m["intent_change"]["accuracy"] == 0.5
    assert max(p["precision"] for p in m["intent_change"]["curve"]) == 1.0

    class Fixed:
        calibration_ = {"curves": {"intent": m["intent"]["curve"], "intent_change": m["intent_change"]["curve"]}}

        def predict(self, dialogues):
            return pred

    labelled, summary = apply_labels(Fixed(), data, min_precision=0.95)
    kept = [d.exchanges[0].labels.get("intent") for d in labelled]
    assert kept[:20] == ["play_music"] * 20  # agreeing with the NLU: the intent curve's threshold
    assert kept[20:25] == ["play_music"] * 5 and kept[25:] == [None] * 5  # overriding it: only as confident as its own curve allows
    assert summary["tasks"]["intent"]["threshold_where_it_differs_from_nlu"] == 0.94


def test_goal_intents_are_carried_back_from_the_goals_last_turn():
    from selflearn.labels.goals import carry_goal_intents

    rows = [{"same_goal": None, "intent": ("play_radio", 0.9), "goal_success": 0.3},
            {"same_goal": 0.9, "intent": ("play_radio", 0.6), "goal_success": 0.8},
            {"same_goal": 0.8, "intent": ("play_music", 0.95), "goal_success": 0.9},
            {"same_goal": 0.1, "intent": ("weather_query", 0.99), "goal_success": 0.99}]
    out = carry_goal_intents(rows)
    assert out[0]["goal_intent"] == ("play_music", pytest.approx(0.9 * 0.8 * 0.9 * 0.95))  # every link, the goal's success, the intent
    assert out[1]["goal_intent"] == ("play_music", pytest.approx(0.8 * 0.9 * 0.95))
    assert out[2]["goal_intent"] is None and out[3]["goal_intent"] is None  # a goal's last turn keeps its own intent
    assert rows[0].get("goal_intent") is None  # pure: the input is not changed
    assert carry_goal_intents([]) == []


def test_a_carried_goal_intent_labels_the_failed_attempt_at_its_own_threshold():
    from selflearn.labels.training import apply_labels, nlu_examples

    # a failed attempt heard "play radio" (NLU: play_radio), the retry worked as play_music
    data = [Dialogue(f"d{i}", [Exchange("play radio", "ok", {"intent": "play_radio"}, {"intent": "play_music"}),
                               Exchange("play music", "ok", {"intent": "play_music"}, {"intent": "play_music"})]) for i in range(10)]
    pred = [[{"intent": ("play_radio", 0.5), "goal_success": 0.9, "goal_intent": ("play_music", 0.9 - 0.01 * i if i < 6 else 0.5)},
             {"intent": ("play_music", 0.99), "goal_success": 0.99, "same_goal": 0.95, "goal_intent": None}] for i in range(10)]
    # calibrated on references where the 6 most confident carried intents are right
    ref_data = [Dialogue(d.dialogue_id, [Exchange("play radio", "ok", {"intent": "play_radio"}, {"intent": "play_music" if i < 6 else "play_radio"}),
                                         d.exchanges[1]]) for i, d in enumerate(data)]
    m = evaluate_predictions(pred, reference_targets(ref_data))
    assert m["goal_intent"]["n"] == 10 and m["goal_intent"]["accuracy"] == 0.6

    class Fixed:
        calibration_ = {"curves": {"goal_intent": m["goal_intent"]["curve"]}}

        def predict(self, dialogues):
            return pred

    labelled, summary = apply_labels(Fixed(), data, min_precision=0.95)
    first = [d.exchanges[0].labels for d in labelled]
    assert [x.get("intent") for x in first] == ["play_music"] * 6 + [None] * 4
    assert all(x["goal_success"] == 1 for x in first[:6])  # carried from a goal that succeeded
    assert summary["tasks"]["goal_intent"]["coverage"] == 0.3
    rows = nlu_examples(labelled, corrections_only=True)
    assert rows == [{"text": "play radio", "intent": "play_music", "slots": None, "users": [f"d{i}" for i in range(6)]}]  # the correction the NLU can learn
