"""Trace and context features of a turn, as pure functions (tested beside them).

Numbers a turn's component traces carry (confidences, margins, entity scores and candidates,
result status), its feedback signals, and how it relates to the turn after it and to the end of
its retry chain (did the retry keep the words, the intent, the entities?). Missing values are 0
with a flag, so logs without n-best or entity scores still work."""

from __future__ import annotations

import math

import numpy as np
from rapidfuzz import fuzz

from ..signals.feedback import DEFECT_AT
from .turns import FpiTurn

__all__ = ["unresolved", "value_mismatch", "relation", "trace_features", "TRACE_FEATURES", "CATEGORICAL", "categories", "texts_of"]

CATEGORICAL = ("device_type", "domain", "status", "er_status")

TRACE_FEATURES = (
    "asr_conf", "asr_conf_missing", "nbest_n", "nbest_margin", "nbest_missing",
    "nlu_conf", "nlu_conf_missing", "nlu_margin", "nlu_top_k_missing", "n_slots", "log_words",
    "n_entities", "n_unresolved", "er_min_score", "er_mean_score", "er_max_candidates", "er_ambiguous", "er_value_mismatch",
    "barge_in", "feedback_negative", "feedback_positive", "prompted", "defect_score", "rephrase",
    "first_turn", "last_turn", "log_gap_prev", "log_gap_next",
    "has_next", "next_ratio", "next_token_set", "next_same_intent", "next_success", "next_defect", "next_asr_conf_delta",
    "next_more_words", "next_same_slot_values", "next_other_entity_same_value", "next_same_entities",
    "has_final", "final_success", "final_ratio", "final_same_intent", "final_same_slot_values", "final_other_entity_same_value",
    "final_same_entities", "final_more_words", "chain_position",
    "has_prev", "prev_ratio", "prev_defect", "prev_same_intent", "unseen_word_share", "min_word_usualness", "mean_word_usualness",
)


def _conf(v) -> tuple[float, float]:
    return (0.0, 1.0) if v is None else (float(v), 0.0)


def _margin(items: list[dict], key: str) -> tuple[float, float]:
    scores = sorted((float(x.get(key) or 0.0) for x in items if isinstance(x, dict)), reverse=True)
    if not scores:
        return 0.0, 1.0
    return (scores[0] - (scores[1] if len(scores) > 1 else 0.0)), 0.0


def _values(t: FpiTurn) -> set[str]:
    return {str(s.get("value", "")).lower() for s in t.slots if isinstance(s, dict)}


def _entities(t: FpiTurn) -> dict[str, str]:
    """slot value -> resolved id (None-free)"""
    return {str(e.get("value", "")).lower(): str(e.get("resolved_id")) for e in t.entities if isinstance(e, dict) and e.get("resolved_id")}


def unresolved(t: FpiTurn) -> int:
    """Entities the assistant could not resolve."""
    return sum(1 for e in t.entities if isinstance(e, dict) and not e.get("resolved_id"))


def value_mismatch(t: FpiTurn) -> float:
    """Share of resolved entities whose catalogue name is not what was said ("spaghetti squash" ->
    "spaghetti"): entity resolution picked something else."""
    pairs = [(str(e.get("value", "")).lower(), str(e.get("resolved_value") or "").lower()) for e in t.entities
             if isinstance(e, dict) and e.get("resolved_id") and e.get("resolved_value")]
    return sum(fuzz.ratio(a, b) < 90 for a, b in pairs) / len(pairs) if pairs else 0.0


def _slot_overlap(a: FpiTurn, b: FpiTurn) -> float:
    va, vb = _values(a), _values(b)
    if not va and not vb:
        return 1.0
    hits = sum(any(fuzz.ratio(x, y) >= 90 for y in vb) for x in va)
    return hits / max(len(va), len(vb))


REL = ("ratio", "token_set", "same_intent", "success", "defect", "asr_delta", "more_words", "same_slot_values",
       "other_entity_same_value", "same_entities")


def relation(t: FpiTurn, o: FpiTurn) -> dict[str, float]:
    """How a later turn ``o`` of the dialogue (the next one, or the retry chain's last) relates to ``t``:
    same words? same intent? same slot values resolved to other entities (entity resolution) or
    other values (misheard)? did it work?"""
    ea, eb = _entities(t), _entities(o)
    return {"ratio": fuzz.ratio(t.text, o.text) / 100, "token_set": fuzz.token_set_ratio(t.text, o.text) / 100,
            "same_intent": float(t.intent == o.intent), "success": float(o.status == "success" and o.defect_score < DEFECT_AT),
            "defect": o.defect_score, "asr_delta": (o.asr_confidence or 0.0) - (t.asr_confidence or 0.0),
            "more_words": float(len(o.text.split()) > len(t.text.split())), "same_slot_values": _slot_overlap(t, o),
            "other_entity_same_value": float(any(i != j and fuzz.partial_ratio(v, w) >= 90 for v, i in ea.items() for w, j in eb.items())),
            "same_entities": float(bool(ea) and ea == eb)}


def trace_features(t: FpiTurn) -> np.ndarray:
    """The :data:`TRACE_FEATURES` of one turn (float32)."""
    asr, asr_m = _conf(t.asr_confidence)
    nb_margin, nb_m = _margin(t.nbest, "confidence")
    nlu, nlu_m = _conf(t.nlu_confidence)
    nlu_margin, top_m = _margin(t.top_k, "confidence")
    scores = [float(e.get("score") or 0.0) for e in t.entities if isinstance(e, dict)]
    cands = [len(e.get("candidates") or []) if isinstance(e.get("candidates"), list) else int(e.get("candidates") or 0)
             for e in t.entities if isinstance(e, dict)]
    feats = [asr, asr_m, math.log1p(len(t.nbest)), nb_margin, nb_m,
             nlu, nlu_m, nlu_margin, top_m, float(len(t.slots)), math.log1p(len(t.text.split())),
             float(len(t.entities)), float(unresolved(t)), min(scores) if scores else 0.0, float(np.mean(scores)) if scores else 0.0,
             math.log1p(max(cands) if cands else 0), float(any(c > 1 for c in cands)), value_mismatch(t),
             float(t.barge_in), float(t.feedback == "negative"), float(t.feedback == "positive"), float(t.prompted), t.defect_score,
             float(t.rephrase), float(t.prev is None), float(t.next is None),
             math.log1p(t.gap_prev or 0.0), math.log1p(t.gap_next or 0.0)]
    nxt = relation(t, t.next) if t.next is not None else None
    feats += [0.0] * (1 + len(REL)) if nxt is None else [1.0] + [nxt[k] for k in REL]
    depth, o = 0, t
    while o.prev is not None and o.prev.rephrase:
        depth, o = depth + 1, o.prev
    fin = relation(t, t.final) if t.final is not None and t.final is not t else None
    keys = ("success", "ratio", "same_intent", "same_slot_values", "other_entity_same_value", "same_entities", "more_words")
    feats += ([0.0] * (1 + len(keys)) if fin is None else [1.0] + [fin[k] for k in keys]) + [math.log1p(depth)]
    p = t.prev
    feats += [0.0, 0.0, 0.0, 0.0] if p is None else [1.0, fuzz.ratio(t.text, p.text) / 100, p.defect_score, float(p.intent == t.intent)]
    feats += list(t.rarity)
    assert len(feats) == len(TRACE_FEATURES), (len(feats), len(TRACE_FEATURES))
    return np.asarray(feats, dtype=np.float32)


def categories(t: FpiTurn) -> tuple[str, ...]:
    return tuple(str(getattr(t, c) or "") for c in CATEGORICAL)


def texts_of(t: FpiTurn) -> tuple[str, str, str, str]:
    """The texts the encoder reads: the request, the reply, the next request, the chain's last request."""
    return t.text, t.response, t.next.text if t.next else "", t.final.text if t.final is not t else ""
