"""What the simulated assistant says and logs for one turn, and the hidden truth row beside it."""

from __future__ import annotations

import json
import math
import random


ACT_AT = 0.35  # NLU confidence below which the assistant says it did not understand

__all__ = ["ACT_AT", "respond", "log_turn", "truth_row", "device_context", "poisson", "geometric"]


def respond(it: list, skill_failed: bool) -> tuple[str, str]:
    intent, conf, _, slots, _, ents = it
    if intent == "unknown" or conf < ACT_AT:
        return "failure", "Sorry, I didn't get that."
    missing = [e for e in ents if e[2] == "unresolved"]
    if missing:
        return "failure", f"Sorry, I couldn't find {missing[0][1]}."
    if skill_failed:
        return "failure", "Sorry, something went wrong. Please try again later."
    if intent == "general_quirky":
        return "unsupported", "Sorry, I can't help with that yet."
    what = ", ".join(e[4] for e in ents if e[4]) or ", ".join(v for _, v in slots)
    return "success", f"OK, {intent.replace('_', ' ')}" + (f": {what}." if what else ".")

def log_turn(sid, ti, t, user, device, text, conf, it, status, response, fb, rewrite=None) -> dict:
    intent, nconf, top, slots, er_status, ents = it
    utt = {"text": text, "asr_confidence": round(conf, 3)}
    if rewrite is not None:
        utt["rewrite"] = rewrite
    turn = {
        "schema_version": 1,
        "session_id": sid,
        "turn_index": ti,
        "timestamp": t.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "user_id": user.user_id,
        "device_id": device["device_id"],
        "device": {"type": device["type"], "has_screen": device["has_screen"], "state": device["state"], "location": device["location"]},
        "utterance": utt,
        "nlu": {
            "domain": intent.split("_", 1)[0],
            "intent": intent,
            "slots": [{"name": n, "value": v} for n, v in slots],
            "confidence": nconf,
            "top_k": [{"intent": a, "confidence": b} for a, b in top],
        },
        "entity_resolution": {
            "status": er_status,
            "entities": [
                {"slot": e[0], "value": e[1], "resolved_id": e[3], "resolved_value": e[4], "score": min(1.0, e[5]), "candidates": e[6]}
                for e in ents
            ],
        },
        "response": {"status": status, "text": response, "action": intent if status == "success" else None},
        "latency_ms": round(250 + 500 * ((ti * 7919 + len(text) * 104729) % 1000) / 1000, 1),
        "feedback": fb,
    }
    return turn

def truth_row(sid, ti, user, goal_id, goal, intended, defective, fp, rephrase_of, attempt, action, kind, cond, reference, rewritten) -> dict:
    return {
        "session_id": sid,
        "turn_index": ti,
        "user_id": user.user_id,
        "goal_id": goal_id,
        "goal_slurp_id": goal["slurp_id"] if goal else None,
        "true_intent": goal["intent"] if goal else None,
        "true_slots": json.dumps(goal["slots"]) if goal else "[]",
        "intended_entities": json.dumps([i for i in intended if i]),
        "defective": defective,
        "failure_point": fp,
        "rephrase_of": rephrase_of,
        "attempt": attempt,
        "action": action,
        "surface_kind": kind,
        "condition": cond,
        "reference_text": reference,
        "rewritten": rewritten,
    }


def device_context(device: dict) -> dict:
    return {"type": device["type"], "has_screen": device["has_screen"], "location": device["location"]}


def poisson(r: random.Random, lam: float) -> int:
    # Knuth; lam is small (sessions per day)
    limit, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= r.random()
        if p <= limit:
            return k
        k += 1


def geometric(r: random.Random, p: float) -> int:
    k = 0
    while r.random() < p:
        k += 1
    return k
