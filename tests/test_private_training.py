"""User-level differentially private training: the settings' rules, the sampler, the private
median, and DP-SGD on the failure-point model (budget recorded, kept on save/load, still learns)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from selflearn.errors import InvalidInputError
from selflearn.models.private import UserSampler, check_dp, private_median


def test_dp_settings_rules():
    assert check_dp(None, None, 10) is None
    assert check_dp(8, None, 100) == (8.0, 1 / 1000)
    for eps in (0, -1, float("inf"), True):
        with pytest.raises(InvalidInputError, match="dp_epsilon"):
            check_dp(eps, None, 100)
    with pytest.raises(InvalidInputError, match=r"must be in \(0, 1/n\)"):
        check_dp(8, 0.01, 100)
    with pytest.raises(InvalidInputError, match="needs dp_epsilon"):
        check_dp(None, 1e-5, 100)
    with pytest.raises(InvalidInputError, match="at least 2 users"):
        check_dp(8, None, 1)


def test_each_sampled_user_gives_one_example():
    users = ["a"] * 50 + ["b"] * 2 + ["c"]
    s = UserSampler(users, 2, np.random.default_rng(0))
    assert s.n_users == 3 and s.q == pytest.approx(2 / 3)
    for _ in range(200):
        ix = s.batch()
        owners = [users[i] for i in ix]
        assert len(owners) == len(set(owners))  # never two rows of one user in a step


def test_private_median_is_near_the_median_and_random_at_tiny_epsilon():
    rng = np.random.default_rng(0)
    norms = rng.lognormal(0.0, 0.3, 2000)
    picks = [private_median(norms, 1.0, rng) for _ in range(50)]
    assert all(0.7 < p < 1.4 for p in picks)
    wild = {round(private_median(norms, 1e-6, rng), 3) for _ in range(50)}
    assert len(wild) > 10  # almost no budget: almost uniform over the grid


@pytest.fixture(scope="module")
def runs(fpi_runs):
    return fpi_runs


def test_the_failure_point_model_trains_privately_and_records_the_budget(runs, tmp_path):
    from selflearn.fpi import FailurePointModel, fpi_metrics

    train, y, _, _ = runs["train"]
    test, y_test, _, _ = runs["eval"]
    small = {"epochs": 6, "hidden": 64, "text_dim": 64, "batch_size": 128}
    model = FailurePointModel(**small, dp_epsilon=8.0).fit(train, y)
    p = model.privacy_
    assert p["unit"] == "user" and p["users"] == len({t.user_id for t in train}) and p["steps"] > 0
    assert p["epsilon"] <= 8.0 * 1.02 and p["delta"] == pytest.approx(1 / (10 * p["users"])) and p["noise_multiplier"] > 0
    acc = fpi_metrics(y_test, model.predict(test))["accuracy"]
    majority = max(y_test.count(c) for c in set(y_test)) / len(y_test)
    assert acc > majority  # it still learns something under DP
    model.save(tmp_path / "m")
    assert FailurePointModel.load(tmp_path / "m").privacy_ == p  # the spent budget travels with the model
    with pytest.raises(InvalidInputError, match="dp_delta"):
        FailurePointModel(**small, dp_epsilon=1.0, dp_delta=0.5).fit(train, y)


def test_the_rephrase_model_trains_privately_over_cached_frozen_layers(tmp_path):
    from test_rephrase import _toy

    from selflearn.rephrase import ContextualRephraseDetector

    exs, labels = _toy(64)
    m = ContextualRephraseDetector(epochs=2, batch_size=16, dp_epsilon=8.0, random_state=0).fit(exs, labels)
    p = m.privacy_
    assert p["unit"] == "user" and p["users"] == 64 and p["epsilon"] <= 8.0 * 1.02 and p["clipping"] == "microbatch"
    assert len(m.predict(exs[:4])) == 4
    # the private training's top layers over the cached lower layers are the model itself
    import torch

    from selflearn.rephrase.model import _TopLayers

    cached, _, _ = m._cache_below(exs[:3], labels[:3], 1)
    input_ids, mask, _, _ = m._targets(exs[:3], labels[:3])
    top = _TopLayers(torch.nn.ModuleList(m.module_.encoder.encoder.layer[-1:]), m.module_.qa).eval()
    with torch.no_grad():
        s_full, _ = m.module_(input_ids, mask)
        width = max(len(c) for c in cached)
        h = torch.stack([torch.nn.functional.pad(c.float(), (0, 0, 0, width - len(c))) for c in cached])
        s_top, _ = top(h, torch.stack([torch.nn.functional.pad(torch.ones(len(c), dtype=torch.long), (0, width - len(c))) for c in cached]))
    real = mask[:, :width] == 1
    assert torch.allclose(s_full[:, :width][real], s_top[real], atol=0.05)  # float16 cache
    m.save(tmp_path / "r")
    assert ContextualRephraseDetector.load(tmp_path / "r").privacy_ == p
    assert all(q.requires_grad for q in m.module_.parameters())  # a later plain fine-tune may train them all again


def test_the_ranker_trains_privately_and_scores_like_a_ranker():
    from selflearn.online.features import FEATURES
    from selflearn.online.ranker import Ranker

    rng = np.random.default_rng(0)
    x = rng.normal(size=(4000, len(FEATURES)))
    y = (x[:, 0] + 0.5 * x[:, 1] + rng.normal(scale=0.5, size=4000) > 0).astype(int)
    users = [f"u{i % 400}" for i in range(4000)]
    r = Ranker(dp_epsilon=8.0).fit(x, y, users=users)
    s = r.score(x)
    assert r.privacy_["users"] == 400 and r.privacy_["epsilon"] <= 8.0 * 1.02
    assert ((s > 0.5) == y).mean() > 0.8  # the signal survives the noise
    with pytest.raises(InvalidInputError, match="user of every row"):
        Ranker(dp_epsilon=8.0).fit(x, y)


def test_the_online_rewriter_trains_its_global_layer_encoder_and_ranker_privately(online_model, tmp_path):
    from selflearn.models.directory import describe
    from selflearn.online import OnlineConfig, train_online
    from selflearn.online.online_rewriter import OnlineRewriter
    from selflearn.store.store import Store

    small = OnlineConfig(max_pairs=256, examples=600, batch_size=32, min_precision=0.8)
    with Store(online_model["dir"] / "s.duckdb") as st:
        # at epsilon 1 the private global layer of 150 users holds nothing to rank: refused, nothing written
        with pytest.raises(InvalidInputError, match="global layer of .* from 150 users, released with DP at epsilon 0.333.*more users"):
            train_online(st, tmp_path / "dp1", config=replace(small, dp_epsilon=1.0))
        assert not (tmp_path / "dp1" / "config.json").exists()
        train_online(st, tmp_path / "dp", table=online_model["table"], config=replace(small, dp_epsilon=8.0))
        said = dict(st.reader().execute("SELECT lower(asr_text), count(DISTINCT user_id) FROM turns GROUP BY 1").fetchall())
    p = describe(tmp_path / "dp")["privacy"]
    assert p["unit"] == "user" and p["epsilon"] <= 8.0 * 1.02 and p["pseudonym_key"] and p["trained_with_dp"].endswith("ranker + global")
    # a third of the budget each: the encoder's adapter, the ranker, the global layer (a private release)
    assert p["parts"]["ranker"]["epsilon"] <= 8.0 / 3 * 1.02
    assert p["parts"]["global"]["epsilon"] == pytest.approx(8.0 / 3) and p["parts"]["global"]["delta"] == pytest.approx(1 / (10 * 150) / 3)
    # 150 users share few requests: the private global index holds a handful, so the encoder's adapter may lack its
    # negatives and stay the pretrained encoder (no budget spent; its private fit is tested on its own below)
    import json

    enc = json.loads((tmp_path / "dp" / "encoder" / "config.json").read_text())
    assert "encoder" in p["parts"] or "not fine-tuned" in enc["learned"]["training_"]["note"]
    rw = OnlineRewriter.load(tmp_path / "dp")  # the merged record still names the key
    assert rw.ids is not None and rw.decide("play some jazz", user_id="u1") is not None and rw.dp["epsilon"] == p["epsilon"]
    assert 0 < len(rw.global_.texts) == p["parts"]["global"]["texts"] < 100
    assert all(said.get(t, 0) >= 5 for t in rw.global_.texts)  # every shared request: at least k users said it
    # no window learned from every user's gaps without noise: the signals' rule
    assert (rw.personal.window_s, rw.personal.min_similarity, rw.habits.fix_similarity) == (45.0, 0.35, 0.6)
    from typer.testing import CliRunner

    from selflearn.cli.main import app

    r = CliRunner().invoke(app, ["privacy", "info", "--model", str(tmp_path / "dp")])
    said = " ".join(r.output.split())  # the terminal wraps
    assert r.exit_code == 0 and "in all" in said and "global: user-level DP" in said and "ranker: user-level DP" in said, r.output
    assert f"{p['parts']['global']['texts']} requests kept" in said


def test_user_mode_clips_each_users_mean_gradient():
    """The vectorised per-user gradients equal a loop over users: each user's mean gradient over
    their rows (weights), clipped to C, summed; a user with one big row counts at most C."""
    import torch

    from selflearn.models.private import DpSettings, PrivateSGD, RowLoss

    torch.manual_seed(0)
    x = torch.randn(12, 3)
    x[11] *= 100  # one user's huge example
    y = torch.randn(12)
    users = ["a"] * 5 + ["b"] * 3 + ["c"] * 3 + ["d"]
    net = torch.nn.Linear(3, 1)
    rows = RowLoss(lambda ix: (x[torch.from_numpy(ix)], y[torch.from_numpy(ix)]), lambda call, xx, yy: (call(xx).squeeze(-1) - yy) ** 2)
    private = PrivateSGD(net, torch.optim.SGD(net.parameters(), lr=0.1), users, DpSettings(8.0, 1e-3, users_per_step=4, clipping="user",
                                                                                              examples_per_user=4, max_grad_norm=1.0), seed=0)
    private.make_private(rows)
    chosen = np.arange(4)
    r, w = private.sampler.user_batch(4, chosen)
    assert w.sum(1) == pytest.approx(np.ones(4)) and (w[0] > 0).sum() == 4 and (w[3] > 0).sum() == 1  # "a" gives 4 of its 5 rows
    total, norms, _ = private._user_grads(rows, r, w)
    want = [torch.zeros_like(p) for p in net.parameters()]
    for ri, wi in zip(r, w):
        loss = (rows(net)(ri) * torch.from_numpy(wi)).sum()
        g = torch.autograd.grad(loss, list(net.parameters()))
        n = torch.sqrt(sum((t**2).sum() for t in g))
        for acc, t in zip(want, g):
            acc += t * min(1.0, 1.0 / float(n))
    for a, b in zip(total, want):
        assert torch.allclose(a, b, atol=1e-5)
    assert norms[3] > 10  # the big row's user was clipped to 1 like everyone else
    before = [p.detach().clone() for p in net.parameters()]
    private.step(rows)
    assert any(not torch.equal(a, b) for a, b in zip(before, net.parameters())) and private.spent["clipping"] == "user"


def test_the_encoder_trains_a_private_adapter_served_in_onnx(tmp_path):
    """Under DP the retrieval encoder is MiniLM + a low-rank adapter trained with user-level DP-SGD:
    it moves a misheard request towards its fix, saves, reloads and exports to ONNX with it."""
    from selflearn.online.encoder import BiEncoder, OnnxEncoder, agreement, export_onnx

    words = ["jazz", "rock", "the news", "the weather", "a timer", "my alarm", "the lights", "some music"]
    pairs = [(f"whats {w} like please", f"what is {w}") for w in words for _ in range(4)]
    users = [f"u{i}" for i in range(len(pairs))]
    negatives = [f"set {w} for later" for w in words] + [f"cancel {w}" for w in words] + ["turn it off", "call mum", "stop", "volume up"]
    few = BiEncoder(dp_epsilon=8.0, dp_rank=4, random_state=0).fit(pairs, users=users, negatives=negatives[:15])
    assert few.privacy_ is None and "not fine-tuned: 15 shared negative texts" in few.training_["note"]  # it learned nothing: no budget spent
    enc = BiEncoder(dp_epsilon=8.0, dp_rank=4, dp_epochs=30, random_state=0).fit(pairs, users=users, negatives=negatives)
    p = enc.privacy_
    assert p["unit"] == "user" and p["users"] == len(pairs) and p["epsilon"] <= 8.0 * 1.02 and p["clipping"] == "user"
    assert enc.training_["adapter_rank"] == 4 and enc.training_["loss_last"] < enc.training_["loss_first"]
    enc.save(tmp_path / "e")
    again = BiEncoder.load(tmp_path / "e")
    texts = [a for a, _ in pairs[::4]] + negatives
    assert np.allclose(enc.encode(texts), again.encode(texts), atol=1e-5) and again.privacy_ == p
    export_onnx(again, tmp_path / "e.onnx", quantize=False)
    assert agreement(again, OnnxEncoder(tmp_path / "e.onnx", tmp_path / "e" / "tokenizer"), texts)["min_cosine"] > 0.999
    with pytest.raises(InvalidInputError, match="users"):
        BiEncoder(dp_epsilon=8.0).fit(pairs)


def test_the_world_nlu_retrains_privately_on_users_sentences(world_dir, tmp_path):
    """The NLU's retraining on generated labels: users' sentences under user-level DP (top layer and
    heads), its own training sentences (no user's) plainly; the budget is recorded and saved."""
    from selflearn.world.build import World
    from selflearn.world.nlu import JointNLU
    from selflearn.world.retrain import tagged_sentence

    world = World.load(world_dir)
    nlu = JointNLU.load(world_dir / "nlu")
    base = [x for x in (tagged_sentence(s["text"], s["intent"], s["slots"]) for s in world.sentences[:40] if s["in_nlu_train"]) if x]
    mine = [tagged_sentence(s["text"], s["intent"], None) for s in world.sentences[:120] if not s["in_nlu_train"] and s["intent"] in nlu.intents_]
    users = [f"u{i % 60}" for i in range(len(mine))]
    nlu.dp_epsilon, nlu.dp_epochs = 8.0, 2
    nlu.refit(mine, users=users, public=base)
    p = nlu.privacy_
    assert p["unit"] == "user" and p["users"] == len(set(users)) and p["epsilon"] <= 8.0 * 1.02 and p["clipping"] == "ghost"
    assert all(q.requires_grad for q in nlu.module_.parameters())
    import msgspec

    msgspec.msgpack.encode(p)  # plain numbers: the world's stats (msgpack) carry the record
    assert nlu.predict(["play some jazz"])[0].intent in nlu.intents_
    nlu.save(tmp_path / "nlu")
    assert JointNLU.load(tmp_path / "nlu").privacy_ == p
    with pytest.raises(InvalidInputError, match="user of every sentence"):
        nlu.refit(mine)
