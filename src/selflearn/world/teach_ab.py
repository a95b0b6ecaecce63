"""The teaching measurement: the same traffic (with ambiguous requests) through the assistant without
and with teaching, compared on the requests only a user's preference can resolve.

An *ambiguous request* is a first attempt whose right answer depends on who asks: a place name
several states share, said without the state, or a request for the user's usual genre or cuisine
said without it ("play some music"). The truth marks them (evaluation only); the assistant never
sees it.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..errors import InvalidInputError, explain
from ..store.store import Store
from ..teach.moments import MomentConfig
from ..teach.preferences import Preferences
from .ab import relative_reduction_ci
from .build import World
from .simulate import SimConfig, Simulator
from .teaching import DEFAULT_SLOTS, PREFERENCE_OF, WorldTeaching, state_in

__all__ = ["teaching_ab"]


class _Tally:
    """Per arm: turns, and each ambiguous first attempt (goal id -> user, what kind, defective, failure
    point) measured, and the first time each need failed."""

    def __init__(self, world: World, measure_from_day: int = 0):
        self.from_day = measure_from_day
        self.senses = {e["id"]: e["senses"] for e in world.entities}
        self.names = {e["id"]: e["name"] for e in world.entities}
        self.turns = 0
        self.turns_measured = 0
        self.user_turns: dict[str, int] = {}
        self.ambiguous: dict[str, tuple] = {}
        self.first_need: dict[tuple, tuple[int, str | None]] = {}  # (user, kind, key) -> (the user's turn, the sense meant)

    def __call__(self, turn: dict, truth: dict) -> None:
        self.turns += 1
        self.turns_measured += _day(truth["session_id"]) >= self.from_day
        if not truth["goal_id"]:
            return
        user = truth["user_id"]
        n = self.user_turns[user] = self.user_turns.get(user, 0) + 1
        if truth["attempt"] != 0:
            return
        need = self._need(truth)
        if need is None:
            return
        kind, key, sense, what = need
        if _day(truth["session_id"]) >= self.from_day:
            self.ambiguous[truth["goal_id"]] = (int(user[1:]), what, bool(truth["defective"]), truth["failure_point"])
        if truth["defective"]:
            self.first_need.setdefault((user, kind, key), (n, sense))

    def _need(self, truth: dict):
        if truth["surface_kind"] == "vague":
            slot = DEFAULT_SLOTS[truth["true_intent"]]
            return PREFERENCE_OF[slot], "", None, "genre or cuisine left out"
        if truth["surface_kind"] == "detail":
            return None
        for ent in json.loads(truth["intended_entities"]):
            eid, _, sense = ent.partition("@")
            if sense and len(self.senses.get(eid, ())) > 1:
                usual = self.senses[eid][0] == sense  # the state the resolver picks when none is named
                return "place", self.names[eid], sense, "place several states share" + (", meant in its usual state" if usual else ", meant in another state")
        return None


def _day(session_id: str) -> int:
    return int(session_id.rsplit("-d", 1)[1].split("-", 1)[0])


def teaching_ab(world: World, config: SimConfig, store_path: Path, *, nlu_loader: Callable | None = None,
                moments: MomentConfig | None = None, measure_from_day: int | None = None, n_boot: int = 2000) -> dict:
    """Run the control (no teaching) and the treatment (preferences in entity resolution and the
    rewriter, teachable moments, guided Q&A) on the same traffic; ``store_path``: a new store for
    the treatment's preferences. Ambiguous requests are compared from ``measure_from_day`` on (the
    days before: the assistant learning); prompts and turns until learned cover the whole run.
    Returns one JSON-ready dict."""
    if Path(store_path).exists():
        raise InvalidInputError(explain(str(store_path), "must not exist yet", "pass a new path: the treatment starts knowing nothing"))
    first = config.first_day if measure_from_day is None else measure_from_day
    if not config.first_day <= first < config.first_day + config.days:
        raise InvalidInputError(explain(f"measure_from_day={measure_from_day}", f"must be a simulated day ({config.first_day}..{config.first_day + config.days - 1})",
                                        "e.g. the run's second week"))
    control = _Tally(world, first)
    goals_c = Simulator(world, config, nlu_loader=nlu_loader).run(None, control)
    treated = _Tally(world, first)
    with Store(store_path) as st:
        teaching = WorldTeaching(Preferences(st), world.entities, **({"config": moments} if moments else {}))
        goals_t = Simulator(world, config, nlu_loader=nlu_loader, teaching=teaching).run(teaching, treated)
        stored = st.reader().execute("SELECT kind, provenance, count(*) FROM preferences GROUP BY ALL ORDER BY ALL").fetchall()
    return {"config": {"users": config.users, "days": config.days, "seed": config.seed, "first_day": config.first_day,
                       "vague_share": config.vague_share, "measure_from_day": first},
            "turns": {"control": control.turns, "teaching": treated.turns},
            "all_first_attempts": _compare([g[0] for g in goals_c], [g[1] for g in goals_c], [g[1] for g in goals_t], config.users, n_boot),
            "ambiguous": _ambiguous(control, treated, config.users, n_boot),
            "prompts": {**teaching.prompts, "total": sum(teaching.prompts.values()),
                        "per_1000_turns": round(1000 * sum(teaching.prompts.values()) / max(1, treated.turns), 2),
                        "per_1000_turns_measured_days": round(1000 * sum((t - config.start).days >= first for t in teaching.asked_on)
                                                              / max(1, treated.turns_measured), 2),
                        "declined_share": round(teaching.prompts["declined"] / max(1, sum(teaching.prompts.values())), 4),
                        "by_kind_reason_outcome": {" / ".join(k): n for k, n in sorted(teaching.by_reason.items())}},
            "guided": {"users": teaching.guided_users, "turns": teaching.guided_turns},
            "learned": _learned(treated, teaching),
            "entity_resolution_used_preferences": dict(teaching.applied),
            "stored": [{"kind": k, "provenance": p, "n": int(n)} for k, p, n in stored]}


def _compare(users, control, treatment, n_users: int, n_boot: int) -> dict:
    if not users:
        return {"goals": 0}
    cr, tr, red, lo, hi, _ = relative_reduction_ci(np.array(users), np.array(control, dtype=float), np.array(treatment, dtype=float),
                                                   n_users=n_users, n_boot=n_boot)
    return {"goals": len(users), "control_defect_rate": round(cr, 4), "teaching_defect_rate": round(tr, 4),
            "relative_reduction": round(red, 4), "ci_low": round(lo, 4), "ci_high": round(hi, 4)}


def _ambiguous(control: _Tally, treated: _Tally, n_users: int, n_boot: int) -> dict:
    both = [g for g in control.ambiguous if g in treated.ambiguous]  # the same goals (identical traffic)
    out = {"all": _compare([control.ambiguous[g][0] for g in both], [control.ambiguous[g][2] for g in both],
                           [treated.ambiguous[g][2] for g in both], n_users, n_boot)}
    for name, tally in (("control", control), ("teaching", treated)):
        out[f"failure_points_{name}"] = dict(sorted(Counter(tally.ambiguous[g][3] for g in both).items()))
    for what in sorted({control.ambiguous[g][1] for g in both}):
        gs = [g for g in both if control.ambiguous[g][1] == what]
        out[what] = _compare([control.ambiguous[g][0] for g in gs], [control.ambiguous[g][2] for g in gs],
                             [treated.ambiguous[g][2] for g in gs], n_users, n_boot)
    return out


def _learned(treated: _Tally, teaching: WorldTeaching) -> dict:
    """For each preference a user needed (an ambiguous request failed for want of it): whether and
    after how many of the user's turns, counted from that first failure, the assistant learned what
    fixes it (for a place: that place, or a home city in the state the user means)."""
    when: dict[tuple, int] = {}
    for user, kind, key, how, at in teaching.learned:
        when.setdefault((user, kind, key), at)
    waits: list[int] = []
    by_kind: dict[str, list[int]] = {}
    for (user, kind, key), (first, sense) in treated.first_need.items():
        at = when.get((user, kind, key))
        home = when.get((user, "home_city", ""))
        if kind == "place" and home is not None and state_in(teaching.known(user).get(("home_city", ""), "")) == sense:
            at = home if at is None else min(at, home)
        counts = by_kind.setdefault(kind, [0, 0])
        counts[0] += 1
        if at is not None:
            counts[1] += 1
            waits.append(max(0, at - first + 1))  # learned before it was needed (the guided Q&A): 0
    needs = len(treated.first_need)
    w = np.array(waits, dtype=float)
    return {"needs": needs, "learned": len(waits), "learned_share": round(len(waits) / max(1, needs), 4),
            "by_kind": {k: {"needs": a, "learned": b} for k, (a, b) in sorted(by_kind.items())},
            "turns_until_learned": ({"median": float(np.median(w)), "mean": round(float(w.mean()), 2), "p90": float(np.percentile(w, 90))}
                                    if waits else None)}

