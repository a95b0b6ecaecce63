"""Feedback signals on hand-built sessions."""

from __future__ import annotations

import pyarrow as pa
import pytest
from conftest import make_turn, raw_ids, write_jsonl

from selflearn.errors import InvalidInputError
from selflearn.signals import SignalConfig, compute_signals, evaluate_defect_score
from selflearn.store.importer import import_files


def _turn(sid, i, second, text, *, status="success", barge=False, explicit=None, prompted=False):
    fb = {"barge_in": barge, "explicit": explicit, "prompted": prompted}
    return make_turn(
        session_id=sid, turn_index=i, timestamp=f"2026-03-02T08:00:{second:02d}Z",
        utterance={"text": text, "asr_confidence": 0.9},
        response={"status": status, "text": "ok", "action": None},
        feedback=fb,
    )


@pytest.fixture
def signals(store, tmp_path):
    turns = [
        # a: wrong song, barge-in, quick rephrase that works, then an unrelated request much later
        _turn("a", 0, 0, "play we don't talk any more", barge=True),
        _turn("a", 1, 6, "play we don't talk anymore by charlie puth"),
        _turn("a", 2, 59, "what's the weather tomorrow"),
        # b: explicit negative, then the user gives up after a failure
        _turn("b", 0, 0, "call jon", explicit="negative"),
        _turn("b", 1, 5, "call john smith", status="failure"),
        # c: a success confirmed by the user when asked
        _turn("c", 0, 0, "set a timer for ten minutes", explicit="positive", prompted=True),
        # d: a similar request, but too late to be a rephrase
        _turn("d", 0, 0, "turn on the lights"),
        _turn("d", 1, 55, "turn on the light"),
    ]
    import_files(store, [write_jsonl(tmp_path / "t.jsonl", turns)])
    compute_signals(store, SignalConfig(window_s=30))
    cur = store.reader().execute("SELECT * FROM signals ORDER BY session_id, turn_index")
    names = [d[0] for d in cur.description]
    rows = [dict(zip(names, r)) for r in cur.fetchall()]
    raw = raw_ids(store, "a", "b", "c", "d")
    return {(raw[r["session_id"]], r["turn_index"]): r for r in rows}


def test_barge_in_and_rephrase(signals):
    a0 = signals[("a", 0)]
    assert a0["barge_in"] and a0["rephrase_candidate"] and a0["next_gap_s"] == 6
    assert a0["defect_score"] == pytest.approx(1 - (1 - 0.7) * (1 - 0.6))
    assert not signals[("a", 1)]["rephrase_candidate"]  # next request is unrelated and late
    assert signals[("a", 2)]["defect_score"] == 0


def test_explicit_negative_and_abandonment(signals):
    assert signals[("b", 0)]["explicit_negative"] and signals[("b", 0)]["defect_score"] >= 0.95
    b1 = signals[("b", 1)]
    assert b1["system_failure"] and b1["abandoned"] and b1["next_turn"] is None
    assert b1["defect_score"] == pytest.approx(1 - (1 - 0.7) * (1 - 0.4))


def test_prompted_positive_damps_and_late_similar_is_no_rephrase(signals):
    c0 = signals[("c", 0)]
    assert c0["explicit_positive"] and c0["prompted"] and c0["defect_score"] == 0
    d0 = signals[("d", 0)]
    assert d0["next_similarity"] > 0.8 and not d0["rephrase_candidate"]


def test_precision_recall_against_a_truth_table(store, signals):
    truth = pa.table({
        "session_id": [store.pseudonyms().of(s) for s in ["a", "a", "a", "b", "b", "c", "d", "d"]],
        "turn_index": [0, 1, 2, 0, 1, 0, 0, 1],
        "defective": [True, False, False, True, True, False, True, False],
    })
    res = evaluate_defect_score(store.reader(), truth, thresholds=(0.5,))["0.5"]
    assert res["precision"] == 1.0 and res["recall"] == pytest.approx(3 / 4) and res["turns"] == 8


@pytest.mark.parametrize("bad", [{"window_s": 0}, {"w_barge_in": 1.5}, {"min_similarity": -0.1}])
def test_bad_config_is_rejected(bad):
    with pytest.raises(InvalidInputError, match="fix"):
        SignalConfig(**bad).check()
