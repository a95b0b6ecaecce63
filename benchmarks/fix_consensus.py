"""How far can the logs alone justify rewriting a failing request? For the held-out users' failing
requests (the online trainer's validation share), the meaning most training users' retries of the
same request reached (when at least k users reached it, and it is at least a share of the users for
whom that request failed) is taken as the rewrite; it is right when the held-out user's own retry
reached that meaning. A failing request no retry fixed counts as covered and not right, as in the
online layer's calibration (the logs cannot say whether a rewrite would have fixed it). No truth is
read. ``precision_on_fixable`` leaves out the requests no retry fixed: whether the consensus names
the meaning the user's own retry reached.

Usage: python benchmarks/fix_consensus.py --store STORE [--share 0.2 --seed 0]
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

from selflearn.online.train import held_out, load_history
from selflearn.store.store import Store


def consensus(h, share: float, seed: int, ks=(3, 5, 10), min_shares=(0.0, 0.3, 0.5)) -> dict:
    rows = h.rows
    fixed_to: dict[str, dict[str, set]] = defaultdict(lambda: defaultdict(set))  # request -> meaning a retry reached -> users
    failed_for: dict[str, set] = defaultdict(set)
    held = {}

    def is_held(u):
        if u not in held:
            held[u] = held_out(u, share, seed)
        return held[u]

    failing = [i for i, r in enumerate(rows) if not r["ok"] and not r["rewrite"]]
    for i in failing:
        r = rows[i]
        if is_held(r["user_id"]):
            continue
        failed_for[r["text"]].add(r["user_id"])
        t = h.target.get(i)
        if t is not None and rows[t]["meaning"] != r["meaning"]:
            fixed_to[r["text"]][rows[t]["meaning"]].add(r["user_id"])
    test = [i for i in failing if is_held(rows[i]["user_id"])]
    fixable = sum(1 for i in test if i in h.target and rows[h.target[i]]["meaning"] != rows[i]["meaning"])
    out = {"held_out_failing": len(test), "fixable_by_a_retry": fixable, "rules": []}
    for k in ks:
        for min_share in min_shares:
            covered = right = covered_fixable = 0
            for i in test:
                options = fixed_to.get(rows[i]["text"])
                if not options:
                    continue
                meaning, users = max(options.items(), key=lambda kv: len(kv[1]))
                if len(users) < k or len(users) / len(failed_for[rows[i]["text"]]) < min_share:
                    continue
                covered += 1
                t = h.target.get(i)
                fixed = t is not None and rows[t]["meaning"] != rows[i]["meaning"]
                covered_fixable += fixed
                right += fixed and rows[t]["meaning"] == meaning
            out["rules"].append({"k": k, "min_share": min_share, "covered": covered, "coverage": covered / max(len(test), 1),
                                 "right": right, "precision": right / max(covered, 1), "of_fixable": right / max(fixable, 1),
                                 # among the covered requests the user's retry did fix: is the consensus the meaning it reached?
                                 "covered_fixable": covered_fixable, "precision_on_fixable": right / max(covered_fixable, 1)})
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--store", type=Path, required=True)
    ap.add_argument("--share", type=float, default=0.2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    with Store(args.store) as st:
        h = load_history(st)
    print(json.dumps(consensus(h, args.share, args.seed), indent=1))


if __name__ == "__main__":
    main()
