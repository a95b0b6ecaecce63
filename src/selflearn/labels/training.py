"""What `selflearn labels` does, as library calls: load a dialogue source, train with a held-out
calibration share, evaluate, apply at a chosen precision, export NLU training data."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ..errors import InvalidInputError, explain
from .dialogues import Dialogue, Exchange, read_dialogues
from .evaluate import BINARY, REFERENCE_OF, evaluate_predictions, reference_targets, threshold_for
from .model import LabelModel

__all__ = ["load_source", "train_labels", "evaluate_labels", "write_predictions", "apply_labels", "nlu_examples", "CALIBRATION_SHARE", "held_out_for_validation"]

CALIBRATION_SHARE = 0.1  # dialogues held out of training to draw the precision/coverage curves
APPLIED = ("defect", "goal_success", "intent", "slots", "satisfaction", "goal_intent")


def load_source(*, store: Path | None = None, data: Path | None = None, limit: int | None = None) -> tuple[list[Dialogue], list[dict]]:
    """Dialogues from a store (weak labels from its signals) or a dialogue-format JSONL file
    (its own labels), and the quarantined lines of the latter."""
    if (store is None) == (data is None):
        raise InvalidInputError(explain(f"store={store}, data={data}", "exactly one source is needed", "pass --store or --data"))
    if data is not None:
        dialogues, bad = read_dialogues(data)
        return dialogues[:limit] if limit else dialogues, bad
    from ..store.store import Store
    from .weak import store_dialogues

    if not Path(store).exists():
        raise InvalidInputError(explain(str(store), "does not exist", "import logs first (`selflearn store import FILE --store ...`)"))
    with Store(store) as st:
        return store_dialogues(st, limit=limit), []


def held_out_for_validation(dialogue_id: str, seed: int) -> bool:
    """Whether train_labels keeps this dialogue for validation (not trained on)."""
    return int(hashlib.sha256(f"{seed}:{dialogue_id}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF < CALIBRATION_SHARE


def train_labels(dialogues: list[Dialogue], out: Path, model: LabelModel, *, valid: list[Dialogue] | None = None, progress=None) -> dict:
    """Fit on the dialogues, choosing the checkpoint on ``valid`` (by default 10% of the dialogues
    held out by a hash of their ids), draw each task's precision/coverage curve on the same
    validation dialogues (against their labels: weak ones for a store) and save the model with it."""
    if valid is None:
        valid = [d for d in dialogues if held_out_for_validation(d.dialogue_id, model.random_state)]
        dialogues = [d for d in dialogues if not held_out_for_validation(d.dialogue_id, model.random_state)] or dialogues
    model.fit(dialogues, valid=valid or None, progress=progress)
    metrics = evaluate_predictions(model.predict(valid), reference_targets(valid)) if valid else {}
    calibration = {"source": "validation dialogues", "dialogues": len(valid), "curves": _curves(metrics)}
    model.save(out, calibration=calibration)
    return {"dialogues": len(dialogues), "validation_dialogues": len(valid), "mode": model.mode, "encoder": model.net_config_.encoder,
            "schedule": model.schedule_, "best_step": model.best_step_, "train_seconds": model.train_seconds_,
            "pretrain_loss": _ends(model.history_["pretrain"]), "finetune_loss": _ends(model.history_["finetune"]),
            "validation": _summary(metrics), "privacy": model.privacy_}


def _curves(metrics: dict) -> dict:
    return {t: m["curve"] for t, m in metrics.items() if isinstance(m, dict) and m.get("curve")}


def _ends(losses: list[float]) -> list[float] | None:
    if not losses:
        return None
    k = max(1, len(losses) // 10)
    return [round(sum(losses[:k]) / k, 4), round(sum(losses[-k:]) / k, 4)]  # mean of the first and last tenth


def _summary(metrics: dict) -> dict:
    return {t: {k: v for k, v in m.items() if k != "curve"} if isinstance(m, dict) else m for t, m in metrics.items()}


def evaluate_labels(model: LabelModel, dialogues: list[Dialogue], *, calibrate_to: Path | None = None, full: bool = False,
                    predictions_to: Path | None = None) -> dict:
    """Metrics of the model's labels against the dialogues' labels, and the model's ``mode`` (which
    setting the figures are for); with ``calibrate_to`` the curves become the model's calibration
    (saved there); with ``predictions_to`` every turn's predictions and references are written (JSONL)."""
    preds, refs = model.predict(dialogues), reference_targets(dialogues)
    metrics = evaluate_predictions(preds, refs)
    if calibrate_to is not None:
        model.save(calibrate_to, calibration={"source": "evaluation labels", "dialogues": len(dialogues), "curves": _curves(metrics)})
    if predictions_to is not None:
        write_predictions(dialogues, preds, refs, predictions_to)
    return {"mode": model.mode, **(metrics if full else _summary(metrics))}


def write_predictions(dialogues: list[Dialogue], preds: list[list[dict]], refs: list[list[dict]], path: Path) -> int:
    """One JSON line per turn: dialogue id, turn index and id, and per task the prediction, its
    confidence and the reference label (null where there is none)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with path.open("w", encoding="utf-8") as f:
        for d, pd, rd in zip(dialogues, preds, refs):
            for t, (e, p, r) in enumerate(zip(d.exchanges, pd, rd)):
                row = {"dialogue_id": d.dialogue_id, "turn": t, "turn_id": e.turn_id}
                for task, v in p.items():
                    if task == "slots_confidence" or v is None:
                        continue
                    if isinstance(v, tuple):
                        row[task] = {"label": v[0], "confidence": round(v[1], 4)}
                    elif isinstance(v, float):
                        row[task] = {"probability": round(v, 4)}
                    else:
                        row[task] = v
                    ref = r.get(REFERENCE_OF.get(task, task))
                    if ref is not None and isinstance(row[task], dict):
                        row[task]["reference"] = ref
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
                n += 1
    return n


def apply_labels(model: LabelModel, dialogues: list[Dialogue], *, min_precision: float, predictions: list | None = None) -> tuple[list[Dialogue], dict]:
    """The dialogues with the model's labels, each task's kept only where the model is confident
    enough for ``min_precision`` (by its calibration curves); and each task's share of turns labelled.
    ``predictions`` (``model.predict(dialogues)``) saves predicting again for another precision."""
    if not 0.0 < min_precision <= 1.0:
        raise InvalidInputError(explain(f"min_precision={min_precision}", "must be in (0, 1]", "e.g. 0.95"))
    curves = (getattr(model, "calibration_", None) or {}).get("curves") or {}

    def threshold(task: str) -> float | None:  # None: no confidence reaches it; the task is not labelled
        point = threshold_for(curves[task], min_precision)
        return point["threshold"] if point else None

    cut = {task: threshold(task) for task in APPLIED if task in curves}
    # an intent the NLU did not say needs the precision of its own curve (models calibrated before it had one: the intent curve)
    change_cut = threshold("intent_change") if "intent_change" in curves else cut.get("intent")
    preds = model.predict(dialogues) if predictions is None else predictions
    if len(preds) != len(dialogues):
        raise InvalidInputError(explain(f"{len(preds)} predictions for {len(dialogues)} dialogues", "need one per dialogue", "pass model.predict(dialogues)"))
    out, counts, turns = [], {t: 0 for t in cut}, 0
    for d, rows in zip(dialogues, preds):
        ex = []
        for e, p in zip(d.exchanges, rows):
            turns += 1
            labels = {}
            for task, th in cut.items():
                if task == "goal_intent":
                    continue
                v = p.get(task)
                if task == "intent" and v is not None and v[0] != e.features.get("intent"):
                    th = change_cut
                if th is None or v is None:
                    continue
                if task in BINARY:
                    if max(v, 1 - v) >= th:
                        labels[task] = int(v >= 0.5)
                elif task == "slots":
                    if p["slots_confidence"] >= th:
                        labels[task] = [{"name": s["name"], "value": s["value"]} for s in v]
                elif v[1] >= th:
                    labels[task] = v[0]
                if task in labels:
                    counts[task] += 1
            if _carry(p.get("goal_intent"), cut.get("goal_intent"), labels):
                counts["goal_intent"] += 1
            ex.append(Exchange(e.user, e.system, dict(e.features), labels, e.turn_id))
        out.append(Dialogue(d.dialogue_id, ex, d.label, d.user))
    coverage = {t: {"threshold": cut[t], "coverage": round(counts[t] / turns, 4) if turns else 0.0} for t in cut}
    if "intent" in coverage and "intent_change" in curves:
        coverage["intent"]["threshold_where_it_differs_from_nlu"] = change_cut
    return out, {"min_precision": min_precision, "turns": turns, "calibration": (model.calibration_ or {}).get("source"), "tasks": coverage}


def _carry(goal_intent, th, labels: dict) -> bool:
    """A failed attempt labelled with its goal's intent (goals.py) where that is confident enough;
    the goal then succeeded. Its own slot tags, read under another intent, are not kept."""
    if th is None or goal_intent is None or goal_intent[1] < th or labels.get("goal_success") == 0:
        return False
    if labels.get("intent") != goal_intent[0]:
        labels.pop("slots", None)
    labels.update(intent=goal_intent[0], goal_success=1)
    return True


def nlu_examples(dialogues: list[Dialogue], *, corrections_only: bool = False) -> list[dict]:
    """NLU training rows from labelled dialogues: every turn labelled as serving a goal that
    succeeded, with an intent: {"text", "intent", "slots", "users"}, where "slots" is null when the
    slots were not labelled (the row then teaches the intent only, never "this has no slots") and
    "users" are the (pseudonymous) users who said it, for training with user-level DP.
    ``corrections_only`` keeps the turns whose label differs from what the NLU said."""
    rows: dict[tuple, dict] = {}
    for d in dialogues:
        for e in d.exchanges:
            lab = e.labels
            if lab.get("goal_success") != 1 or "intent" not in lab or not e.user.strip():
                continue
            if corrections_only and lab["intent"] == e.features.get("intent"):
                continue
            key = (e.user, lab["intent"], json.dumps(lab.get("slots"), sort_keys=True))
            row = rows.setdefault(key, {"text": e.user, "intent": lab["intent"], "slots": lab.get("slots"), "users": []})
            if (d.user or d.dialogue_id) not in row["users"]:
                row["users"].append(d.user or d.dialogue_id)
    return list(rows.values())
