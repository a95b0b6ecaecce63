"""Adapter: Rasa tracker-store exports -> selflearn turns.

Rasa (the open-source assistant framework) stores each conversation as a tracker:
``{"sender_id": ..., "events": [...]}``. An export is one tracker, a JSON list of
trackers, or JSONL with one tracker per line (what ``rasa export`` and the
tracker-store ``/conversations/{id}/tracker`` endpoint give).

Mapping, one turn per ``user`` event:

* session: ``session_started`` and ``restart`` events start a new session; its
  id is ``<sender_id>#<n>``. ``turn_index`` counts user events in the session.
* ``user_id``: the sender id. Channel sender ids are often phone numbers or e-mail
  addresses: the import replaces it, the session id that embeds it and the device id
  by keyed pseudonyms (HMAC-SHA256, :mod:`selflearn.privacy.pseudonyms`); an unkeyed
  hash would be reversible by trying every phone number.
* device: the ``input_channel`` (``rest``, ``socketio``, ``twilio``...) as type
  and id; chat channels have a screen, voice ones (``twilio_voice``, ``audiocodes``,
  ``genesys``...) do not.
* NLU: ``parse_data.intent`` (name, confidence), ``intent_ranking`` as top-k,
  entities as slots. Rasa has no domains: the domain is the part of a
  ``scenario_action`` intent name before the first ``_``, else the intent.
* response: the ``bot`` texts until the next user event, the last action other
  than ``action_listen``; status ``unsupported`` for ``action_default_fallback``
  or the ``nlu_fallback`` intent, ``failure`` for ``action_execution_rejected``,
  ``no_response`` when nothing followed, else ``success``.
* latency: first bot event time minus the user event time.
* extras kept under ``rasa``: message id, channel metadata, slots set in the turn,
  and ``rewound`` when a later ``rewind`` event undid the turn.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from selflearn.errors import InvalidInputError, UnreadableInputError, explain

__all__ = ["rasa_turns", "tracker_to_turns"]

_VOICE_CHANNELS = {"twilio_voice", "audiocodes", "genesys", "alexa", "google_assistant", "jambonz", "vonage"}
_FALLBACKS = {"action_default_fallback", "action_two_stage_fallback"}



def _iso(ts: float) -> str:
    return datetime.fromtimestamp(float(ts), UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _domain(intent: str) -> str:
    return intent.split("_", 1)[0] if "_" in intent.strip("_") else intent


def tracker_to_turns(tracker: dict[str, Any]) -> list[dict[str, Any]]:
    """The turns of one tracker, as log records (dicts ready for validation)."""
    sender = tracker.get("sender_id")
    events = tracker.get("events")
    if not isinstance(sender, str) or not isinstance(events, list):
        raise InvalidInputError(
            explain(str(tracker)[:80], "a Rasa tracker needs a string 'sender_id' and an 'events' list",
                    "export trackers with `rasa export` or the tracker endpoint")
        )
    turns: list[dict[str, Any]] = []
    session_n, turn_index, current = 0, 0, None
    user_id = sender

    def close() -> None:
        nonlocal current
        if current is not None:
            resp = current["response"]
            texts = resp.pop("_texts")
            if texts:
                resp["text"] = "\n".join(texts)
            if resp["status"] == "_pending":
                resp["status"] = "success" if texts or resp.get("action") else "no_response"
            turns.append(current)
        current = None

    for ev in events:
        kind = ev.get("event") if isinstance(ev, dict) else None
        if kind in ("session_started", "restart"):
            close()
            if turn_index:
                session_n += 1
            turn_index = 0
        elif kind == "user":
            close()
            parse = ev.get("parse_data") or {}
            intent = (parse.get("intent") or {}).get("name")
            channel = ev.get("input_channel") or "rasa"
            current = {
                "schema_version": 1,
                "session_id": f"{sender}#{session_n}",
                "turn_index": turn_index,
                "timestamp": _iso(ev["timestamp"]) if "timestamp" in ev else None,
                "user_id": user_id,
                "device_id": channel,
                "device": {"type": channel, "has_screen": channel not in _VOICE_CHANNELS},
                "utterance": {"text": ev.get("text") or ""},
                "response": {"status": "_pending", "_texts": []},
                "rasa": {k: v for k, v in (("message_id", ev.get("message_id")),
                                           ("metadata", ev.get("metadata") or None)) if v is not None},
            }
            if intent:
                nlu: dict[str, Any] = {
                    "domain": _domain(intent),
                    "intent": intent,
                    "slots": [
                        {"name": e.get("entity"), "value": str(e.get("value"))}
                        for e in parse.get("entities") or []
                        if e.get("entity")
                    ],
                    "confidence": (parse.get("intent") or {}).get("confidence"),
                }
                ranking = [
                    {"intent": r["name"], "confidence": r.get("confidence")}
                    for r in parse.get("intent_ranking") or []
                    if r.get("name")
                ]
                if ranking:
                    nlu["top_k"] = ranking
                current["nlu"] = nlu
                if intent == "nlu_fallback":
                    current["response"]["status"] = "unsupported"
            turn_index += 1
        elif current is not None and kind == "bot":
            resp = current["response"]
            if not resp["_texts"] and "timestamp" in ev and current["timestamp"]:
                latency = (float(ev["timestamp"]) - datetime.fromisoformat(current["timestamp"]).timestamp()) * 1000
                current["latency_ms"] = round(max(latency, 0.0), 3)
            if ev.get("text"):
                resp["_texts"].append(ev["text"])
        elif current is not None and kind == "action" and ev.get("name") not in (None, "action_listen"):
            current["response"]["action"] = ev["name"]
            if ev["name"] in _FALLBACKS:
                current["response"]["status"] = "unsupported"
        elif current is not None and kind == "action_execution_rejected":
            current["response"]["status"] = "failure"
        elif current is not None and kind == "slot" and ev.get("name"):
            current["rasa"].setdefault("slots_set", {})[ev["name"]] = ev.get("value")
        elif kind == "rewind" and current is not None:
            current["rasa"]["rewound"] = True
    close()
    for turn in turns:
        if not turn["rasa"]:
            del turn["rasa"]
    return turns


def _trackers(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UnreadableInputError(explain(str(path), f"cannot be read as UTF-8 text ({exc})", "check the path")) from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        data = None
    if isinstance(data, dict):
        yield 1, data
        return
    if isinstance(data, list):
        yield from ((i, t) for i, t in enumerate(data, start=1))
        return
    for line_no, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                yield line_no, json.loads(line)
            except json.JSONDecodeError as exc:
                raise UnreadableInputError(
                    explain(str(path), f"is not a Rasa tracker export (line {line_no}: {exc.msg})",
                            "pass one tracker, a JSON list of trackers, or JSONL with one tracker per line")
                ) from exc


def rasa_turns(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(n, turn) for every user message in the export, n counting turns from 1 across trackers."""
    n = 0
    for position, tracker in _trackers(path):
        if not isinstance(tracker, dict):
            raise InvalidInputError(
                explain(f"tracker {position}", "is not a JSON object", "export trackers with `rasa export`")
            )
        for turn in tracker_to_turns(tracker):
            n += 1
            yield n, turn
