"""Scoring labels against reference labels: per-task metrics and precision/coverage curves.

Predictions (the model's, or the weak labels as a baseline) and references are per-exchange dicts
in the shape ``LabelModel.predict`` returns. A prediction's *confidence* is max(p, 1 - p) for a
binary task and the top probability otherwise, so a curve answers "if I keep only the labels this
confident, how many turns get one and how many of those are right"."""

from __future__ import annotations

import numpy as np

from .. import metrics

__all__ = ["evaluate_predictions", "precision_coverage", "threshold_for", "reference_targets", "labels_as_predictions", "BINARY"]

BINARY = ("defect", "same_goal", "goal_success")


def reference_targets(dialogues) -> list[list[dict]]:
    """The reference label of each task per exchange (None where the data has none)."""
    out = []
    for d in dialogues:
        rows = []
        for t, e in enumerate(d.exchanges):
            lab = e.labels
            prev = d.exchanges[t - 1].labels.get("goal") if t > 0 else None
            rows.append({"defect": lab.get("defect"), "goal_success": lab.get("goal_success"),
                         "same_goal": int(lab["goal"] == prev) if t > 0 and "goal" in lab and prev is not None else None,
                         "intent": lab.get("intent"), "slots": lab.get("slots"), "satisfaction": lab.get("satisfaction"),
                         "dialogue_label": (str(d.label) if d.label is not None else None) if t == 0 else None,
                         "nlu_intent": e.features.get("intent")})
        out.append(rows)
    return out


def labels_as_predictions(dialogues) -> list[list[dict]]:
    """A dialogue set's own labels in the shape of predictions, each with confidence 1 (how the
    weak labels are scored as the "feedback heuristics alone" baseline)."""
    out = []
    for rows in reference_targets(dialogues):
        out.append([{k: (v if k in BINARY or v is None else (v if k == "slots" else (v, 1.0))) for k, v in r.items()}
                    | {"slots_confidence": 1.0} for r in rows])
    return out


REFERENCE_OF = {"goal_intent": "intent"}  # a composed task scored against another task's labels


def _pairs(pred, ref, task):
    """(predicted value, confidence, reference value) for exchanges where both exist."""
    out = []
    for pd, rd in zip(pred, ref):
        for p, r in zip(pd, rd):
            pv, rv = p.get(task), r.get(REFERENCE_OF.get(task, task))
            if pv is None or rv is None:
                continue
            if task in BINARY:
                out.append((int(pv >= 0.5), max(pv, 1 - pv), int(rv), float(pv)))
            elif task == "slots":
                out.append((pv, p.get("slots_confidence", 1.0), rv, None))
            else:
                out.append((pv[0], pv[1], rv, None))
    return out


def precision_coverage(conf: np.ndarray, right: np.ndarray, total: int, points: int = 50) -> list[dict]:
    """Precision among the labels at least as confident as each threshold and their share of
    ``total`` turns, at about ``points`` thresholds spread over the confidences."""
    return [{"threshold": round(p["threshold"], 6), "count": p["count"], "precision": round(p["precision"], 4), "coverage": round(p["coverage"], 4)}
            for p in metrics.thin(metrics.precision_coverage(conf, right, total), points)]


threshold_for = metrics.threshold_for


def evaluate_predictions(pred: list[list[dict]], ref: list[list[dict]], *, precision_targets=(0.9, 0.95), curves: bool = True) -> dict:
    """Per task: accuracy, macro precision/recall(=UAR)/F1, Cohen's kappa, Spearman's rho (tasks
    whose classes are ordered), per-class figures, AUC where binary, and (``curves``) the
    precision/coverage curve with the coverage at each precision target."""
    turns = sum(len(d) for d in ref)
    out: dict = {"turns": turns}
    for task in ("defect", "same_goal", "goal_success", "intent", "goal_intent", "satisfaction", "dialogue_label", "slots"):
        rows = _pairs(pred, ref, task)
        if not rows:
            continue
        total = sum(1 for rd in ref for r in rd if r.get(REFERENCE_OF.get(task, task)) is not None)
        if task == "slots":
            if curves:
                out[task] = _slot_metrics(rows, total, precision_targets)
            continue
        y_pred = [r[0] for r in rows]
        y_true = [r[2] for r in rows]
        right = np.array([a == b for a, b in zip(y_pred, y_true)])
        labels = sorted({str(x) for x in y_true} | {str(x) for x in y_pred})
        sp, st = [str(x) for x in y_pred], [str(x) for x in y_true]
        report = metrics.classification_report(st, sp, labels)
        agree = metrics.agreement(st, sp, labels, order=_order(labels))
        m = {"n": len(rows), "coverage_of_reference": round(len(rows) / total, 4) if total else None,
             "accuracy": round(report["accuracy"], 4), "macro_precision": round(report["macro_precision"], 4),
             "macro_recall": round(report["macro_recall"], 4), "uar": round(report["macro_recall"], 4), "macro_f1": round(report["macro_f1"], 4),
             **{k: (round(v, 4) if v is not None else None) for k, v in agree.items()}}
        if task in BINARY:
            tp = float(((np.array(y_pred) == 1) & (np.array(y_true) == 1)).sum())
            pp, tt = float(sum(y_pred)), float(sum(y_true))
            m.update({"precision": round(tp / pp, 4) if pp else 0.0, "recall": round(tp / tt, 4) if tt else 0.0})
            m["f1"] = round(2 * m["precision"] * m["recall"] / (m["precision"] + m["recall"]), 4) if m["precision"] + m["recall"] else 0.0
            area = metrics.auc(y_true, [r[3] for r in rows])
            if area is not None:
                m["auc"] = round(area, 4)
        n = np.array([report["per_class"][c]["support"] for c in labels])
        top = np.argsort(-n)[:20] if len(labels) > 20 else range(len(labels))
        m["per_class"] = {labels[i]: {k: (round(v, 4) if k != "support" else v) for k, v in report["per_class"][labels[i]].items()} for i in top}
        if curves:
            curve = precision_coverage(np.array([r[1] for r in rows]), right, total)
            m["curve"] = curve
            m["coverage_at"] = {str(t): (threshold_for(curve, t) or {}).get("coverage", 0.0) for t in precision_targets}
        out[task] = m
    change = _intent_change(pred, ref, precision_targets) if curves else None
    if change:
        out["intent_change"] = change
    return out


def _order(labels: list[str]) -> list[str] | None:
    """The classes in their natural order when they have one (binary, a 1-5 scale, the three
    satisfaction classes), else None (no rank correlation for unordered classes)."""
    from .dialogues import SATISFACTION_WORDS

    if set(labels) <= {"0", "1"}:
        return ["0", "1"]
    if set(labels) <= set(SATISFACTION_WORDS):
        return list(SATISFACTION_WORDS)
    if all(x.isdigit() for x in labels) and len(labels) <= 10:
        return sorted(labels, key=int)
    return None


def _intent_change(pred, ref, precision_targets) -> dict | None:
    """Intent labels that differ from what the assistant's NLU said on the turn: the labels that can
    teach the NLU something, and the riskiest ones. Their own curve lets them get their own threshold."""
    rows = [(p["intent"][0], p["intent"][1], r["intent"]) for pd, rd in zip(pred, ref) for p, r in zip(pd, rd)
            if p.get("intent") is not None and r.get("intent") is not None and r.get("nlu_intent") and p["intent"][0] != r["nlu_intent"]]
    if not rows:
        return None
    total = sum(1 for rd in ref for r in rd if r.get("intent") is not None)
    right = np.array([a == b for a, _, b in rows])
    curve = precision_coverage(np.array([c for _, c, _ in rows]), right, total)
    return {"n": len(rows), "accuracy": round(float(right.mean()), 4), "curve": curve,
            "coverage_at": {str(t): (threshold_for(curve, t) or {}).get("coverage", 0.0) for t in precision_targets}}


def _slot_metrics(rows, total, precision_targets) -> dict:
    tp_t = fp_t = fn_t = tp_v = fp_v = fn_v = 0
    right = []
    for pv, _, rv, _ in rows:
        pt, rt = _multiset([s["name"] for s in pv]), _multiset([s["name"] for s in rv])
        pvv, rvv = _multiset([(s["name"], s["value"]) for s in pv]), _multiset([(s["name"], s["value"]) for s in rv])
        a, b = _overlap(pt, rt), _overlap(pvv, rvv)
        tp_t, fp_t, fn_t = tp_t + a, fp_t + sum(pt.values()) - a, fn_t + sum(rt.values()) - a
        tp_v, fp_v, fn_v = tp_v + b, fp_v + sum(pvv.values()) - b, fn_v + sum(rvv.values()) - b
        right.append(pvv == rvv)

    def prf(tp, fp, fn):
        return {k: round(v, 4) for k, v in metrics.prf(tp, fp, fn).items()}

    curve = precision_coverage(np.array([r[1] for r in rows]), np.array(right), total)
    return {"n": len(rows), "slot_types": prf(tp_t, fp_t, fn_t), "slot_values": prf(tp_v, fp_v, fn_v),
            "turn_exact": round(float(np.mean(right)), 4), "curve": curve,
            "coverage_at": {str(t): (threshold_for(curve, t) or {}).get("coverage", 0.0) for t in precision_targets}}


def _multiset(items):
    from collections import Counter

    return Counter(items)


def _overlap(a, b) -> int:
    return sum((a & b).values())
