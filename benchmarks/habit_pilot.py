"""A pilot A/B of the personal habit rules, on traffic of its own, to choose their defaults before
the reported A/B (``online_results.py``, another traffic seed) is run.

Held-out replays of the logs cannot judge a user's own fix: most of the times it would fire, the
request failed and the user did not retry, and the logs cannot say whether their fix would have
worked (``selflearn.online.habits.habit_precision`` reports them apart). So the rules are compared
where the outcome is seen: a mining period of their own traffic (seed ``--seed``, not the reported
A/B's) builds the table and the users' personal memories, then every variant runs on the days after
it on identical traffic. The arms are the table, then the table with each rule variant, and nothing
else (no retrieval: the ranker serves nothing at the product's threshold on these worlds, and the
rules are what is being chosen).

Usage: python benchmarks/habit_pilot.py --world world --users 2000 --mine-days 14 --ab-days 14 --seed 1
"""

from __future__ import annotations

import argparse
import copy
import json
import shutil
import tempfile
from pathlib import Path

from selflearn.online.global_layer import build_global
from selflearn.online.habits import HabitRules, habit_precision, habit_rewrite
from selflearn.online.memory import PersonalMemory, epoch_seconds, row_turn
from selflearn.online.train import OnlineConfig, load_history, personal_retry_rule
from selflearn.rewrites.mining import mine
from selflearn.rewrites.table import TableRewriter
from selflearn.store.importer import import_files
from selflearn.store.store import Store
from selflearn.text import normalise
from selflearn.world.ab import ab_arms
from selflearn.world.build import World
from selflearn.world.experiments import simulate_to
from selflearn.world.simulate import SimConfig, load_nlu_for


class TableAndHabits:
    """The table first, then the user's habit rules, learning turn by turn as the product does."""

    def __init__(self, table: TableRewriter, personal: PersonalMemory, ids, g, rules: HabitRules):
        self.table, self.personal, self.ids, self.g, self.rules = table, personal, ids, g, rules.check()
        self.served = 0

    def rewrite(self, utterance: str, *, user_id: str = "", device: dict | None = None, context: dict | None = None) -> str | None:
        q = normalise(utterance)
        new = self.table.rewrite(q, context=context)
        if new is not None:
            return new
        uid = self.ids.of(user_id)
        if (context or {}).get("timestamp") is not None:
            self.personal.catch_up(uid, epoch_seconds(context["timestamp"]))
        fix = habit_rewrite(self.personal, uid, q, self.rules, g=self.g, confidence=(context or {}).get("asr_confidence"))
        self.served += fix is not None
        return fix

    def observe(self, turn: dict) -> None:
        self.personal.observe({**turn, "user_id": self.ids.of(turn["user_id"]), "session_id": self.ids.of(turn["session_id"])})


def variant(spec: str) -> tuple[str, HabitRules]:
    """fix_min:phrase_min:fix_similarity:skip_working (0/1)[:retry window:retry similarity[:max confidence]] —
    the habit rules of a variant (the retry fields: :func:`retry_of`)."""
    f, p, s, w = spec.split(":")[:4]
    fields = spec.split(":")
    top = fields[6] if len(fields) > 6 else "1"
    rules = HabitRules(fix_min=int(f), phrase_min=int(p), fix_similarity=float(s), skip_working=w == "1", max_confidence=float(top))
    return (f"fix_min={f} phrase_min={p} fix_similarity={s} skip_working={w}" + "".join(f" {k}={v}" for k, v in retry_of(spec).items())
            + (f" max_confidence={top}" if top != "1" else "")), rules


def retry_of(spec: str) -> dict:
    """The optional fifth and sixth fields of a variant: the personal layer's retry window
    ('learned' or seconds; default the signals' 45) and how alike a retry must be (default 0.35)."""
    extra = spec.split(":")[4:]
    return {"retry_window": extra[0] if extra else "45", "retry_similarity": extra[1] if len(extra) > 1 else "0.35"}


def memory_for(h, spec: str, seed: int, encoder=None, known=None) -> tuple[PersonalMemory, float]:
    """A personal layer that has seen every turn of ``h``, with the variant's retry rule (a learned
    window is learned from ``h``, as training does)."""
    r = retry_of(spec)
    # the variant's similarities as given (the product falls back to the signals' rule only when no window can be learned)
    window = personal_retry_rule(h, OnlineConfig(seed=seed, retry_window=None if r["retry_window"] == "learned" else float(r["retry_window"])))[0]
    memory = PersonalMemory(encoder, known=known, window_s=window, min_similarity=float(r["retry_similarity"]))
    for row in h.rows:
        memory.observe(row_turn(row))
    memory.flush()
    return memory, window


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--world", type=Path, default=Path("world"))
    ap.add_argument("--users", type=int, default=2000)
    ap.add_argument("--mine-days", type=int, default=14)
    ap.add_argument("--ab-days", type=int, default=14)
    ap.add_argument("--seed", type=int, default=1, help="the pilot's traffic (the reported A/B uses another)")
    ap.add_argument("--variants", default="2:1:0:0,2:1:0:1,2:1:0.5:1,1:1:0.5:1,1:1:0.6:1,1:1:0.7:1,1:0:0.6:1",
                    help="fix_min:phrase_min:min_similarity:skip_working (0/1)[:retry window (learned or seconds)[:retry similarity[:max confidence]]], comma-separated")
    args = ap.parse_args()
    world = World.load(args.world)
    tmp = Path(tempfile.mkdtemp(prefix="habit-pilot-"))
    out: dict = {"args": {k: str(v) for k, v in vars(args).items()}}
    try:
        simulate_to(tmp / "sim", args.world, world, SimConfig(users=args.users, days=args.mine_days, seed=args.seed))
        with Store(tmp / "s.duckdb") as st:
            import_files(st, [tmp / "sim" / "logs.jsonl"])
            mine(st, tmp / "rewrites.parquet")
            h = load_history(st)
            ids = st.pseudonyms()
        arms: dict = {"none": None, "table": TableRewriter.load(tmp / "rewrites.parquet")}
        g = build_global(h)  # k-anonymous, as the product's
        specs = args.variants.split(",")
        variants = dict(variant(v) for v in specs)
        seeded: dict = {}  # what the product's personal layer holds after training on the mining period, per retry rule
        for spec in specs:
            name, rules = variant(spec)
            key = tuple(retry_of(spec).values())
            if key not in seeded:
                seeded[key] = memory_for(h, spec, args.seed)
                out.setdefault("retry_windows", {})[":".join(key)] = seeded[key][1]
            arms[f"table + habits {name}"] = TableAndHabits(TableRewriter.load(tmp / "rewrites.parquet"), copy.deepcopy(seeded[key][0]), ids, g, rules)
        # what a replay of the same mining logs says about each variant (every user: nothing was trained on them here)
        out["replay"] = habit_precision(h, {r["user_id"] for r in h.rows}, variants, g)
        ab = ab_arms(world, SimConfig(users=args.users, days=args.ab_days, seed=args.seed, first_day=args.mine_days), arms,
                     nlu_loader=load_nlu_for(args.world))
        table = ab["vs_control"]["table"]
        for name, arm in arms.items():
            if name in ("none", "table"):
                continue
            r = ab["vs_control"][name]
            out[name] = {"relative_reduction": r["relative_reduction"], "ci": [r["ci_low"], r["ci_high"]],
                         "wins": r["wins"], "broken": r["losses_broken"], "other_way": r["losses_defective_another_way"],
                         "win_loss": r["win_loss_ratio"], "win_loss_ci": r["win_loss_ci"], "rewritten": r["first_attempts_rewritten"],
                         "served_by_habits": arm.served,
                         "added_over_table": r["relative_reduction"] - table["relative_reduction"],
                         "habits_share_of_the_rest": 1 - (1 - r["relative_reduction"]) / (1 - table["relative_reduction"])}
        out["table"] = {"relative_reduction": table["relative_reduction"], "wins": table["wins"], "losses": table["losses"], "win_loss_ci": table["win_loss_ci"]}
        out["ab"] = ab
    finally:
        shutil.rmtree(tmp)
    print(json.dumps(out, indent=2, default=str))


if __name__ == "__main__":
    main()
