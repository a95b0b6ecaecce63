"""Rephrase examples from the store, weak labels, and the span model (tiny training)."""

from __future__ import annotations

import pytest
from conftest import make_turn, raw_ids, write_jsonl

from selflearn.errors import SelflearnError, InvalidInputError, NotFittedError
from selflearn.rephrase import ContextualRephraseDetector, Example, load_examples, weak_label
from selflearn.signals import compute_signals
from selflearn.store.importer import import_files


def _t(sid, i, second, text, barge=False):
    return make_turn(session_id=sid, turn_index=i, timestamp=f"2026-03-02T08:{second // 60:02d}:{second % 60:02d}Z",
                     utterance={"text": text}, feedback={"barge_in": barge})


def test_examples_and_weak_labels_from_the_store(store, tmp_path):
    turns = [
        _t("a", 0, 0, "play we don't talk any more", barge=True), _t("a", 1, 6, "play we don't talk anymore by charlie puth"),
        _t("a", 2, 200, "what's the weather"),
        _t("b", 0, 0, "set an alarm for seven"),
    ]
    import_files(store, [write_jsonl(tmp_path / "t.jsonl", turns)])
    compute_signals(store)
    raw = raw_ids(store, "a", "b")
    ex = {(raw[e.session_id], e.turn_index): e for e in load_examples(store.reader(), max_following=3, window_s=120)}
    a0 = ex[("a", 0)]
    assert [f[0] for f in a0.following] == [1] and a0.following[0][2] == 6  # turn 2 is outside the window
    assert weak_label(a0) == 0
    assert ex[("a", 1)].following == () and weak_label(ex[("a", 1)]) == -1
    assert weak_label(ex[("b", 0)]) == -1
    assert weak_label(Example("c", 0, "x", ((1, "y", 3.0),), 0.3)) is None  # unsure: unlabelled
    assert weak_label(Example("c", 0, "x", ((1, "y", 90.0),), 0.9)) == -1  # defective, but no quick retry


def _toy(n: int) -> tuple[list[Example], list[int]]:
    """The rephrase is the following turn that shares the anchor's topic word; others are unrelated."""
    topics = ["jazz", "lights", "alarm", "weather", "pizza", "news", "timer", "radio"]
    exs, labels = [], []
    for k in range(n):
        t = topics[k % len(topics)]
        other = topics[(k + 3) % len(topics)]
        if k % 2:
            exs.append(Example(f"s{k}", 0, f"play the {t}", ((1, f"tell me the {other}", 40.0), (2, f"please {t} now", 50.0)), 0.9))
            labels.append(1)
        else:
            exs.append(Example(f"s{k}", 0, f"play the {t}", ((1, f"tell me the {other}", 40.0),), 0.1))
            labels.append(-1)
    return exs, labels


@pytest.fixture(scope="module")
def fitted():
    exs, labels = _toy(64)
    return ContextualRephraseDetector(epochs=4, batch_size=16, lr=1e-4, random_state=0).fit(exs, labels), exs, labels


def test_span_model_learns_a_toy_task(fitted):
    model, exs, labels = fitted
    predicted = [k for k, _ in model.predict(exs)]
    assert sum(p == y for p, y in zip(predicted, labels)) / len(labels) >= 0.9


def test_save_load_round_trip_and_seeding(fitted, tmp_path):
    model, exs, _ = fitted
    model.save(tmp_path / "m")
    again = ContextualRephraseDetector.load(tmp_path / "m")
    assert [k for k, _ in again.predict(exs)] == [k for k, _ in model.predict(exs)]
    for (_, p), (_, q) in zip(again.predict(exs), model.predict(exs)):
        assert p == pytest.approx(q, abs=1e-5)
    twin = ContextualRephraseDetector(epochs=4, batch_size=16, lr=1e-4, random_state=0).fit(*_toy(64))
    assert [k for k, _ in twin.predict(exs)] == [k for k, _ in model.predict(exs)]


def test_bad_input_is_rejected(tmp_path):
    exs, labels = _toy(4)
    with pytest.raises(InvalidInputError, match="labels"):
        ContextualRephraseDetector().fit(exs, labels[:2])
    with pytest.raises(InvalidInputError, match="index a following turn"):
        ContextualRephraseDetector().fit(exs[:1], [3])
    with pytest.raises(NotFittedError):
        ContextualRephraseDetector().predict(exs)
    with pytest.raises(SelflearnError, match="rephrase-detector"):
        ContextualRephraseDetector.load(tmp_path)


def test_distractors_never_become_the_rephrase():
    from selflearn.rephrase import with_distractors

    exs, labels = _toy(200)
    out_e, out_l = with_distractors(exs, labels, share=1.0, seed=1)
    assert len(out_e) == 200
    for ex, new, lab, new_lab in zip(exs, out_e, labels, out_l):
        assert len(new.following) == len(ex.following) + 1
        fake = [f for f in new.following if f[0] == -1]
        assert len(fake) == 1
        if lab >= 0:
            assert new.following[new_lab] == ex.following[lab]  # the label follows its turn
        else:
            assert new_lab == -1
        gaps = [f[2] for f in new.following]
        assert gaps == sorted(gaps)
    assert with_distractors(exs, labels, share=0.0) == (exs, labels)
