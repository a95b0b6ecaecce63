"""Satisfaction estimation on rated dialogues: the USS importer and its protocol, the online
(causal) mode reading nothing after turn t, the frozen encoder's on-disk vectors, batches and the
data-sized schedule, checkpoint choice on validation, balanced classes, the agreement metrics, the
evaluate command's per-turn predictions, and loading a model saved in the previous format."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
from typer.testing import CliRunner

from selflearn import metrics
from selflearn.cli.main import app
from selflearn.errors import InvalidInputError
from selflearn.labels import Dialogue, Exchange, LabelModel, evaluate_predictions, read_dialogues, reference_targets
from selflearn.labels.feeding import VectorCache, plan_batches, training_schedule
from selflearn.labels.feeding import class_weights as _class_weights
from selflearn.labels.batches import Vocab
from selflearn.labels.rated import import_rated, read_uss, satisfaction_class, split_dialogues
from selflearn.models.backbone import SentenceEncoder

from test_labels import SMALL, synthetic

USS = """USER\tHello!\t\t4,3,4,3
SYSTEM\thello! what do you like?\t\t
USER\tI like dramas\t\t3,3,3
USER\tand comedies too\t\t3,2,2
SYSTEM\tTry "The Notebook (2004)"\t\t
USER\tThanks, great pick!\t\t5,4,4
USER\tOVERALL\t\t4,4,3

SYSTEM\tDo you like movies like Thor?\tENTITY_NAME\t
USER\tNo, I don't like Thor.\tENTITY_NAME\t3,2,2
SYSTEM\tOk. Why?\tOTHER\t

USER\thi\t\t3,3,3
BOT\tthis line breaks the format\t\t
USER\tbye\t\t3,3,3

SYSTEM\tWhat do you want to watch?\t\t
USER\tsomething scary\t\t3,3,3
SYSTEM\tSorry, I don't know any\t\t
USER\tthat's useless\t\t2,1,2
"""

REPLIES = {"satisfied": "here you go, enjoy", "neutral": "let me check that", "dissatisfied": "sorry, I did not get that"}


def rated(n: int, seed: int = 0) -> list[Dialogue]:
    """Dialogues whose turn t is rated by the reply it reacts to (the system's previous turn), as USS
    annotators rate: a 'sorry' reply makes the next turn dissatisfied, 'here you go' satisfied."""
    r = random.Random(seed)
    out = []
    for k in range(n):
        ex, prev = [], "neutral"
        for t in range(r.randint(2, 5)):
            reply = r.choice(list(REPLIES))
            ex.append(Exchange(r.choice(["play something", "what else", "ok", "another one please"]), REPLIES[reply], {},
                               {"satisfaction": prev}, t))
            prev = reply
        out.append(Dialogue(f"r{k}", ex, label=prev))
    return out


FROZEN = dict(mode="online", encoder="frozen", d_model=32, dialogue_layers=1, pretrain_epochs=0, epochs=6, batch_turns=32, head_lr=3e-3,
              random_state=0)


@pytest.fixture(scope="module")
def online_frozen():
    return LabelModel(**FROZEN).fit(rated(60), valid=rated(12, seed=5))


# -- the importer ----------------------------------------------------------------------
def test_mean_rating_gives_the_protocols_three_classes():
    assert satisfaction_class([4, 3, 4, 3]) == "satisfied"  # mean 3.5
    assert satisfaction_class([3, 3, 3]) == "neutral"
    assert satisfaction_class([3, 2, 2]) == "dissatisfied"
    assert satisfaction_class([2, 4]) == "neutral"  # mean exactly the middle
    assert satisfaction_class([6, 7], middle=7.0) == "dissatisfied"  # another scale's middle


def test_uss_reader_keeps_dialogues_rates_turns_and_quarantines_a_bad_one(tmp_path):
    f = tmp_path / "x.txt"
    f.write_text(USS)
    dialogues, bad = read_uss(f)
    assert len(dialogues) == 3 and len(bad) == 1 and "BOT" in bad[0]["reason"] and "fix:" in bad[0]["reason"]
    first = dialogues[0]
    assert [e.labels["satisfaction"] for e in first.exchanges] == ["satisfied", "neutral", "dissatisfied", "satisfied"]
    assert first.exchanges[0].labels["ratings"] == [4, 3, 4, 3] and first.label == "satisfied"  # OVERALL 4,4,3
    assert first.exchanges[1].system == "" and first.exchanges[2].system.startswith("Try")  # consecutive user turns
    assert dialogues[1].exchanges[0].system == "Ok. Why?"  # a system opening before the first user turn is dropped


def test_import_keeps_dialogues_with_two_user_turns_and_splits_by_dialogue(tmp_path):
    f = tmp_path / "x.txt"
    f.write_text(USS)
    s = import_rated(f, tmp_path / "out", split="1:0:1")
    assert s["dialogues"] == 3 and s["kept"] == 2 and s["quarantined"] == 1  # the one-turn dialogue is dropped
    parts = {k: read_dialogues(tmp_path / "out" / f"{k}.jsonl")[0] if v["dialogues"] else [] for k, v in s["parts"].items()}
    assert sum(len(p) for p in parts.values()) == 2 and not parts["valid"]
    assert parts["train"][0].exchanges[0].labels["satisfaction"] in ("dissatisfied", "neutral", "satisfied")


def test_split_is_seeded_and_independent_of_the_rest_of_the_file():
    ds = [Dialogue(f"d{i}", [Exchange("x")]) for i in range(200)]
    a = split_dialogues(ds, (0.8, 0.1, 0.1), seed=3)
    b = split_dialogues(list(reversed(ds)), (0.8, 0.1, 0.1), seed=3)
    assert [d.dialogue_id for d in a["test"]] == [d.dialogue_id for d in b["test"]]
    assert (len(a["train"]), len(a["valid"]), len(a["test"])) == (160, 20, 20)
    assert {d.dialogue_id for d in split_dialogues(ds, (0.8, 0.1, 0.1), seed=4)["test"]} != {d.dialogue_id for d in a["test"]}


def test_import_command_writes_the_splits_and_refuses_a_bad_split(tmp_path):
    f = tmp_path / "x.txt"
    f.write_text(USS)
    r = CliRunner().invoke(app, ["labels", "import-uss", str(f), "--out", str(tmp_path / "o"), "--json"])
    assert r.exit_code == 0, r.output
    assert {p.name for p in (tmp_path / "o").glob("*.jsonl")} >= {"train.jsonl", "valid.jsonl", "test.jsonl", "quarantine.jsonl"}
    r = CliRunner().invoke(app, ["labels", "import-uss", str(f), "--out", str(tmp_path / "o"), "--split", "8:1"])
    assert r.exit_code != 0 and "split='8:1'" in r.output and "8:1:1" in r.output


# -- the online mode reads nothing after turn t ----------------------------------------------
def _later_changed(d: Dialogue, t: int) -> Dialogue:
    """``d`` with everything after user turn t changed: the reply to t, later turns, the label."""
    ex = [Exchange(e.user, e.system, dict(e.features), dict(e.labels), e.turn_id) for e in d.exchanges[: t + 1]]
    ex[t].system = "a completely different reply"
    ex.append(Exchange("something else entirely, much longer than before", "and another reply", {"status": "failure", "gap_s": 1.0}))
    return Dialogue(d.dialogue_id, ex, "dissatisfied")


@pytest.mark.parametrize("encoder", ["frozen", "finetune"])
def test_online_predictions_at_turn_t_ignore_everything_after_it(encoder, online_frozen):
    if encoder == "frozen":
        model = online_frozen
    else:
        model = LabelModel(**{**SMALL, "mode": "online", "epochs": 1}).fit(synthetic(16))
    ds = rated(6, seed=11) if encoder == "frozen" else synthetic(6, seed=11)
    full = model.predict(ds)
    for d, rows in zip(ds, full):
        for t in range(len(d.exchanges)):
            cut = model.predict([Dialogue(d.dialogue_id, d.exchanges[: t + 1], d.label)])[0]
            changed = model.predict([_later_changed(d, t)])[0]
            for task in ("defect", "goal_success", "satisfaction"):
                a, b, c = rows[t][task], cut[t][task], changed[t][task]
                if isinstance(a, tuple):
                    assert a[0] == b[0] == c[0] and a[1] == pytest.approx(b[1], abs=1e-5) and a[1] == pytest.approx(c[1], abs=1e-5)
                else:
                    assert a == pytest.approx(b, abs=1e-5) and a == pytest.approx(c, abs=1e-5)


def test_the_offline_mode_does_read_later_turns():
    """The no-leak test above can fail: the offline model's labels of turn 0 move when later turns change."""
    model = LabelModel(**{**FROZEN, "mode": "offline", "epochs": 2}).fit(rated(20))
    d = rated(1, seed=3)[0]
    a, b = model.predict([d])[0][0]["satisfaction_probabilities"], model.predict([_later_changed(d, 0)])[0][0]["satisfaction_probabilities"]
    assert max(abs(a[k] - b[k]) for k in a) > 1e-4


def test_online_model_learns_satisfaction_from_the_reply_it_reacts_to(online_frozen):
    ds = rated(40, seed=7)
    m = evaluate_predictions(online_frozen.predict(ds), reference_targets(ds))["satisfaction"]
    assert m["accuracy"] >= 0.8 and m["kappa"] >= 0.6 and m["spearman"] >= 0.6
    assert online_frozen.net_config_.encoder == "frozen" and online_frozen.net_config_.causal


# -- batches, vectors on disk, schedule, checkpoint, class weights -------------------------------
def test_batches_cover_every_dialogue_once_within_the_turn_budget():
    lengths = [random.Random(k).randint(1, 30) for k in range(300)] + [90]
    for rng in (None, random.Random(1)):
        plan = plan_batches(lengths, 64, rng)
        assert sorted(i for b in plan for i in b) == list(range(len(lengths)))
        assert all(sum(lengths[i] for i in b) <= 64 or len(b) == 1 for b in plan)
    assert [i for b in plan_batches(lengths, 64, None) for i in b] == list(range(len(lengths)))  # inference keeps the order


def test_schedule_follows_the_data_size():
    assert training_schedule(43, "frozen", None) == (35, 43)  # a small set: many epochs, one evaluation each
    epochs, every = training_schedule(9000, "frozen", None)  # 100k dialogues: one epoch, ten evaluations in it
    assert epochs == 1 and every == 900
    assert training_schedule(10, "finetune", 2) == (2, 2)


def test_vectors_on_disk_are_the_encoders_and_the_file_goes_away():
    ds = rated(5, seed=2)
    enc = SentenceEncoder()
    with VectorCache(ds, "online", enc, chunk=3) as cache:
        path = cache.path
        u, r = cache.get([3, 1])
        assert path.exists()
    assert not path.exists()
    want = [e.user for i in (3, 1) for e in ds[i].exchanges]
    prev = [ds[i].exchanges[t - 1].system if t else "" for i in (3, 1) for t in range(len(ds[i].exchanges))]
    assert np.allclose(u, enc.encode(want, max_length=64), atol=2e-3) and np.allclose(r, enc.encode(prev, max_length=64), atol=2e-3)


def test_the_checkpoint_is_the_best_validation_one_and_patience_stops(online_frozen):
    h = online_frozen.history_["valid"]
    best = max(x["mean_macro_f1"] for x in h)
    assert online_frozen.best_step_ == next(x["step"] for x in h if x["mean_macro_f1"] == best)
    m = LabelModel(**{**FROZEN, "epochs": 30, "patience": 1}).fit(rated(30), valid=rated(8, seed=4))
    evaluations = len(m.history_["valid"])
    assert evaluations < 30 and len(m.history_["finetune"]) < 30 * m.schedule_["steps_per_epoch"]


def test_balanced_class_weights_are_inverse_frequency():
    ds = [Dialogue("a", [Exchange("x", labels={"satisfaction": "neutral"})] * 6 + [Exchange("y", labels={"satisfaction": "satisfied"})] * 2)]
    w = _class_weights(ds, Vocab.fit(ds))
    assert w["satisfaction"] == pytest.approx([8 / (2 * 6), 8 / (2 * 2)], abs=1e-4)


def test_mixed_satisfaction_scales_are_refused():
    ds = [Dialogue("a", [Exchange("x", labels={"satisfaction": 3}), Exchange("y", labels={"satisfaction": "neutral"})])]
    with pytest.raises(InvalidInputError, match="mix integers and classes"):
        LabelModel(**FROZEN).fit(ds)


def test_frozen_encoder_refuses_slot_labels():
    with pytest.raises(InvalidInputError, match="slot"):
        LabelModel(**{**FROZEN, "mode": "offline"}).fit(synthetic(4))


# -- metrics and the evaluate command ------------------------------------------------------------
def test_agreement_metrics_hand_worked():
    y = ["a", "a", "b", "c"]
    p = ["a", "b", "b", "c"]
    out = metrics.agreement(y, p, ["a", "b", "c"], order=["a", "b", "c"])
    # observed agreement 3/4; expected (2*1 + 1*2 + 1*1)/16 = 5/16 -> kappa = (12/16 - 5/16) / (11/16)
    assert out["kappa"] == pytest.approx(7 / 11)
    # ranks with ties averaged: y -> [1.5, 1.5, 3, 4], p -> [1, 2.5, 2.5, 4]
    assert out["spearman"] == pytest.approx(np.corrcoef([1.5, 1.5, 3, 4], [1, 2.5, 2.5, 4])[0, 1])
    assert metrics.agreement(y, ["a"] * 4, ["a", "b", "c"], order=["a", "b", "c"])["spearman"] is None
    assert metrics.agreement(y, p, ["a", "b", "c"])["spearman"] is None  # unordered classes: no rank correlation


def test_evaluate_reports_the_mode_and_writes_per_turn_predictions(online_frozen, tmp_path):
    from selflearn.labels import write_dialogues

    online_frozen.save(tmp_path / "m")
    ds = rated(5, seed=8)
    write_dialogues(ds, tmp_path / "t.jsonl")
    r = CliRunner().invoke(app, ["labels", "evaluate", "--model", str(tmp_path / "m"), "--data", str(tmp_path / "t.jsonl"),
                                 "--predictions", str(tmp_path / "p.jsonl"), "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["mode"] == "online" and {"uar", "kappa", "spearman", "macro_precision", "macro_recall"} <= set(out["satisfaction"])
    rows = [json.loads(x) for x in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert len(rows) == sum(len(d.exchanges) for d in ds)
    assert rows[0]["satisfaction"]["reference"] == ds[0].exchanges[0].labels["satisfaction"]
    assert set(rows[0]["satisfaction"]) == {"label", "confidence", "reference"}


def test_a_model_saved_in_the_previous_format_loads_and_labels_the_same(tmp_path):
    m = LabelModel(**{**SMALL, "epochs": 1}).fit(synthetic(12))
    m.save(tmp_path / "m")
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    params = {k: v for k, v in cfg["params"].items() if k not in ("mode", "encoder", "batch_turns", "class_weight", "patience")}
    params["batch_size"] = 8
    net = {k: v for k, v in cfg["learned"]["net"].items() if k not in ("causal", "encoder")}
    cfg.update(format_version=2, params=params, learned={**cfg["learned"], "net": net})
    (tmp_path / "m" / "config.json").write_text(json.dumps(cfg))
    old = LabelModel.load(tmp_path / "m")
    assert old.mode == "offline" and old.batch_turns == 32
    ds = synthetic(4, seed=2)
    assert [r["defect"] for d in m.predict(ds) for r in d] == pytest.approx([r["defect"] for d in old.predict(ds) for r in d])
