"""What a personal layer of the user's own fixes could reach at most: of the first-attempt defects a
kept model's table and global layer leave on the A/B traffic, the share whose user had, earlier (in
the mining period or the A/B's days before), failed with the same request as heard and then reached
the same goal by a retry (the simulator's truth: evaluation only), and the share whose user had met
the same goal before in any words.

Usage: python benchmarks/personal_ceiling.py --world world --model kept-model --users 2000 --mine-days 14 --ab-days 14 --seed 0
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter, defaultdict
from pathlib import Path

from selflearn.online import OnlineRewriter
from selflearn.world.build import World
from selflearn.world.simulate import SimConfig, Simulator, load_nlu_for

sys.path.insert(0, str(Path(__file__).parent))
from online_arms import kept_model_args  # noqa: E402


class Ceiling:
    """Turn by turn: the user's fixes (request as heard -> goals a retry reached from it) and goals met."""

    def __init__(self):
        self.fixes: dict[str, dict[str, set]] = defaultdict(dict)
        self.met: dict[str, set] = defaultdict(set)
        self.episode: dict[str, list] = {}
        self.counts: Counter = Counter()
        self.counting = False

    def __call__(self, turn: dict, truth: dict) -> None:
        if not truth["goal_id"]:
            return
        user, text = truth["user_id"], turn["utterance"]["text"]
        goal = (truth["goal_slurp_id"], truth["intended_entities"])
        if self.counting and truth["attempt"] == 0 and truth["defective"]:
            fp, fixed = truth["failure_point"], self.fixes[user].get(text, set())
            self.counts["first_attempts_defective"] += 1
            self.counts[f"defective at {fp}"] += 1
            self.counts["fixed before by a retry, the same goal"] += goal in fixed
            self.counts[f"fixed before by a retry, the same goal, at {fp}"] += goal in fixed
            self.counts["fixed before by a retry, another goal only"] += bool(fixed) and goal not in fixed
            self.counts["the goal met before"] += goal in self.met[user]
        if self.counting and truth["attempt"] == 0:
            self.counts["first_attempts"] += 1
        tried = self.episode.setdefault(truth["goal_id"], [])
        if not truth["defective"]:
            for earlier, failed in tried:
                if failed and earlier != text:
                    self.fixes[user].setdefault(earlier, set()).add(goal)
            self.met[user].add(goal)
        tried.append((text, truth["defective"]))


def main() -> None:
    args = kept_model_args(argparse.ArgumentParser()).parse_args()
    world, nlu = World.load(args.world), load_nlu_for(args.world)
    seen = Ceiling()
    Simulator(world, SimConfig(users=args.users, days=args.mine_days, seed=args.seed), nlu_loader=nlu).run(None, seen)
    rw = OnlineRewriter.load(args.model, layers=("table", "global"))
    rw.user_free_global = True
    seen.counting = True
    Simulator(world, SimConfig(users=args.users, days=args.ab_days, seed=args.seed, first_day=args.mine_days), nlu_loader=nlu).run(rw, seen)
    c = seen.counts
    n = max(c["first_attempts_defective"], 1)
    print(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "counts": dict(sorted(c.items())),
                      "share_fixed_before_same_goal": c["fixed before by a retry, the same goal"] / n,
                      "share_goal_met_before": c["the goal met before"] / n}, indent=2))


if __name__ == "__main__":
    main()
