"""The interaction-log schema: a log is sessions of turns, one :class:`Turn` per record.

These pydantic models are the single source of truth. ``docs/log-schema.json`` is
generated from them (``python -m selflearn.logs.docs``), and the import's fast
SQL pre-check is compiled from that same JSON Schema, so the three cannot drift.

Rules a reader of the JSON Schema alone might miss:

* Every object accepts extra fields. They are kept in the store and written back
  on export, never dropped.
* Types are strict: ``"3"`` is not an integer and ``1`` is not a boolean.
* Timestamps are ISO 8601 text with a time zone (``Z`` or ``+hh:mm``, at most ±14:00); they are stored
  in UTC. A bare number (Unix time) is refused: its unit and zone are guesses.
* Hidden ground truth (what only a simulator knows) never lives in a turn: it is
  a separate table keyed by ``(session_id, turn_index)``.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "SCHEMA_VERSION",
    "SUPPORTED_SCHEMA_VERSIONS",
    "DeviceContext",
    "AsrHypothesis",
    "Utterance",
    "Slot",
    "IntentHypothesis",
    "NluInterpretation",
    "ResolvedEntity",
    "EntityResolution",
    "SystemResponse",
    "Feedback",
    "Turn",
]

SCHEMA_VERSION = 1
SUPPORTED_SCHEMA_VERSIONS = (1,)
MAX_TURN_INDEX = 2**31 - 1  # stored as a 32-bit integer
#: ISO 8601 / RFC 3339 with a zone: a date, "T" or a space, hours and minutes (seconds and fractions
#: optional), then Z or an offset of at most 14 hours (the widest in use).
ISO_WITHOUT_ZONE = re.compile(r"^\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d(:\d\d(\.\d{1,9})?)?$")
ISO_WITH_ZONE = re.compile(r"^\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d(:\d\d(\.\d{1,9})?)?([Zz]|[+-](0\d|1[0-4]):?[0-5]\d)$")

Probability = Annotated[float, Field(ge=0.0, le=1.0)]
NonEmpty = Annotated[str, Field(min_length=1)]
StateValue = str | int | float | bool | None


class _Record(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True, allow_inf_nan=False, frozen=True)


class DeviceContext(_Record):
    """The device the request was spoken to, and what it was doing."""

    type: NonEmpty = Field(description="Device type, e.g. 'speaker', 'screen_speaker', 'phone', 'car', 'tv'.")
    has_screen: bool = Field(description="Whether the device can show a visual response.")
    state: dict[str, StateValue] = Field(
        default_factory=dict,
        description="Device-state map at request time, e.g. {'oven': 'on', 'volume': 7, 'playing': true}.",
    )
    location: str | None = Field(None, description="Where the device is: a room, or a place such as 'Wilkerson, CA'.")


class AsrHypothesis(_Record):
    """One entry of the recognizer's n-best list."""

    text: str = Field(description="Recognized text.")
    confidence: Probability | None = Field(None, description="Recognizer confidence in [0, 1].")


class Utterance(_Record):
    """What the user said, as the speech recognizer heard it."""

    text: str = Field(description="ASR hypothesis (the 1-best), or the typed text of a chat turn. May be empty.")
    asr_confidence: Probability | None = Field(None, description="ASR confidence of the 1-best in [0, 1].")
    nbest: list[AsrHypothesis] | None = Field(None, description="Optional n-best list, best first.")
    audio_ref: str | None = Field(None, description="Optional reference (path or URI) to the request's audio.")


class Slot(_Record):
    """A slot filled by NLU: its type and the words that fill it."""

    name: NonEmpty = Field(description="Slot type, e.g. 'song_name', 'place_name'.")
    value: str = Field(description="Slot value as it appears in the utterance.")


class IntentHypothesis(_Record):
    """One entry of NLU's top-k list."""

    intent: NonEmpty = Field(description="Intent name.")
    domain: str | None = Field(None, description="Domain of this hypothesis.")
    confidence: Probability | None = Field(None, description="NLU confidence in [0, 1].")


class NluInterpretation(_Record):
    """What natural-language understanding made of the utterance."""

    domain: NonEmpty = Field(description="Domain (SLURP calls it scenario), e.g. 'music', 'weather'.")
    intent: NonEmpty = Field(description="Intent, e.g. 'play_music'.")
    slots: list[Slot] = Field(default_factory=list, description="Slots with their values.")
    confidence: Probability | None = Field(None, description="Confidence of the chosen intent in [0, 1].")
    top_k: list[IntentHypothesis] | None = Field(None, description="Optional top-k intent hypotheses, best first.")


class ResolvedEntity(_Record):
    """One slot value looked up in a catalogue."""

    slot: NonEmpty = Field(description="Slot name the value came from.")
    value: str = Field(description="The slot value that was looked up.")
    resolved_id: str | None = Field(None, description="Catalogue id it resolved to; null when unresolved.")
    resolved_value: str | None = Field(None, description="Canonical catalogue name of the resolved entity.")
    score: Probability | None = Field(None, description="Match score in [0, 1].")
    candidates: Annotated[int, Field(ge=0)] | None = Field(None, description="How many catalogue entries matched.")


class EntityResolution(_Record):
    """The outcome of entity resolution for the turn."""

    status: Literal["resolved", "partial", "ambiguous", "unresolved", "not_applicable"] = Field(
        description="'resolved': every entity found; 'partial': some; 'ambiguous': several equally good "
        "candidates; 'unresolved': none found; 'not_applicable': the request had nothing to resolve."
    )
    entities: list[ResolvedEntity] = Field(default_factory=list, description="Per-entity outcomes.")


class SystemResponse(_Record):
    """What the assistant said and did."""

    status: Literal["success", "failure", "unsupported", "clarification", "no_response"] = Field(
        description="'success': the action ran; 'failure': it was attempted and failed; 'unsupported': the "
        "assistant cannot do this; 'clarification': it asked a question back; 'no_response': nothing happened."
    )
    text: str | None = Field(None, description="The spoken or shown response.")
    action: str | None = Field(None, description="Name of the action taken, e.g. 'play_music'.")


class Feedback(_Record):
    """What the user signalled about this turn, explicitly or not."""

    barge_in: bool = Field(False, description="The user interrupted the response.")
    explicit: Literal["positive", "negative"] | None = Field(
        None, description="Explicit feedback on this turn ('no, that's not what I asked' is negative)."
    )
    prompted: bool = Field(False, description="The explicit feedback answered the assistant's 'Did I answer your question?'.")
    comment: str | None = Field(None, description="The user's words, when the feedback was spoken.")


class Turn(_Record):
    """One request and the assistant's handling of it. A session is the turns sharing ``session_id``."""

    schema_version: Literal[1] = Field(description="Version of this schema the record follows. Supported: 1.")
    session_id: NonEmpty = Field(description="Session (dialogue) id; its turns are ordered by turn_index.")
    turn_index: Annotated[int, Field(ge=0, le=MAX_TURN_INDEX)] = Field(description="Position in the session, from 0, unique in it.")
    timestamp: AwareDatetime = Field(description="When the request started, ISO 8601 with a time zone; stored in UTC.")
    user_id: NonEmpty = Field(description="Pseudonymous user id (never a name, e-mail or phone number).")
    device_id: NonEmpty = Field(description="Device id.")
    device: DeviceContext
    utterance: Utterance
    nlu: NluInterpretation | None = Field(None, description="Null when NLU did not run (e.g. nothing was heard).")
    entity_resolution: EntityResolution | None = Field(None, description="Null when entity resolution did not run.")
    response: SystemResponse | None = Field(None, description="Null when the assistant did not respond.")
    latency_ms: Annotated[float, Field(ge=0.0)] | None = Field(None, description="End-to-end latency in ms.")
    feedback: Feedback = Field(default_factory=Feedback, description="Barge-in and explicit feedback.")

    @field_validator("timestamp", mode="before")
    @classmethod
    def _iso_text(cls, value):
        # pydantic alone also reads "1700000000" as Unix time and accepts offsets such as +25:00
        if isinstance(value, str):
            if not ISO_WITH_ZONE.match(value):
                if ISO_WITHOUT_ZONE.match(value):
                    raise ValueError("input should have timezone info")
                raise ValueError("must be ISO 8601 text with a zone (Z or an offset within ±14:00)")
            try:
                return datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
            except ValueError as exc:  # e.g. 2026-02-30
                raise ValueError(f"is not a real date and time ({exc})") from None
        return value

    @field_validator("timestamp")
    @classmethod
    def _to_utc(cls, value: datetime) -> datetime:
        return value.astimezone(UTC)
