"""The privacy audit's verdict: the worst user-level attack (by its held-out advantage), the
release gate (``--max-advantage``: passed on the estimate, confirmed by the interval, or how many
users a side would confirm it) and the texts a terminal or the report shows of them."""

from __future__ import annotations

from ..errors import ReleaseGateError, explain
from ..privacy.membership import users_to_confirm

__all__ = ["worst_user_advantage", "release_gate", "check_gate", "gate_text", "heldout_text"]


def worst_user_advantage(by_attack: dict[str, dict]) -> dict:
    """The worst user-level attack: by its in-sample advantage (biased upward by about the chance
    level) and by its held-out advantage (unbiased; what the release gate judges), with the
    attack's name and its confidence interval."""
    def held(r: dict) -> tuple[float, list[float]]:  # under 4 users a side: the in-sample figure, unresolved
        return (r["advantage_heldout"], r["advantage_heldout_ci95"]) if r["advantage_heldout"] is not None else (r["advantage"], [0.0, 1.0])

    name, worst = max(by_attack.items(), key=lambda kv: held(kv[1])[0])
    return {"user_advantage": max(r["advantage"] for r in by_attack.values()), "user_advantage_heldout": held(worst)[0],
            "user_advantage_heldout_ci95": held(worst)[1], "worst_attack": name,
            "users_a_side": min(worst["members"], worst["non_members"])}


def release_gate(max_advantage: float | None, report: dict, leaks: int = 0) -> dict | None:
    """The release gate: passed when no personal entry leaked and the worst held-out user-level
    advantage is at most ``max_advantage``; ``confirmed`` when even the upper end of its 95%
    interval is (else the sample is too small to show it: ``users_to_confirm`` says about how many
    users a side would, if the estimate holds)."""
    if max_advantage is None:
        return None
    held, ci = report.get("user_advantage_heldout"), report.get("user_advantage_heldout_ci95")
    if held is None:  # no membership audit ran (an online model without stores): only the isolation test
        return {"max_advantage": max_advantage, "passed": leaks == 0, "confirmed": None}
    n = report.get("users_a_side")
    return {"max_advantage": max_advantage, "passed": leaks == 0 and held <= max_advantage, "confirmed": leaks == 0 and ci[1] <= max_advantage,
            "users_a_side": n, "users_to_confirm": users_to_confirm(held, ci, n, max_advantage) if n else None}


def check_gate(report: dict) -> None:
    """A :class:`ReleaseGateError` when the audit's user-level advantage is above its gate (or,
    for an online model, when one user's private entry reached another user)."""
    gate = report.get("gate")
    if not gate or gate["passed"]:
        return
    if (report.get("personal_isolation") or {}).get("leaks"):
        raise ReleaseGateError(explain(f"{report['personal_isolation']['leaks']} rewrites returned another user's private entry",
                                       "must be 0: the personal layer answers a user from their own history only",
                                       "do not release this model; report the examples in the audit as a bug"))
    lo, hi = report["user_advantage_heldout_ci95"]
    raise ReleaseGateError(explain(f"user-level membership advantage {report['user_advantage_heldout']:.3f} (held out; 95% interval "
                                   f"{lo:.3f} to {hi:.3f}; {report['worst_attack']} attack) of {report['model']}",
                                   f"must be <= {gate['max_advantage']} (--max-advantage)",
                                   "retrain with user-level DP (--dp-epsilon) or on more users, then audit again"))


def gate_text(report: dict) -> str | None:
    """The release gate's verdict in one line (``None`` without a gate or a membership audit)."""
    gate = report.get("gate")
    if not gate or gate.get("confirmed") is None:
        return None
    held, (lo, hi) = report["user_advantage_heldout"], report["user_advantage_heldout_ci95"]
    head = f"gate (--max-advantage {gate['max_advantage']}): held-out user-level advantage {held:.3f} [{lo:.3f}, {hi:.3f}] ({report['worst_attack']})"
    if not gate["passed"]:
        return f"{head}: failed"
    if gate["confirmed"]:
        return f"{head}: passed and confirmed (the interval ends below the limit)"
    need = gate.get("users_to_confirm")
    more = f"; about {need} users a side (now {gate['users_a_side']}) would confirm it if the estimate holds" if need else ""
    return f"{head}: passed on the estimate, not confirmed{more}"


def heldout_text(attack: dict) -> str:
    """An attack's held-out advantage with its 95% interval, as tables show it ("n/a" under 4 users a side)."""
    if attack.get("advantage_heldout") is None:
        return "n/a"
    lo, hi = attack["advantage_heldout_ci95"]
    return f"{attack['advantage_heldout']:.3f} [{lo:.3f}, {hi:.3f}]"
