"""Retrieval recall of a kept online model (``online_results.py --keep DIR``) on held-out users'
failing requests of its mining period: the global index alone (by meaning, by sound) and with the
user's own requests that worked before beside it (what the personal layer holds), with the
ceilings (the share whose meaning any candidate has) and the share whose chain reached the meaning
the request already had; and what the model's ranker puts first among every layer's candidates, the
logs replayed through an empty personal layer (with ``--k-phonetic``: that many found by sound too).

Usage: python benchmarks/retrieval_recall.py --world world --model kept-model --users 2000 --mine-days 14 --seed 0
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from selflearn.online import OnlineRewriter
from selflearn.online.evaluate import replayed_recall, retrieval_recall, retrieval_recall_with_own
from selflearn.online.memory import PersonalMemory
from selflearn.online.train import held_out
from selflearn.world.build import World
from selflearn.world.simulate import SimConfig

sys.path.insert(0, str(Path(__file__).parent))
from online_arms import kept_model_args, mining_history  # noqa: E402


def main() -> None:
    ap = kept_model_args(argparse.ArgumentParser())  # --ab-days is not used here
    ap.add_argument("--validation-share", type=float, default=0.2, help="the model's training's (OnlineConfig.validation_share)")
    ap.add_argument("--k-phonetic", default="0", help="comma-separated: candidates found by sound beside those by meaning, one replay each")
    args = ap.parse_args()
    h = mining_history(args.world, World.load(args.world), SimConfig(users=args.users, days=args.mine_days, seed=args.seed))
    rw = OnlineRewriter.load(args.model, layers=("global",))
    val = {r["user_id"] for r in h.rows if held_out(r["user_id"], args.validation_share, args.seed)}
    out = {"args": {k: str(v) for k, v in vars(args).items()},
           "global index, by meaning (fine-tuned, int8 ONNX)": retrieval_recall(rw.encoder, rw.global_, h, users=val, seed=args.seed),
           "global index, by sound": retrieval_recall(rw.encoder, rw.global_, h, users=val, seed=args.seed, phonetic=True),
           "global index (10 nearest) + the user's own working requests, by meaning": retrieval_recall_with_own(
               rw.encoder, rw.global_, h, users=val, seed=args.seed, k_global=rw.k_global)}
    for k in [int(v) for v in args.k_phonetic.split(",")]:
        replayer = OnlineRewriter.load(args.model, layers=("global", "personal"), k_phonetic=k)
        replayer.personal = PersonalMemory.empty_like(args.model / "personal", replayer.encoder, known=replayer.global_.has_vector)
        replayer.user_free_global = False
        out[f"the ranker's order over every layer's candidates, replayed (k_phonetic={k})"] = replayed_recall(replayer, h, users=val, seed=args.seed)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
