"""The world's truth as reference labels in the dialogue format (evaluation only: this reads the
hidden truth, so learning code never imports it)."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import InvalidInputError, explain
from ..labels.dialogues import Dialogue

__all__ = ["attach_truth", "write_gold"]


def attach_truth(dialogues: list[Dialogue], truth) -> list[Dialogue]:
    """Replace each exchange's labels by the truth of its turn: defect, goal (the goal id), goal
    success (the goal's last turn in the session was not a defect), the true intent and slots.
    ``truth`` is the run's truth table (``read_truth``); exchanges need ``turn_id`` = turn_index."""
    rows = {(r["session_id"], r["turn_index"]): r for r in truth.select(
        ["session_id", "turn_index", "goal_id", "true_intent", "true_slots", "defective"]).to_pylist()}
    out = []
    for d in dialogues:
        truths = [rows.get((d.dialogue_id, e.turn_id)) for e in d.exchanges]
        if any(t is None for t in truths):
            continue  # a session the truth does not cover is left out, not guessed
        last: dict[str, bool] = {}
        for t in truths:
            if t["goal_id"]:
                last[t["goal_id"]] = not t["defective"]
        ex = []
        for e, t in zip(d.exchanges, truths):
            labels = {"defect": int(t["defective"])}
            if t["goal_id"]:  # a turn without a goal (a false wake) has no goal, intent or slots to label
                labels.update({"goal": t["goal_id"], "goal_success": int(last[t["goal_id"]]), "intent": t["true_intent"],
                               "slots": [{"name": n, "value": v} for n, v in json.loads(t["true_slots"] or "[]")]})
            else:
                labels["goal"] = f"no-goal-{e.turn_id}"
            ex.append(type(e)(e.user, e.system, dict(e.features), labels, e.turn_id))
        out.append(Dialogue(d.dialogue_id, ex, d.label, d.user))
    return out


def write_gold(store_path: Path, run_dir: Path, out: Path, *, limit: int | None = None) -> int:
    """The store's sessions of a simulated run with the run's truth as labels, as dialogue-format
    JSONL at ``out`` (for `selflearn labels evaluate --data`); returns the dialogue count."""
    from ..labels.dialogues import write_dialogues
    from ..labels.weak import store_dialogues
    from ..store.store import Store
    from .truth import read_truth

    with Store(store_path) as st:
        dialogues = store_dialogues(st, weak_labels=False, limit=limit)
        truth = read_truth(run_dir, st.pseudonyms())
    gold = attach_truth(dialogues, truth)
    if not gold:
        raise InvalidInputError(explain(f"{store_path} + {run_dir}", "no session of the store is in the run's truth",
                                        "import this run's logs.jsonl into the store"))
    return write_dialogues(gold, out)
