"""What entity-aware span rewrites could add to the online layers' reach, from the logs alone: of the
mining period's failing requests a retry fixed with another meaning, those whose goal no candidate of
the k-anonymous global index holds, the share that differ from what fixed them by one substitution of
up to ``--max-words`` words that at least ``--min-users`` other users also made (a span rewrite that
keeps the k-anonymity rule could reach no more of them).

Usage: python benchmarks/span_potential.py --world hard-world --users 2000 --mine-days 14 --seed 0
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from difflib import SequenceMatcher
from pathlib import Path

from selflearn.online.global_layer import build_global, fixed_by_retry
from selflearn.privacy.kanon import K_DEFAULT
from selflearn.world.build import World
from selflearn.world.simulate import SimConfig

sys.path.insert(0, str(Path(__file__).parent))
from online_arms import mining_history  # noqa: E402


def substitution(q: str, fix: str, max_words: int) -> tuple[str, str] | None:
    """(the words of ``q`` replaced, the words put in) when ``fix`` is ``q`` with one run of up to
    ``max_words`` words replaced by another such run; else None."""
    a, b = q.split(), fix.split()
    ops = [o for o in SequenceMatcher(None, a, b, autojunk=False).get_opcodes() if o[0] != "equal"]
    if len(ops) != 1 or ops[0][0] != "replace" or ops[0][2] - ops[0][1] > max_words or ops[0][4] - ops[0][3] > max_words:
        return None
    _, i1, i2, j1, j2 = ops[0]
    return " ".join(a[i1:i2]), " ".join(b[j1:j2])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--world", type=Path, default=Path("world"))
    ap.add_argument("--users", type=int, default=2000)
    ap.add_argument("--mine-days", type=int, default=14)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-words", type=int, default=3)
    ap.add_argument("--min-users", type=int, default=K_DEFAULT)
    args = ap.parse_args()
    h = mining_history(args.world, World.load(args.world), SimConfig(users=args.users, days=args.mine_days, seed=args.seed))
    g = build_global(h, args.min_users)
    indexed = {g.meanings[g.meaning[int(i)]] for i in g.candidates if g.meaning[int(i)] >= 0}
    fixable = fixed_by_retry(h)
    pair = {i: substitution(h.rows[i]["text"], h.rows[h.target[i]]["text"], args.max_words) for i in fixable}
    users: dict[tuple[str, str], set[str]] = defaultdict(set)
    for i, p in pair.items():
        if p is not None:
            users[p].add(h.rows[i]["user_id"])
    shared = lambda i: pair[i] is not None and len(users[pair[i]] - {h.rows[i]["user_id"]}) >= args.min_users  # noqa: E731
    unreachable = [i for i in fixable if h.rows[h.target[i]]["meaning"] not in indexed]
    out = {"args": {k: str(v) for k, v in vars(args).items()}, "fixable": len(fixable), "unreachable_by_the_index": len(unreachable),
           "unreachable_one_substitution": sum(pair[i] is not None for i in unreachable),
           "unreachable_substitution_made_by_enough_other_users": sum(shared(i) for i in unreachable),
           "fixable_substitution_made_by_enough_other_users": sum(shared(i) for i in fixable),
           "substitutions_made_by_enough_users": sum(len(u) >= args.min_users for u in users.values())}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
