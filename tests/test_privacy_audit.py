"""The privacy audit: the attacks' math, canaries (planting, exposure), the inversion attack, and the
audit of a real model end to end (CLI, release gate). The attacks are tested both ways: a model
that memorised its data must be caught, one that never saw it must not be."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from selflearn.cli.main import app
from selflearn.errors import InvalidInputError
from selflearn.governance.audit import AuditConfig, CachedEncoder, canary_audit, membership
from selflearn.privacy.canaries import CanaryFormat, exposure, load_canaries, make_canaries, plant, save_canaries
from selflearn.privacy.membership import advantage_bound, advantage_null, attack_metrics, heldout_advantage, lira_scores, logit_confidence, user_scores, users_to_confirm
from selflearn.governance.audit_targets import AuditTarget, Records

runner = CliRunner()


# -- the attacks' math ---------------------------------------------------------------------------
def test_attack_metrics_separate_perfect_and_random_scores():
    members = np.array([True] * 500 + [False] * 500)
    perfect = attack_metrics(np.r_[np.ones(500), np.zeros(500)], members)
    assert perfect["auc"] == 1.0 and perfect["advantage"] == 1.0 and perfect["tpr_at_fpr_0.01"] == 1.0
    assert perfect["tpr_at_fpr_0.001"] is None  # 500 non-members cannot resolve a 0.1% false-positive rate
    noise = attack_metrics(np.random.default_rng(0).normal(size=1000), members)
    assert 0.45 < noise["auc"] < 0.55 and noise["advantage"] < noise["advantage_null_95"] < 0.1
    # the chance level shrinks with the sample: about 1.22 sqrt(2 / n) for n a side (one-sided Kolmogorov-Smirnov, 95%)
    assert advantage_null(315, 315) == pytest.approx(1.22 * np.sqrt(2 / 315), rel=0.1)
    assert len(noise["roc"]["fpr"]) == len(noise["roc"]["tpr"])
    with pytest.raises(InvalidInputError, match="needs both"):
        attack_metrics(np.ones(3), np.ones(3, bool))


def test_the_heldout_advantage_is_unbiased_where_the_in_sample_one_is_not():
    """An attack with no information: the in-sample advantage sits near the chance level, the
    held-out one near 0 with an interval that covers 0; a real leak (scores shifted by 0.5 sd,
    true advantage 2 Phi(0.25) - 1 = 0.197) is recovered within its interval."""
    from scipy.stats import norm

    rng = np.random.default_rng(0)
    members = np.r_[np.ones(315, bool), np.zeros(315, bool)]
    null = [heldout_advantage(rng.normal(size=630), members, splits=10, seed=k) for k in range(40)]
    estimates = np.array([h["estimate"] for h in null])
    assert abs(estimates.mean()) < 0.015 and np.mean([h["ci95"][0] <= 0 <= h["ci95"][1] for h in null]) >= 0.9
    in_sample = np.mean([attack_metrics(rng.normal(size=630), members)["advantage"] for _ in range(20)])
    assert in_sample > 0.04  # the bias the held-out figure removes
    true = 2 * norm.cdf(0.25) - 1
    leak = [heldout_advantage(np.r_[rng.normal(0.5, 1, 315), rng.normal(size=315)], members, splits=10, seed=k) for k in range(20)]
    assert abs(np.mean([h["estimate"] for h in leak]) - true) < 0.03
    assert np.mean([h["ci95"][0] <= true <= h["ci95"][1] for h in leak]) >= 0.8
    perfect = heldout_advantage(np.r_[np.ones(10), np.zeros(10)], members[305:325])
    assert perfect["estimate"] == 1.0
    with pytest.raises(InvalidInputError, match="at least 4"):
        heldout_advantage(np.ones(5), np.array([True, True, True, False, False]))


def test_users_to_confirm_follows_the_intervals_width():
    """The interval's half-width shrinks as 1 / sqrt(users a side): four times the users halve it,
    which is what the audit's estimate of the users needed to confirm a gate assumes."""
    rng = np.random.default_rng(1)
    half = {}
    for n in (300, 1200):
        members = np.r_[np.ones(n, bool), np.zeros(n, bool)]
        h = [heldout_advantage(rng.normal(size=2 * n), members, splits=5, seed=k) for k in range(5)]
        half[n] = np.mean([x["ci95"][1] - x["estimate"] for x in h])
    assert 0.45 < half[1200] / half[300] < 0.55
    assert users_to_confirm(0.0, [-0.1, 0.1], 300, 0.05) == 1200  # half-width 0.1 must become 0.05
    assert users_to_confirm(0.01, [-0.02, 0.04], 300, 0.05) == 300  # already confirmed: the size it has
    assert users_to_confirm(0.06, [0.0, 0.12], 300, 0.05) is None  # the estimate is above the limit: no size rules it out


def test_the_gate_says_whether_the_interval_confirms_it_and_how_many_users_would():
    from selflearn.governance.gate import gate_text, release_gate as _gate

    report = {"user_advantage_heldout": 0.01, "user_advantage_heldout_ci95": [-0.05, 0.07], "worst_attack": "lira", "users_a_side": 266}
    gate = _gate(0.05, report)
    assert gate["passed"] and not gate["confirmed"] and gate["users_to_confirm"] == int(np.ceil(266 * (0.06 / 0.04) ** 2))
    assert "not confirmed" in gate_text({**report, "gate": gate}) and str(gate["users_to_confirm"]) in gate_text({**report, "gate": gate})
    assert _gate(0.1, report)["confirmed"] and "confirmed (the interval" in gate_text({**report, "gate": _gate(0.1, report)})
    failed = _gate(0.005, report)
    assert not failed["passed"] and failed["users_to_confirm"] is None and gate_text({**report, "gate": failed}).endswith("failed")


def test_lira_calibrates_per_record_difficulty():
    # record 0 is easy (every model is sure of it), record 1 hard: the same target confidence 0.9
    # is unremarkable for the easy record and telling for the hard one
    shadows = np.array([[0.95, 0.20], [0.97, 0.25], [0.96, 0.22]])
    s = lira_scores(np.array([0.9, 0.9]), shadows)
    assert s[1] > s[0]
    assert logit_confidence(np.array([0.5]))[0] == pytest.approx(0.0)
    with pytest.raises(InvalidInputError, match="at least 2"):
        lira_scores(np.array([0.9]), np.array([[0.5]]))
    names, us = user_scores(np.array([1.0, 3.0, 5.0]), ["a", "a", "b"])
    assert names == ["a", "b"] and list(us) == [2.0, 5.0]


def test_advantage_bound_of_dp():
    assert advantage_bound(0.0) == 0.0
    assert advantage_bound(1.0) == pytest.approx((np.e - 1) / (np.e + 1))
    assert advantage_bound(8.0) > 0.99  # epsilon 8 bounds nothing in theory: the audit measures it


# -- canaries ---------------------------------------------------------------------------------
def test_canaries_are_made_planted_and_round_trip(tmp_path):
    fmt = CanaryFormat()
    cs = make_canaries(fmt, repetitions=(1, 4), per_repetition=2, seed=1)
    assert len({c.secret for c in cs}) == 4 and all(c.text == fmt.text(c.secret) and len(c.secret) == 4 for c in cs)
    logs = [{"user_id": f"u{u}", "session_id": f"s{u}-{k}", "turn_index": 0, "utterance": {"text": "hi"}, "response": {"status": "success"}}
            for u in range(6) for k in range(2)]
    planted = plant(logs, cs, seed=3)
    assert len(planted) == len(logs) + 10 and logs[0]["utterance"]["text"] == "hi"  # the input is not changed
    for c in cs:
        said = [r for r in planted if r["utterance"]["text"] == c.text]
        assert len(said) == c.repetitions and {r["user_id"] for r in said} == set(c.users) and len(c.users) == 1
    assert len({c.users[0] for c in cs}) == 4  # one canary per user
    save_canaries(tmp_path / "c.json", fmt, cs)
    fmt2, cs2 = load_canaries(tmp_path / "c.json")
    assert fmt2 == fmt and [c.secret for c in cs2] == [c.secret for c in cs]
    with pytest.raises(InvalidInputError, match="need 8 users"):
        plant(logs, cs, users_per_canary=2)
    with pytest.raises(InvalidInputError, match="secret"):
        CanaryFormat(template="no placeholder").check()


def test_exposure_ranks_the_secret():
    s = np.arange(1000, dtype=float)
    assert exposure(999.0, s)["exposure_bits"] == pytest.approx(np.log2(1000))
    assert exposure(0.0, s)["exposure_bits"] == pytest.approx(0.0, abs=0.01)
    sampled = exposure(999.0, s[::10], space=10_000)  # a sample of the space: the rank scales up
    assert sampled["candidates"] == 10_000 and sampled["rank"] == 1.0


# -- the attacks against models that memorised, or never saw, their data -----------------------------
class LookupTarget(AuditTarget):
    """A stand-in model type: a model is a dict item -> confidence; "training" memorises each
    training item at ``memorise`` and the rest at a population rate. Items are (user, k)."""

    component = "lookup"

    def __init__(self, memorise: float):
        self.memorise = memorise

    def records(self, users):
        items = [(u, k) for u in users for k in range(5)]
        return Records(items, [0] * len(items), [u for u, _ in items], [""] * len(items))

    def fit(self, model, records, *, encoder=None):
        return {"seen": set(records.items), "memorise": self.memorise}

    def p_true(self, model, records):
        rng = np.random.default_rng(abs(hash(tuple(records.items[:3]))) % 2**32)
        base = rng.uniform(0.5, 0.8, len(records.items))
        return np.array([model["memorise"] if it in model["seen"] else b for it, b in zip(records.items, base)])


@pytest.mark.parametrize("memorise,expect_high", [(0.999, True), (None, False)])
def test_membership_attacks_catch_memorisation_and_only_that(memorise, expect_high):
    t = LookupTarget(memorise if memorise is not None else 0.6)
    members = t.records([f"m{i}" for i in range(200)])
    reference = t.records([f"r{i}" for i in range(400)])
    model = t.fit(None, members) if expect_high else t.fit(None, t.records(["someone-else"]))
    result = membership(t, model, members, reference, AuditConfig(shadows=3, max_users=150))
    for attack in ("loss_threshold", "lira"):
        adv = result["users"][attack]["advantage"]
        assert (adv > 0.9) if expect_high else (adv < 0.25), (attack, adv)
    # the shadows never saw either side, and the two sides' records are alike: the control finds nothing
    assert result["composition_control"]["users"]["advantage_heldout"] < 0.15
    with pytest.raises(InvalidInputError, match="never saw"):
        membership(t, model, members, t.records(["m1"] + [f"r{i}" for i in range(20)]), AuditConfig())


def test_the_composition_control_sees_what_the_data_alone_gives_away():
    """Members' records easier than non-members' for EVERY model (a difference between the sides'
    data, not memory): the loss threshold reports a leak, the control (the same attack against
    models that saw neither side) reports it too, and LiRA, calibrated on those models, does not."""

    class EasyMembers(LookupTarget):
        fitted = 0

        def fit(self, model, records, *, encoder=None):
            self.fitted += 1
            return {"seed": self.fitted}

        def p_true(self, model, records):  # each model its own noise around the record's difficulty
            rng = np.random.default_rng(model["seed"])
            return np.array([0.8 if it[0].startswith("m") else 0.6 for it in records.items]) + rng.uniform(-0.05, 0.05, len(records.items))

    t = EasyMembers(None)
    members = t.records([f"m{i}" for i in range(200)])
    result = membership(t, t.fit(None, members), members, t.records([f"r{i}" for i in range(400)]), AuditConfig(shadows=3, max_users=150))
    assert result["users"]["loss_threshold"]["advantage_heldout"] > 0.9
    assert result["composition_control"]["users"]["advantage_heldout"] > 0.9
    assert result["users"]["lira"]["advantage_heldout"] < 0.2


class VectorTarget(AuditTarget):
    """A text classifier reduced to its text path: the log-probability of the canary's label is
    ``scale`` times the cosine of the request's vector to a remembered one (a model that
    memorised the canary), or to a random direction (one that never saw it)."""

    component = "vector"

    def __init__(self, remembered):
        self.remembered = remembered

    def text_scorer(self, model, records, text):
        import torch

        v = torch.from_numpy(self.remembered)
        return lambda vectors: 50.0 * (vectors @ v)


def test_exposure_and_inversion_extract_a_memorised_canary_and_nothing_else(tmp_path):
    enc = CachedEncoder()
    fmt = CanaryFormat(alphabet="0123456789", length=3)
    [canary] = make_canaries(fmt, repetitions=(16,), per_repetition=1, seed=4)
    save_canaries(tmp_path / "c.json", fmt, [canary])
    members = Records([0] * 16, [0] * 16, ["u"] * 16, [canary.text] * 16)
    config = AuditConfig(inversion_steps=60)
    remembered = enc.encode([canary.text])[0]
    [leaky] = canary_audit(VectorTarget(remembered), None, members, tmp_path / "c.json", config, enc)
    assert leaky["exposure_bits"] == pytest.approx(np.log2(1000), abs=1e-3) and leaky["tokens_recovered"] >= 2
    rng = np.random.default_rng(0)
    direction = rng.normal(size=remembered.shape).astype(np.float32)
    [blind] = canary_audit(VectorTarget(direction / np.linalg.norm(direction)), None, members, tmp_path / "c.json", config, enc)
    assert blind["exposure_bits"] < 6 and not blind["extracted"]
    missing = Records([0], [0], ["u"], ["something else"])
    assert canary_audit(VectorTarget(remembered), None, missing, tmp_path / "c.json", config, enc)[0]["exposure_bits"] is None


# -- a real model, end to end -------------------------------------------------------------------
def reference_store(fpi_runs, path):
    """The held-out run's users (another simulation, so other people under other ids) in a store."""
    from selflearn.store.importer import import_files
    from selflearn.store.store import Store

    lines = [json.loads(x) for x in (fpi_runs["dir"] / "eval" / "logs.jsonl").read_text().splitlines() if x.strip()]
    for r in lines:
        r["user_id"], r["session_id"] = "other-" + r["user_id"], "other-" + r["session_id"]
    path.with_suffix(".jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    with Store(path) as ref:
        import_files(ref, [path.with_suffix(".jsonl")])
    return path


def test_audit_of_the_failure_point_model_and_its_release_gate(fpi_runs, tmp_path):
    from selflearn.fpi.model import FailurePointModel
    from selflearn.fpi.isolation import train_fpi
    from selflearn.store.store import Store


    with Store(fpi_runs["train"][2], read_only=True) as st:
        train_fpi(st, tmp_path / "fpi", FailurePointModel(epochs=5))
    reference_store(fpi_runs, tmp_path / "ref.duckdb")
    args = ["privacy", "audit", "--model", str(tmp_path / "fpi"), "--store", str(fpi_runs["train"][2]), "--reference", str(tmp_path / "ref.duckdb"),
            "--shadows", "2", "--out", str(tmp_path / "audit.json")]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    report = json.loads((tmp_path / "audit.json").read_text())
    users = report["membership"]["users"]
    assert set(users) == {"loss_threshold", "lira"} and all(0 <= users[a]["auc"] <= 1 for a in users)
    assert report["membership"]["records"]["lira"]["members"] > 0 and report["gate"] is None
    gated = runner.invoke(app, args + ["--max-advantage", "0"])
    assert gated.exit_code != 0 and "advantage" in gated.output and "gate (--max-advantage 0.0)" in gated.output and ": failed" in gated.output
    # the wrong store is refused: the model's fingerprint names its training data
    wrong = runner.invoke(app, ["privacy", "audit", "--model", str(tmp_path / "fpi"), "--store", str(fpi_runs["eval"][2]),
                                "--reference", str(fpi_runs["train"][2]), "--out", str(tmp_path / "x.json")])
    assert wrong.exit_code != 0 and "trained on" in wrong.output


def test_personal_memory_isolation_finds_no_leak_and_catches_a_shared_memory(online_model, tmp_path):
    from selflearn.online import OnlineRewriter
    from selflearn.privacy.isolation import personal_isolation

    r = runner.invoke(app, ["privacy", "audit", "--model", str(online_model["model"]), "--out", str(tmp_path / "a.json"), "--max-advantage", "0.05"])
    assert r.exit_code == 0, r.output
    report = json.loads((tmp_path / "a.json").read_text())
    iso = report["personal_isolation"]
    assert iso["owners"] > 0 and iso["requests"] > 0 and iso["leaks"] == 0 and report["gate"]["passed"]
    # a broken personal layer that answers every user from everyone's history must be caught
    rw = OnlineRewriter.load(online_model["model"], fix_min=0, phrase_min=0)
    merged = {}
    for hist in rw.personal.users.values():
        merged.update(hist)
    rw.personal.history = lambda user: merged
    rw.threshold = 0.0
    assert personal_isolation(rw, owners=10, askers=3)["leaks"] > 0


def test_the_online_models_encoder_is_attacked_on_the_pairs_it_was_fine_tuned_on(online_model, fpi_runs, tmp_path):
    from selflearn.governance.audit_targets import EncoderTarget, RankerTarget
    from selflearn.online import OnlineConfig
    from selflearn.online.encoder import BiEncoder
    from selflearn.online.ranker import Ranker
    from selflearn.store.store import Store

    ref = reference_store(fpi_runs, tmp_path / "ref.duckdb")
    args = ["privacy", "audit", "--model", str(online_model["model"]), "--store", str(online_model["dir"] / "s.duckdb"),
            "--reference", str(ref), "--shadows", "2", "--out", str(tmp_path / "a.json")]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    report = json.loads((tmp_path / "a.json").read_text())
    assert report["personal_isolation"]["leaks"] == 0 and "encoder" in report["membership_note"]
    users = report["membership"]["users"]
    assert set(users) == {"encoder loss_threshold", "encoder lira", "ranker loss_threshold", "ranker lira", "global layer known requests",
                          "table known requests"}  # the model serves a mined table: its texts are attacked too
    assert all(users[a]["members"] > 0 and users[a]["non_members"] > 0 for a in users)
    assert 0 <= report["user_advantage"] <= 1 and "personal memory" in r.output and "lira" in r.output and "ranker" in r.output
    gated = runner.invoke(app, args + ["--max-advantage", "0"])
    assert gated.exit_code == 4 and "advantage" in gated.output
    # the encoder's pairs are rebuilt exactly from the store (its fingerprint), and another store is refused
    t = EncoderTarget(0.2, 0)
    enc = BiEncoder.load(online_model["model"] / "encoder")
    with Store(online_model["dir"] / "s.duckdb", read_only=True) as st:
        pairs = t.records(st, enc)
        t.check_trained_on(enc, pairs, st)
    p = t.p_true(enc, pairs.subset(range(20)))
    assert p.shape == (20,) and ((p >= 0) & (p <= 1)).all() and t.with_text(pairs.items[0], "x") == ("x", pairs.items[0][1])
    # so are the ranker's examples (a replay through the released model with a fresh personal memory)
    rt = RankerTarget(online_model["model"], OnlineConfig(max_pairs=256, examples=600, batch_size=32, min_precision=0.8))
    ranker = Ranker.load(online_model["model"] / "ranker")
    with Store(online_model["dir"] / "s.duckdb", read_only=True) as st:
        examples = rt.records(st, ranker)
        rt.check_trained_on(ranker, examples, st)
        assert set(examples.sampling) == {"fix", "ok", "fail"} and all(0 < r <= 1 for r in examples.sampling.values())
        same = rt.reference_records(st, ranker, examples)  # the same logs at the same shares: the same sample
    assert len(same.items) == len(examples.items)
    p = rt.p_true(ranker, examples)
    assert len(p) == len(examples.items) > 0 and ((p > 0) & (p < 1)).all()
    wrong = runner.invoke(app, ["privacy", "audit", "--model", str(online_model["model"]), "--store", str(ref), "--reference", str(ref),
                                "--out", str(tmp_path / "x.json")])
    assert wrong.exit_code != 0 and "trained on" in wrong.output


def test_the_label_model_is_audited_by_membership_and_canaries_through_its_text_path(tmp_path):
    from test_labels import SMALL, synthetic

    from selflearn.labels import LabelModel
    import copy

    import torch

    from selflearn.governance.audit_targets import LabelTarget

    def of(users, seed, n):
        ds = synthetic(n, seed)
        for k, d in enumerate(ds):
            d.user = f"{users}{k % (n // 2)}"
        return ds

    t = LabelTarget()
    members, reference = t.as_records(of("m", 0, 24)), t.as_records(of("r", 1, 48))
    model = LabelModel(**SMALL).fit(members.items)
    p = t.p_true(model, members)
    assert p.shape == (24,) and ((p > 0) & (p < 1)).all()
    result = membership(t, model, members, reference, AuditConfig(shadows=2, max_users=20))
    assert 0 <= result["users"]["lira"]["auc"] <= 1
    fmt = CanaryFormat(length=2)
    [canary] = make_canaries(fmt, repetitions=(1,), per_repetition=1)
    save_canaries(tmp_path / "c.json", fmt, [canary])
    said = t.with_text(members.items[0], canary.text)
    assert all(e.user == canary.text for e in said.exchanges) and members.items[0].exchanges[0].user != canary.text
    recs = t.as_records([said] + members.items[1:])
    enc = CachedEncoder()
    unslotted = copy.deepcopy(members.items)
    for e in (e for d in unslotted for e in d.exchanges):
        e.labels.pop("slots", None)
    frozen = LabelModel(**{**SMALL, "encoder": "frozen"}).fit(unslotted)
    for m in (model, frozen):  # the fine-tuned text path (the synthetic dialogues have slots) and the frozen one
        # the text path is the model: at the canary's own vector it gives what predict gives
        path, score = t.text_encoder(m, enc), t.text_scorer(m, recs.subset([0]), canary.text)
        rows = m.predict([said])[0]
        want = sum(np.log(r["defect"] if e.labels["defect"] == 1 else 1 - r["defect"]) for r, e in zip(rows, said.exchanges) if "defect" in e.labels)
        got = float(score(torch.from_numpy(path.encode([canary.text])))[0].detach())
        assert got == pytest.approx(want, abs=1e-3)
        [row] = canary_audit(t, m, recs, tmp_path / "c.json", AuditConfig(inversion_steps=20), enc)
        assert row["records_in_training"] == 1 and 0 <= row["exposure_bits"] <= row["max_bits"] and row["candidates_scored"] == 100
        assert 0 <= row["tokens_recovered"] <= 2


def test_the_rephrase_model_is_audited_on_the_examples_it_was_trained_on(online_model, tmp_path):
    from selflearn.governance.audit_targets import RephraseTarget
    from selflearn.rephrase import ContextualRephraseDetector
    from selflearn.rewrites.mining import train_rephrase_model
    from selflearn.store.store import Store

    t = RephraseTarget()
    with Store(online_model["dir"] / "s.duckdb") as st:
        train_rephrase_model(st, tmp_path / "reph", examples=40, seed=3)
        model = ContextualRephraseDetector.load(tmp_path / "reph")
        records = t.records(st, model)
        t.check_trained_on(model, records, st)  # the sample is rebuilt exactly (its fingerprint matches)
        # other users' logs are sampled at the members' shares of positives and negatives (not 20 of each)
        again = t.reference_records(st, model, records)
    assert len(records.items) == 40 and len(set(records.users)) > 1
    assert 0 < records.sampling["positives"] <= 1 and 0 < records.sampling["negatives"] < 1
    assert sorted(again.labels) == sorted(records.labels)
    p = t.p_true(model, records)
    assert p.shape == (40,) and ((p > 0) & (p <= 1)).all()
    assert t.with_text(records.items[0], "my pin code is 1 2").text == "my pin code is 1 2"


def test_cli_plants_canaries_into_a_copy_of_the_logs(tmp_path):
    from conftest import session, write_jsonl

    logs = write_jsonl(tmp_path / "logs.jsonl", [t for u in range(8) for t in session(f"s{u}", 2, user_id=f"user{u}")])
    r = runner.invoke(app, ["privacy", "canaries", str(logs), "--out", str(tmp_path / "planted.jsonl"), "--canaries", str(tmp_path / "c.json"),
                            "--repetitions", "1", "--repetitions", "4", "--per-repetition", "1", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["turns_added"] == 5 and len((tmp_path / "planted.jsonl").read_text().splitlines()) == 16 + 5
    _, cs = load_canaries(tmp_path / "c.json")
    assert [c.repetitions for c in cs] == [1, 4] and logs.read_text().count("pin code") == 0  # the input is left as it was
    same = runner.invoke(app, ["privacy", "canaries", str(logs), "--out", str(logs), "--canaries", str(tmp_path / "d.json")])
    assert same.exit_code == 2 and "new file" in same.output
    missing = runner.invoke(app, ["privacy", "canaries", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path / "x.jsonl"), "--canaries", str(tmp_path / "e.json")])
    assert missing.exit_code == 2 and "cannot be read" in missing.output


def test_the_known_texts_attack_finds_an_artefact_that_holds_its_members_texts(online_model, fpi_runs, tmp_path):
    """An artefact holding every text the members said tells them apart; one holding nothing cannot."""
    from selflearn.governance.audit import AuditConfig, known_texts_membership
    from selflearn.online.train import load_history
    from selflearn.store.store import Store

    ref = reference_store(fpi_runs, tmp_path / "ref.duckdb")
    with Store(online_model["dir"] / "s.duckdb") as st, Store(ref) as rs:
        everything = {r["rewrite"] or r["text"] for r in load_history(st).rows}
        got = known_texts_membership({"leaky": (everything, None), "empty": (set(), None)}, st, rs, AuditConfig(max_users=50))
        leaky = got["leaky"]
    by_user = {name: got[name]["membership"]["users"]["known requests"] for name in got}
    assert by_user["leaky"]["advantage"] > 0.5 and by_user["leaky"]["advantage_heldout"] > 0.5
    assert leaky["membership"]["train_vs_other"]["known_share_members"] == 1.0
    assert by_user["empty"]["advantage"] == 0.0 and by_user["empty"]["advantage_heldout"] == 0.0 and leaky["membership"]["dp_advantage_bound"] is None
