"""The A/B arms of a kept online model (``online_results.py --keep DIR``) again, on the same traffic,
with the personal layer's habit rules set otherwise: none, the table, table + global, and table +
global + personal under each variant (and, with ``--thresholds``, table + global at other thresholds of
the ranker). The model must have been trained on the same world and mining days (the A/B starts the
day after them); another ``--seed`` than its training's gives a pilot on traffic of its own (use the
table and global arms only then: the personal layer holds the training traffic's users — or
``--product-variants``, whose personal layer is rebuilt from that seed's own mining period: a pilot of
the personal layer's rules in the product).

Usage: python benchmarks/online_arms.py --world world --model kept-model --users 2000 --mine-days 14 --ab-days 14 --seed 0 \
           --variants 2:1:0:0,1:1:0.6:1
(a variant: fix_min:phrase_min:fix_similarity:skip_working, as in habit_pilot.py)
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

from selflearn.online import OnlineRewriter
from selflearn.rewrites.table import TableRewriter
from selflearn.world.ab import ab_arms
from selflearn.world.build import World
from selflearn.world.simulate import SimConfig, load_nlu_for

sys.path.insert(0, str(Path(__file__).parent))
from habit_pilot import memory_for, variant  # noqa: E402


def mining_history(world_dir: Path, world: World, config: SimConfig):
    """The mining period's logs as the model's training read them (pseudonymous ids, signals)."""
    import shutil
    import tempfile

    from selflearn.online.train import load_history
    from selflearn.store.importer import import_files
    from selflearn.store.store import Store
    from selflearn.world.experiments import simulate_to

    tmp = Path(tempfile.mkdtemp(prefix="online-arms-"))
    try:
        simulate_to(tmp / "sim", world_dir, world, config)
        with Store(tmp / "s.duckdb") as st:
            import_files(st, [tmp / "sim" / "logs.jsonl"])
            return load_history(st)
    finally:
        shutil.rmtree(tmp)


def kept_model_args(ap: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The arguments of a run against a kept model: its world, the model, its traffic's size and seed."""
    ap.add_argument("--world", type=Path, default=Path("world"))
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--users", type=int, default=2000)
    ap.add_argument("--mine-days", type=int, default=14)
    ap.add_argument("--ab-days", type=int, default=14)
    ap.add_argument("--seed", type=int, default=0)
    return ap


def main() -> None:
    ap = kept_model_args(argparse.ArgumentParser())
    ap.add_argument("--variants", default="2:1:0:0,1:1:0.5:1")
    ap.add_argument("--variant-threshold", type=float, default=None, help="the ranker's threshold in the personal variants' arms (default: the model's)")
    ap.add_argument("--personal-thresholds", default="", help="more arms: table + global + personal (the model's habit rules) with the "
                                                                "personal layer's ranked candidates served from each of these scores")
    ap.add_argument("--habits-after-global", action="store_true", help="with --personal-thresholds: also each with the habit rules consulted "
                                                                       "only when no global candidate clears its threshold")
    ap.add_argument("--user-free-global", action="store_true", help="with --personal-thresholds: also each with the global layer deciding "
                                                                    "without the user's history (as on the pilot it was calibrated on)")
    ap.add_argument("--product-variants", default="", help="more arms: the product after `online calibrate` (the global layer user-free, "
                                                           "the personal layer's ranked candidates at each --product-personal-threshold) with the "
                                                           "personal layer rebuilt from the mining logs under each habit_pilot.py variant "
                                                           "(fix_min:phrase_min:fix_similarity:skip_working:retry window:retry similarity)")
    ap.add_argument("--product-personal-threshold", default="1.0", help="comma-separated: one arm per variant and threshold")
    ap.add_argument("--product", action="store_true", help="one more arm: the model as it is (every layer, its thresholds and rules)")
    ap.add_argument("--thresholds", default="", help="more arms: table + global with the ranker's threshold at each of these (a pilot of the global layer)")
    args = ap.parse_args()
    world = World.load(args.world)
    arms: dict = {"none": None, "table": TableRewriter.load(args.model / "rewrites.parquet"),
                  "table+global": OnlineRewriter.load(args.model, layers=("table", "global"))}
    if args.product:
        arms["the product (the model as it is)"] = OnlineRewriter.load(args.model)
    for t in [float(x) for x in args.thresholds.split(",") if x]:
        arms[f"table+global at threshold {t}"] = OnlineRewriter.load(args.model, layers=("table", "global"), threshold=t)
    for t in [float(x) for x in args.personal_thresholds.split(",") if x]:
        arms[f"table+global+personal at personal threshold {t}"] = OnlineRewriter.load(args.model, personal_threshold=t)
        if args.user_free_global:
            arm = arms[f"table+global+personal at personal threshold {t}, the global layer user-free"] = OnlineRewriter.load(args.model, personal_threshold=t)
            arm.user_free_global = True
        if args.habits_after_global:
            saved = OnlineRewriter.load(args.model).habits
            arms[f"table+global+personal at personal threshold {t}, habits after the global layer"] = OnlineRewriter.load(
                args.model, personal_threshold=t, habits=replace(saved, after_global=True))
    for spec in [v for v in args.variants.split(",") if v]:
        name, rules = variant(spec)
        arms[f"table+global+personal {name}"] = OnlineRewriter.load(args.model, habits=rules, threshold=args.variant_threshold)
    if args.product_variants:
        h = mining_history(args.world, world, SimConfig(users=args.users, days=args.mine_days, seed=args.seed))
        thresholds = [float(t) for t in args.product_personal_threshold.split(",")]
        for spec in args.product_variants.split(","):
            name, rules = variant(spec)
            for t in thresholds:
                arm = OnlineRewriter.load(args.model, personal_threshold=t, habits=rules)
                arm.user_free_global = True
                arm.personal, window = memory_for(h, spec, args.seed, arm.encoder, arm.global_.has_vector)
                at = f", ranked candidates at {t}" if len(thresholds) > 1 else ""
                arms[f"product, personal {name} (window {window:.1f} s){at}"] = arm
    ab = ab_arms(world, SimConfig(users=args.users, days=args.ab_days, seed=args.seed, first_day=args.mine_days), arms,
                 nlu_loader=load_nlu_for(args.world))
    sources = {name: dict(arm.counts) for name, arm in arms.items() if hasattr(arm, "counts")}
    print(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "ab": ab, "sources": sources}, indent=2, default=str))


if __name__ == "__main__":
    main()
