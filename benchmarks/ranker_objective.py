"""The ranker's training objective: pointwise, as the product trains it (each candidate judged alone:
sklearn's MLP, binary cross-entropy), against objectives made for the first choice — a softmax over a
request's candidates with a "no rewrite" option (logit 0), alone or beside the pointwise loss — with
the same one-hidden-layer MLP (torch). All learn from the same rows: a kept model's mining period
replayed through an empty personal layer with the model's encoder and global layer, sampled and
labelled as `selflearn online train` does (selflearn.online.replay). Reported on the held-out users'
failing requests a chain fixed: recall@1 (the first choice means what the chain reached) over all of
them and over those whose fix is among the candidates, with the paired difference to pointwise and
its bootstrap interval (resampling requests), each arm trained with several seeds and averaged.

Usage: python benchmarks/ranker_objective.py --world world --model kept-model --seed 0 [--lambdas 0.5,1,2 --train-seeds 0,1,2]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from selflearn.online import OnlineConfig, OnlineRewriter
from selflearn.online.memory import PersonalMemory
from selflearn.online.ranker import Ranker
from selflearn.online.replay import ranking_examples, ranking_rows
from selflearn.online.train import held_out
from selflearn.world.build import World
from selflearn.world.simulate import SimConfig

sys.path.insert(0, str(Path(__file__).parent))
from online_arms import kept_model_args, mining_history  # noqa: E402


def listwise_loss(torch, s, t, group, n_groups: int):
    """Mean over requests of -log P(the first choice is a fix): a softmax over the request's candidates'
    logits ``s`` and a "no rewrite" option at 0; the fix is any candidate labelled 1 (``t``), or "no
    rewrite" for a request with none."""
    m = torch.zeros(n_groups).scatter_reduce(0, group, s, "amax", include_self=True).detach()  # >= 0: stable exponentials
    e = torch.exp(s - m[group])
    total = torch.zeros(n_groups).index_add(0, group, e) + torch.exp(-m)
    fixes = torch.zeros(n_groups).index_add(0, group, e * t)
    has_fix = torch.zeros(n_groups).index_add(0, group, t) > 0
    return -(torch.log(torch.where(has_fix, fixes, torch.exp(-m))) - torch.log(total)).mean()


def fit_torch(z: np.ndarray, y: np.ndarray, group: np.ndarray, *, pointwise: float, listwise: float, epochs: int, seed: int,
              hidden: int = 32, alpha: float = 1e-4, requests_per_step: int = 256):
    """The ranker's MLP trained on standardised rows ``z`` with ``pointwise`` x BCE + ``listwise`` x
    :func:`listwise_loss` (Adam); returns a scoring function."""
    import torch

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = torch.nn.Sequential(torch.nn.Linear(z.shape[1], hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 1))
    opt = torch.optim.Adam(net.parameters(), lr=3e-3, weight_decay=alpha)
    _, req = np.unique(group, return_inverse=True)
    order = np.argsort(req, kind="stable")
    starts = np.searchsorted(req[order], np.arange(req.max() + 2))
    zt, yt = torch.tensor(z, dtype=torch.float32), torch.tensor(y, dtype=torch.float32)
    bce = torch.nn.BCEWithLogitsLoss()
    for _ in range(epochs):
        perm = rng.permutation(req.max() + 1)
        for b in range(0, len(perm), requests_per_step):
            picked = perm[b:b + requests_per_step]
            rows = np.concatenate([order[starts[k]:starts[k + 1]] for k in picked])
            local = torch.from_numpy(np.repeat(np.arange(len(picked)), starts[picked + 1] - starts[picked]))
            s = net(zt[rows]).squeeze(-1)
            loss = pointwise * bce(s, yt[rows]) + (listwise * listwise_loss(torch, s, yt[rows], local, len(picked)) if listwise else 0.0)
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    return lambda zz: net(torch.tensor(zz, dtype=torch.float32)).squeeze(-1).detach().numpy()


def first_choice_hits(score: np.ndarray, ys: list[np.ndarray], bounds: np.ndarray) -> np.ndarray:
    """Per request (rows ``bounds[k]:bounds[k+1]`` of ``score``): 1 when its top candidate is a fix."""
    return np.array([y[int(np.argmax(score[a:b]))] if len(y) else 0 for y, a, b in zip(ys, bounds[:-1], bounds[1:])], float)


def main() -> None:
    ap = kept_model_args(argparse.ArgumentParser())  # --ab-days is not used here
    ap.add_argument("--lambdas", default="0.5,1,2", help="weights of the listwise term beside the pointwise loss (one arm each)")
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--bootstrap", type=int, default=2000)
    ap.add_argument("--train-seeds", default="0,1,2", help="each arm is trained once per seed; recall is averaged over them")
    args = ap.parse_args()
    started = time.perf_counter()
    h = mining_history(args.world, World.load(args.world), SimConfig(users=args.users, days=args.mine_days, seed=args.seed))
    saved = json.loads((args.model / "config.json").read_text())["params"]
    rw = OnlineRewriter.load(args.model, layers=("global", "personal"), k_phonetic=saved.get("k_phonetic", 0))
    rw.personal = PersonalMemory.empty_like(args.model / "personal", rw.encoder, known=rw.global_.has_vector)
    rw.user_free_global, rw.threshold = False, 1.0
    c = OnlineConfig(seed=args.seed)
    examples, _, _, _ = ranking_examples(rw, h, c)
    held = {r["user_id"]: held_out(r["user_id"], c.validation_share, c.seed) for r in h.rows}
    rows = ranking_rows(h, examples, held)
    tr = rows.train
    y = np.concatenate(rows.ys)
    x = rows.x.astype(np.float64)
    mean, scale = x[tr].mean(0), np.where(x[tr].std(0) > 1e-9, x[tr].std(0), 1.0)
    z = (x - mean) / scale
    # the held-out requests a chain fixed (they have a target), in row order
    bounds = np.concatenate([[0], np.cumsum([len(v) for v in rows.ys])])
    val = [k for k, (e, t) in enumerate(zip(rows.example, rows.example_train)) if not t and examples[e][0] in h.target]
    val_ys = [rows.ys[k] for k in val]
    reach = np.array([v.sum() > 0 for v in val_ys])
    val_bounds = np.concatenate([[0], np.cumsum([len(v) for v in val_ys])])
    val_rows = np.concatenate([np.arange(bounds[k], bounds[k + 1]) for k in val])

    def torch_arm(pointwise: float, listwise: float, seed: int):
        f = fit_torch(z[tr], y[tr], rows.group[tr], pointwise=pointwise, listwise=listwise, epochs=args.epochs, seed=seed)
        return lambda xx: f((xx - mean) / scale)

    arms = {"pointwise (the product: sklearn MLP)": lambda seed: Ranker(random_state=seed).fit(x[tr], y[tr]).score,
            "pointwise (torch, the same MLP)": lambda seed: torch_arm(1.0, 0.0, seed)}
    for lam in [float(v) for v in args.lambdas.split(",") if v]:
        arms[f"pointwise + {lam:g} x listwise"] = lambda seed, lam=lam: torch_arm(1.0, lam, seed)
    arms["listwise alone"] = lambda seed: torch_arm(0.0, 1.0, seed)
    seeds = [int(v) for v in args.train_seeds.split(",")]
    # per arm and training seed: 1 where the held-out request's first choice is a fix
    hits = {name: np.array([first_choice_hits(make(seed)(x[val_rows]), val_ys, val_bounds) for seed in seeds]) for name, make in arms.items()}
    base = hits["pointwise (the product: sklearn MLP)"].mean(0)
    rng = np.random.default_rng(args.seed)
    boot = [rng.integers(0, len(base), len(base)) for _ in range(args.bootstrap)]
    out = {"args": {k: str(v) for k, v in vars(args).items()}, "training_rows": int(tr.sum()), "training_requests": int(sum(rows.example_train)),
           "held_out_fixed_requests": len(val), "with_a_fix_among_candidates": int(reach.sum()), "arms": {}}
    for name, v in hits.items():
        m = v.mean(0)  # averaged over the training seeds
        d = np.array([(m[b] - base[b]).mean() for b in boot])
        out["arms"][name] = {"recall@1": float(m.mean()), "recall@1 per training seed": [round(float(r), 4) for r in v.mean(1)],
                             "recall@1 where a fix is a candidate": float(m[reach].mean()), "difference to the product": float((m - base).mean()),
                             "difference 95% CI (requests resampled)": [float(np.quantile(d, 0.025)), float(np.quantile(d, 0.975))]}
    out["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
