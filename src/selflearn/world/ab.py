"""A/B harness: control and treatment rewriters on identical traffic.

Both arms simulate the same users, goals and acoustic draws. A fixed turn
removes the rephrases that would have followed it, so the arms are compared on
goals: the first attempt's defect rate, and the share of goals never fulfilled.
Confidence intervals come from a bootstrap over users (turns of one user are
not independent).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..errors import InvalidInputError, explain
from ..metrics import bootstrap_ratio, paired_bootstrap_reduction
from .build import World
from ..rewriters import Rewriter
from ..rewrites.table import CONFIDENCE_BANDS, confidence_band
from .simulate import FAILURE_POINTS, SimConfig, Simulator

__all__ = ["ab_test", "ab_arms", "ab_worlds", "compare", "relative_reduction_ci"]


@dataclass
class _Arm:
    goals: list[tuple]
    turns: int
    defective_turns: int
    rewrites: int
    minority: tuple[int, int] = (0, 0)  # first attempts meaning a place in a state most users do not mean, and how many failed


def _run(world: World, config: SimConfig, rewriter: Rewriter | None, nlu_loader) -> _Arm:
    sim = Simulator(world, config, nlu_loader=nlu_loader)
    counts = [0, 0, 0, 0]
    default_sense = {e["id"]: e["senses"][0] for e in world.entities if len(e["senses"]) > 1}

    def minority(truth: dict) -> bool:
        """The Wilkerson case (from the self-learning keynote): the user means an ambiguous place in a state other than the usual one."""
        for ent in json.loads(truth["intended_entities"]):
            eid, _, sense = ent.partition("@")
            if sense and eid in default_sense and sense != default_sense[eid]:
                return True
        return False

    observe = getattr(rewriter, "observe", None)  # rewriters that learn online see the logged turn (never the truth)

    def count(turn: dict, truth: dict) -> None:
        counts[0] += 1
        counts[1] += truth["defective"]
        if truth["attempt"] == 0 and truth["goal_id"] and minority(truth):
            counts[2] += 1
            counts[3] += truth["defective"]
        if observe is not None:
            observe(turn)

    goals = sim.run(rewriter, count)
    return _Arm(goals, counts[0], counts[1], sim.rewrites, (counts[2], counts[3]))


relative_reduction_ci = paired_bootstrap_reduction  # the A/B harness's CI (selflearn.metrics)


def ab_test(
    world: World,
    config: SimConfig,
    treatment: Rewriter,
    *,
    control: Rewriter | None = None,
    n_boot: int = 2000,
    nlu_loader: Callable | None = None,
) -> dict:
    """Run both arms and compare them. Returns one JSON-ready dict."""
    if n_boot < 100:
        raise InvalidInputError(explain(f"n_boot={n_boot}", "must be at least 100 for a 95% interval", "use the default 2000"))
    a = _run(world, config, control, nlu_loader)
    b = _run(world, config, treatment, nlu_loader)
    return compare(config, a, b, n_boot=n_boot)


def ab_arms(world: World, config: SimConfig, arms: dict, *, n_boot: int = 2000, nlu_loader: Callable | None = None) -> dict:
    """Several arms on the same traffic, each run once: the first is the control. Returns each
    arm against the control and against the arm before it (what that layer adds)."""
    if len(arms) < 2:
        raise InvalidInputError(explain(f"{len(arms)} arms", "need a control and at least one treatment", "pass e.g. {'none': None, 'table': t}"))
    if n_boot < 100:
        raise InvalidInputError(explain(f"n_boot={n_boot}", "must be at least 100 for a 95% interval", "use the default 2000"))
    names = list(arms)
    runs = {name: _run(world, config, arms[name], nlu_loader) for name in names}
    return {"arms": names,
            "vs_control": {n: compare(config, runs[names[0]], runs[n], n_boot=n_boot) for n in names[1:]},
            "vs_previous": {n: compare(config, runs[p], runs[n], n_boot=n_boot) for p, n in zip(names[1:], names[2:])}}


def ab_worlds(worlds: dict[str, tuple[World, Callable | None]], config: SimConfig, *, n_boot: int = 2000,
              pairs: list[tuple[str, str]] = ()) -> dict:
    """The same traffic through world variants that differ only in their assistant (e.g. a
    retrained NLU: ``retrain_world_nlu``); the first is the control. Each value is (world, NLU loader).
    ``pairs`` adds comparisons (baseline name, variant name) under ``"pairs"``, keyed by the variant."""
    names = list(worlds)
    if len(names) < 2:
        raise InvalidInputError(explain(f"{len(names)} worlds", "need a control and at least one variant", "pass two or more"))
    unknown = [x for pair in pairs for x in pair if x not in worlds]
    if unknown:
        raise InvalidInputError(explain(f"pairs naming {unknown}", f"must name arms among {names}", "pass arm names"))
    runs = {n: _run(w, config, None, loader) for n, (w, loader) in worlds.items()}
    return {"arms": names, "vs_control": {n: compare(config, runs[names[0]], runs[n], n_boot=n_boot) for n in names[1:]},
            "pairs": {b: compare(config, runs[a], runs[b], n_boot=n_boot) for a, b in pairs}}


def _component_reduction(config: SimConfig, users: np.ndarray, a: _Arm, b: _Arm, fp: str, n_boot: int) -> dict:
    c = np.array([g[1] == 1 and g[3] == fp for g in a.goals], dtype=float)
    t = np.array([g[1] == 1 and g[3] == fp for g in b.goals], dtype=float)
    cr, tr, red, lo, hi, _ = relative_reduction_ci(users, c, t, n_users=config.users, n_boot=n_boot, seed=config.seed + 2)
    return {"control": cr, "treatment": tr, "relative_reduction": red, "ci_low": lo, "ci_high": hi}


def _band(conf: float) -> str:
    """The product's ASR-confidence band of a first attempt, by its lower edge."""
    return f"{CONFIDENCE_BANDS[confidence_band(conf) or 0]:.2f}+"


def rewrite_breakdown(control: list[tuple], treatment: list[tuple], wins: np.ndarray, losses: np.ndarray) -> dict:
    """Where the treatment's rewritten first attempts won and lost: losses by (control failure
    point -> treatment failure point), whether the rewritten request was understood with the
    goal's intent, and wins/losses per context (acoustic condition, device type, ASR-confidence
    band). The goals are the simulator's tuples, paired by position; ``wins`` and ``losses`` say
    which goals are (``compare``'s definitions)."""
    trans: Counter = Counter()
    ctx: dict[str, dict[str, list[int]]] = {"condition": {}, "device": {}, "confidence": {}}
    intent_right = [0, 0, 0, 0]  # rewritten, of them intent right; losses, of them intent right
    for c, t, win, loss in zip(control, treatment, wins.tolist(), losses.tolist()):
        if not t[5]:
            continue
        if loss:
            trans[f"{c[3]}->{t[3]}"] += 1
        intent_right[0] += 1
        intent_right[1] += bool(t[9])
        intent_right[2] += loss
        intent_right[3] += bool(loss and t[9])
        for key, value in (("condition", t[6]), ("device", t[7]), ("confidence", _band(t[8]))):
            cell = ctx[key].setdefault(value, [0, 0, 0])
            cell[0] += 1
            cell[1] += win
            cell[2] += loss
    return {
        "loss_transitions": dict(trans.most_common()),
        "rewritten_intent_right": intent_right[1] / intent_right[0] if intent_right[0] else None,
        "losses_intent_right": intent_right[3] / intent_right[2] if intent_right[2] else None,
        "by_context": {k: {v: {"rewritten": n, "wins": w, "losses": l} for v, (n, w, l) in sorted(d.items())} for k, d in ctx.items()},
    }


def compare(config: SimConfig, a: _Arm, b: _Arm, *, n_boot: int = 2000) -> dict:
    """Arm ``b`` against arm ``a`` (same traffic): rates, reductions with CIs, wins and losses."""
    if len(a.goals) != len(b.goals) or any(x[0] != y[0] for x, y in zip(a.goals, b.goals)):
        raise RuntimeError("the two arms saw different goals; the simulator lost its paired randomness")
    users = np.array([g[0] for g in a.goals], dtype=np.int64)
    first_c = np.array([g[1] for g in a.goals], dtype=float)
    first_t = np.array([g[1] for g in b.goals], dtype=float)
    fail_c = np.array([g[2] for g in a.goals], dtype=float)
    fail_t = np.array([g[2] for g in b.goals], dtype=float)
    cr, tr, red, lo, hi, _ = relative_reduction_ci(users, first_c, first_t, n_users=config.users, n_boot=n_boot, seed=config.seed)
    gcr, gtr, gred, glo, ghi, _ = relative_reduction_ci(users, fail_c, fail_t, n_users=config.users, n_boot=n_boot, seed=config.seed + 1)
    rewritten = np.array([g[5] for g in b.goals], dtype=bool)
    same_fp = np.array([x[3] == y[3] for x, y in zip(a.goals, b.goals)], dtype=bool)
    c_def, t_def = first_c == 1, first_t == 1
    won, broke, other = rewritten & c_def & ~t_def, rewritten & ~c_def & t_def, rewritten & c_def & t_def & ~same_fp
    wins, broken, other_way = int(won.sum()), int(broke.sum()), int(other.sum())
    fp_c = Counter(g[3] for g in a.goals)
    fp_t = Counter(g[3] for g in b.goals)
    n = len(a.goals)
    changed = int(np.sum(first_c != first_t))
    return {
        "turns": n,
        "goals": n,
        "users": config.users,
        "days": config.days,
        "seed": config.seed,
        "control_defect_rate": cr,
        "treatment_defect_rate": tr,
        "relative_reduction": red,
        "ci_low": lo,
        "ci_high": hi,
        "control_goal_failure_rate": gcr,
        "treatment_goal_failure_rate": gtr,
        "goal_failure_relative_reduction": gred,
        "goal_failure_ci_low": glo,
        "goal_failure_ci_high": ghi,
        # a win turns a defective first attempt into a success; a loss breaks one that would have
        # succeeded, or leaves it defective another way (a different failure point)
        "wins": wins,
        "losses": broken + other_way,
        "losses_broken": broken,
        "losses_defective_another_way": other_way,
        "win_loss_ratio": wins / (broken + other_way) if broken + other_way else None,
        # users resampled, as for the reductions: how far the ratio could move on other traffic
        "win_loss_ci": list(bootstrap_ratio(users, won.astype(float), (broke | other).astype(float), n_users=config.users,
                                            n_boot=n_boot, seed=config.seed + 3)[1:]),
        "first_attempts_rewritten": int(rewritten.sum()),
        "rewritten_still_defective_same_way": int(np.sum(rewritten & c_def & t_def & same_fp)),
        "first_attempts_changed": changed,
        "control_turns_total": a.turns,
        "treatment_turns_total": b.turns,
        "control_defective_turns": a.defective_turns,
        "treatment_defective_turns": b.defective_turns,
        "treatment_rewrites": b.rewrites,
        # the Wilkerson case: first attempts for an ambiguous place the user means in a minority state
        "minority_sense_first_attempts": a.minority[0],
        "control_minority_sense_defect_rate": a.minority[1] / a.minority[0] if a.minority[0] else None,
        "treatment_minority_sense_defect_rate": b.minority[1] / b.minority[0] if b.minority[0] else None,
        "rewrites": rewrite_breakdown(a.goals, b.goals, won, broke | other),
        "failure_points": {
            fp: {"control": fp_c.get(fp, 0) / n, "treatment": fp_t.get(fp, 0) / n} for fp in FAILURE_POINTS if fp != "false_wake"
        },
        # first attempts failing at each component: relative reduction with its 95% CI (users resampled)
        "failure_point_reductions": {fp: _component_reduction(config, users, a, b, fp, n_boot) for fp in FAILURE_POINTS if fp not in ("false_wake", "correct")},
    }
