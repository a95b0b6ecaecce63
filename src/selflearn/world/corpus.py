"""Readers for the world's two inputs: SLURP-format sentences and the ASR corpus.

Both formats are documented in docs/world.md. Every reader validates at the
boundary and names the file, line, value and fix when a record is unusable.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path


from ..errors import ChannelUnavailableError, InvalidInputError, UnreadableInputError, explain

__all__ = [
    "AsrRow",
    "Sentence",
    "load_asr_corpus",
    "load_sentences",
    "normalise",
    "parse_annotation",
    "word_error_rate",
]

_ANNOTATION = re.compile(r"\[\s*([a-z_]+)\s*:\s*([^\]]*?)\s*\]")


@dataclass(frozen=True)
class Sentence:
    """One request of the sentence set: the text a user means and its labels."""

    slurp_id: int
    text: str
    intent: str
    scenario: str
    slots: tuple[tuple[str, str], ...] = ()
    #: the words of ``text`` with the slot type each one belongs to ("" for none)
    tags: tuple[str, ...] = field(default=(), compare=False)


@dataclass(frozen=True)
class AsrRow:
    """What the recogniser heard for one sentence under one recording condition."""

    slurp_id: int
    condition: str
    hypothesis: str
    voice: str = ""
    rate: int = 0
    snr_db: float | None = None


def parse_annotation(annotation: str) -> tuple[tuple[str, ...], tuple[str, ...], tuple[tuple[str, str], ...]]:
    """Split a SLURP ``sentence_annotation`` into words, per-word slot tags and slots.

    >>> parse_annotation("wake me up at [time : five am] please")[2]
    (('time', 'five am'),)
    """
    words: list[str] = []
    tags: list[str] = []
    slots: list[tuple[str, str]] = []
    pos = 0
    for m in _ANNOTATION.finditer(annotation):
        for w in annotation[pos : m.start()].split():
            words.append(w)
            tags.append("")
        value_words = m.group(2).split()
        words.extend(value_words)
        tags.extend([m.group(1)] * len(value_words))
        if value_words:
            slots.append((m.group(1), " ".join(value_words)))
        pos = m.end()
    for w in annotation[pos:].split():
        words.append(w)
        tags.append("")
    return tuple(words), tuple(tags), tuple(slots)


def _records(path: Path):
    try:
        fh = open(path, encoding="utf-8")
    except OSError as exc:
        raise UnreadableInputError(
            explain(str(path), f"must be a readable file ({exc.strerror})", "check the path")
        ) from exc
    with fh:
        for line_no, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InvalidInputError(
                    explain(f"{path}:{line_no}", f"must be one JSON object per line ({exc.msg})", "fix or remove that line")
                ) from exc
            if not isinstance(record, dict):
                raise InvalidInputError(explain(f"{path}:{line_no}", "must be a JSON object", "fix or remove that line"))
            yield line_no, record


def _require_fields(record: dict, keys: tuple[str, ...], where: str, fmt: str) -> None:
    for key in keys:
        if key not in record:
            raise InvalidInputError(explain(where, f"needs the field {key!r} ({fmt})", "add it; the format is in docs/world.md"))


def load_sentences(paths: list[Path] | Path) -> list[Sentence]:
    """Read SLURP-format JSONL files (``slurp_id``, ``sentence``, ``intent``; optional
    ``sentence_annotation`` and ``scenario``). Duplicate ids keep the first row."""
    if isinstance(paths, Path):
        paths = [paths]
    out: dict[int, Sentence] = {}
    for path in paths:
        for line_no, r in _records(path):
            where = f"{path}:{line_no}"
            _require_fields(r, ("slurp_id", "sentence", "intent"), where, "SLURP format")
            if not isinstance(r["slurp_id"], int) or isinstance(r["slurp_id"], bool):
                raise InvalidInputError(explain(f"{where} slurp_id={r['slurp_id']!r}", "must be an integer", "use integer ids"))
            text = " ".join(str(r["sentence"]).lower().split())
            if not text:
                raise InvalidInputError(explain(f"{where} sentence=''", "must not be empty", "remove the row"))
            words, tags, slots = parse_annotation(str(r.get("sentence_annotation") or text).lower())
            if " ".join(words) != text:
                # annotation disagrees with the text: trust the text, drop the tags
                words, tags, slots = tuple(text.split()), ("",) * len(text.split()), ()
            intent = str(r["intent"])
            scenario = str(r.get("scenario") or intent.split("_", 1)[0])
            out.setdefault(r["slurp_id"], Sentence(r["slurp_id"], text, intent, scenario, slots, tags))
    if not out:
        raise InvalidInputError(explain(", ".join(map(str, paths)), "must contain at least one sentence", "pass a SLURP-format JSONL file"))
    return list(out.values())


def load_asr_corpus(paths: list[Path] | Path) -> dict[tuple[int, str], AsrRow]:
    """Read ASR-corpus JSONL (``slurp_id``, ``condition``, ``hypothesis``; see
    ../shared/data/asr/README.md) into a map keyed by (slurp_id, condition)."""
    if isinstance(paths, Path):
        paths = [paths]
    out: dict[tuple[int, str], AsrRow] = {}
    for path in paths:
        for line_no, r in _records(path):
            _require_fields(r, ("slurp_id", "condition", "hypothesis"), f"{path}:{line_no}", "ASR corpus format")
            row = AsrRow(
                int(r["slurp_id"]),
                str(r["condition"]),
                str(r["hypothesis"] or ""),
                str(r.get("voice") or ""),
                int(r.get("rate") or 0),
                r.get("snr_db"),
            )
            out.setdefault((row.slurp_id, row.condition), row)
    return out


_TIME = re.compile(r"\b(\d{1,2}):(\d{2})\b")
_ORDINAL = re.compile(r"\b(\d+)(st|nd|rd|th)\b")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_AMPM = re.compile(r"\b([ap])\.?\s?m\b\.?")
_PUNCT = re.compile(r"[^a-z0-9' ]+")


def num2words(n, **kw) -> str:
    """Spelled-out numbers (the simulated world's extra: ``pip install 'selflearn[world]'``)."""
    try:
        from num2words import num2words as spell
    except ImportError as exc:
        raise ChannelUnavailableError(explain("num2words", "must be installed to build the simulated world", "pip install 'selflearn[world]'")) from exc
    return spell(n, **kw)


def _spell(match: re.Match[str]) -> str:
    s = match.group(0)
    if "." in s:
        return " " + num2words(float(s)) + " "
    n = int(s)
    if 1100 <= n <= 2099 and len(s) == 4:
        return " " + num2words(n, to="year") + " "
    return " " + num2words(n) + " "


def _clock(match: re.Match[str]) -> str:
    h, m = int(match.group(1)), int(match.group(2))
    if m == 0:
        return f" {num2words(h)} "
    minutes = num2words(m) if m >= 10 else f"oh {num2words(m)}"
    return f" {num2words(h)} {minutes} "


def normalise(text: str) -> str:
    """The assistant's text normaliser: lower case, spelled-out numbers and
    times, no punctuation ("Wake me up at 5:30 a.m." → "wake me up at five thirty am").

    >>> normalise("Wake me up at 5:30 a.m.!")
    'wake me up at five thirty am'
    """
    t = text.lower().replace("%", " percent ").replace("$", " dollars ").replace("&", " and ")
    t = _AMPM.sub(lambda m: f" {m.group(1)}m ", t)
    t = _TIME.sub(_clock, t)
    t = _ORDINAL.sub(lambda m: " " + num2words(int(m.group(1)), to="ordinal") + " ", t)
    t = re.sub(r"\b\d{1,3}(?:,\d{3})+\b", lambda m: " " + num2words(int(m.group(0).replace(",", ""))) + " ", t)
    t = _NUMBER.sub(_spell, t)
    t = t.replace("-", " ")
    t = _PUNCT.sub(" ", t)
    return " ".join(w.strip("'") for w in t.split() if w.strip("'"))


def word_error_rate(reference: str, hypothesis: str) -> tuple[int, int]:
    """(word edits, reference words) between two normalised texts."""
    from rapidfuzz.distance import Levenshtein

    ref, hyp = reference.split(), hypothesis.split()
    return Levenshtein.distance(ref, hyp), len(ref)
