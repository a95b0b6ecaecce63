"""Labelled dialogues in the documented JSONL format (docs/dialogue-format.md), read with every bad
line quarantined and every good one kept, and the model's unit: an *exchange* (a user turn and the
system's reply to it), with optional features and labels.

One dialogue per line::

    {"dialogue_id": "d1", "label": 1,
     "turns": [{"speaker": "user", "text": "play jaz", "labels": {"defect": 1, "goal": "g1"},
                "features": {"intent": "music_play", "asr_confidence": 0.61}},
               {"speaker": "system", "text": "Playing jazz"}]}
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InvalidInputError, UnreadableInputError, explain

__all__ = ["Exchange", "Dialogue", "TURN_LABELS", "CATEGORICAL", "NUMERIC", "read_dialogues", "write_dialogues", "parse_dialogue"]

#: per-turn labels a dialogue may carry (all optional): what each must be
TURN_LABELS = {
    "defect": "0 or 1",
    "satisfaction": "an integer 1-5 or one of \"dissatisfied\", \"neutral\", \"satisfied\"",
    "ratings": "a non-empty list of numbers (the annotators' raw ratings; kept, not learned)",
    "intent": "a non-empty string",
    "slots": "a list of {\"name\": str, \"value\": str}",
    "goal": "a string or integer naming the goal the turn serves (turns with the same goal are one segment)",
    "goal_success": "0 or 1 (whether the goal this turn serves was achieved)",
}
CATEGORICAL = ("domain", "intent", "status", "device_type", "feedback")  # optional per-turn features, strings ("feedback": positive | negative)
NUMERIC = ("asr_confidence", "nlu_confidence", "gap_s", "barge_in")  # optional per-turn features, numbers >= 0 (barge_in: 0 or 1)
MAX_TEXT = 2000
SATISFACTION_WORDS = ("dissatisfied", "neutral", "satisfied")  # the three classes, in order


@dataclass
class Exchange:
    """A user turn, the system's reply (empty when there was none), features and labels."""

    user: str
    system: str = ""
    features: dict = field(default_factory=dict)
    labels: dict = field(default_factory=dict)
    turn_id: str | int | None = None  # the user turn's id in its source (the store's turn_index)


@dataclass
class Dialogue:
    dialogue_id: str
    exchanges: list[Exchange]
    label: str | int | None = None
    user: str = ""  # who spoke (a pseudonym): the unit of differential privacy; "" = the dialogue is its own unit

    def to_json(self) -> dict:
        turns = []
        for e in self.exchanges:
            u = {"speaker": "user", "text": e.user}
            if e.turn_id is not None:
                u["turn_id"] = e.turn_id
            if e.labels:
                u["labels"] = e.labels
            if e.features:
                u["features"] = e.features
            turns.append(u)
            if e.system:
                turns.append({"speaker": "system", "text": e.system})
        d = {"dialogue_id": self.dialogue_id, "turns": turns}
        if self.user:
            d["user"] = self.user
        if self.label is not None:
            d["label"] = self.label
        return d


def _check_labels(labels, where: str) -> dict:
    if not isinstance(labels, dict):
        raise ValueError(f"{where}.labels={labels!r}: must be an object of labels; fix: e.g. {{\"defect\": 1}}")
    for k, v in labels.items():
        ok = {
            "defect": lambda v: v in (0, 1) and not isinstance(v, float),
            "goal_success": lambda v: v in (0, 1) and not isinstance(v, float),
            "satisfaction": lambda v: (isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 5) or v in SATISFACTION_WORDS,
            "ratings": lambda v: isinstance(v, list) and v != [] and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v),
            "intent": lambda v: isinstance(v, str) and v.strip() != "",
            "goal": lambda v: (isinstance(v, str) and v != "") or (isinstance(v, int) and not isinstance(v, bool)),
            "slots": lambda v: isinstance(v, list) and all(isinstance(s, dict) and isinstance(s.get("name"), str) and s["name"]
                                                           and isinstance(s.get("value"), str) for s in v),
        }.get(k)
        if ok is None:
            raise ValueError(f"{where}.labels.{k}: is not a known label; fix: use one of {sorted(TURN_LABELS)} (or drop it)")
        if not ok(v):
            raise ValueError(f"{where}.labels.{k}={v!r}: must be {TURN_LABELS[k]}; fix: correct or drop the label")
    return labels


def _check_features(features, where: str) -> dict:
    if not isinstance(features, dict):
        raise ValueError(f"{where}.features={features!r}: must be an object; fix: e.g. {{\"asr_confidence\": 0.9}}")
    out = {}
    for k, v in features.items():
        if k in CATEGORICAL:
            if v is not None and not isinstance(v, str):
                raise ValueError(f"{where}.features.{k}={v!r}: must be a string or null; fix: e.g. \"music\"")
        elif k in NUMERIC:
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0):
                raise ValueError(f"{where}.features.{k}={v!r}: must be a finite number >= 0 or null; fix: e.g. 0.9")
        # other features are kept but unused
        out[k] = v
    return out


def parse_dialogue(obj) -> Dialogue:
    """One JSON object → a :class:`Dialogue`; raises ValueError naming the field, rule and fix."""
    if not isinstance(obj, dict):
        raise ValueError(f"{str(obj)[:60]!r}: a line must be a JSON object; fix: one dialogue object per line")
    did = obj.get("dialogue_id")
    if not isinstance(did, (str, int)) or isinstance(did, bool) or did == "":
        raise ValueError(f"dialogue_id={did!r}: must be a non-empty string; fix: give each dialogue an id")
    turns = obj.get("turns")
    if not isinstance(turns, list) or not turns:
        raise ValueError(f"dialogue {did}: turns={str(turns)[:40]!r}: must be a non-empty list; fix: list the turns in order")
    label = obj.get("label")
    if label is not None and (isinstance(label, (bool, float)) or not isinstance(label, (str, int))):
        raise ValueError(f"dialogue {did}: label={label!r}: must be a string or integer; fix: e.g. 1 or \"success\"")
    exchanges: list[Exchange] = []
    for k, t in enumerate(turns):
        where = f"dialogue {did}: turns[{k}]"
        if not isinstance(t, dict):
            raise ValueError(f"{where}={t!r}: must be an object; fix: {{\"speaker\": \"user\", \"text\": \"...\"}}")
        sp, text = t.get("speaker"), t.get("text")
        if sp not in ("user", "system"):
            raise ValueError(f"{where}.speaker={sp!r}: must be 'user' or 'system'; fix: name who spoke")
        if not isinstance(text, str) or len(text) > MAX_TEXT:
            raise ValueError(f"{where}.text: must be a string of at most {MAX_TEXT} characters; fix: correct the text")
        if sp == "system":
            if "labels" in t:
                raise ValueError(f"{where}: labels belong on user turns; fix: move them to the user turn the system answered")
            if exchanges:
                exchanges[-1].system = (exchanges[-1].system + " " + text).strip()
            continue  # a system opening before any user turn carries no label
        tid = t.get("turn_id")
        if tid is not None and (isinstance(tid, bool) or not isinstance(tid, (str, int))):
            raise ValueError(f"{where}.turn_id={tid!r}: must be a string or integer; fix: drop it or give the turn's id")
        exchanges.append(Exchange(text, "", _check_features(t.get("features", {}), where), _check_labels(t.get("labels", {}), where), tid))
    if not exchanges:
        raise ValueError(f"dialogue {did}: has no user turn; fix: a dialogue needs at least one user turn")
    user = obj.get("user", "")
    if not isinstance(user, str) or len(user) > 200:
        raise ValueError(f"dialogue {did}: user={str(user)[:40]!r}: must be a string of at most 200 characters; fix: the speaker's (pseudonymous) id")
    return Dialogue(str(did), exchanges, label, user)


def read_dialogues(path: Path) -> tuple[list[Dialogue], list[dict]]:
    """Every good dialogue of a JSONL file, and one quarantine record (line, reason, raw) per bad
    line; a repeated dialogue_id is quarantined, the first kept."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise UnreadableInputError(explain(str(path), f"must be a readable UTF-8 JSONL file ({exc})", "check the path")) from exc
    good, bad, seen = [], [], set()
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            d = parse_dialogue(json.loads(line))
            if d.dialogue_id in seen:
                raise ValueError(f"dialogue_id={d.dialogue_id!r}: appears twice; fix: ids must be unique (the first was kept)")
            seen.add(d.dialogue_id)
            good.append(d)
        except ValueError as exc:  # json.JSONDecodeError is a ValueError
            bad.append({"line": n, "reason": str(exc), "raw": line[:2000]})
    if not good:
        why = bad[0]["reason"] if bad else "the file is empty"
        raise InvalidInputError(explain(str(path), f"holds no valid dialogue ({len(bad)} bad lines; first: {why})",
                                        "see docs/dialogue-format.md"))
    return good, bad


def write_dialogues(dialogues, path: Path) -> int:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for d in dialogues:
            f.write(json.dumps(d.to_json(), ensure_ascii=False) + "\n")
    tmp.replace(path)
    return len(dialogues)
