"""Rated dialogues → the dialogue format: the USS text format (Sun et al., SIGIR 2021; also what
its SGD, MultiWOZ, ReDial, CCPE and JDDC files use), each user turn's annotator ratings turned into
the three satisfaction classes of the published protocol, and a seeded split by dialogue.

USS format: tab-separated lines ``ROLE<TAB>text<TAB>action<TAB>ratings`` (ROLE is USER or SYSTEM,
ratings comma-separated integers, on user lines only), dialogues separated by blank lines; a last
USER line with text ``OVERALL`` rates the whole dialogue.

The protocol (USDA, Deng et al. WWW 2022; ASAP, Ye et al. ACL 2023): keep dialogues with at least two
rated user turns, split 8:1:1 by dialogue, and label a turn by the MEAN of its ratings: below the
scale's middle is ``dissatisfied``, at it ``neutral``, above it ``satisfied``.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

from ..errors import InvalidInputError, UnreadableInputError, explain
from .dialogues import MAX_TEXT, SATISFACTION_WORDS, Dialogue, Exchange, write_dialogues

__all__ = ["satisfaction_class", "read_uss", "split_dialogues", "import_rated", "parse_split"]


def satisfaction_class(ratings: list[float], middle: float = 3.0) -> str:
    """The class of a turn from its annotators' ratings: the mean below, at or above ``middle``."""
    mean = sum(ratings) / len(ratings)
    if math.isclose(mean, middle):
        return "neutral"
    return "dissatisfied" if mean < middle else "satisfied"


def _ratings(field: str, where: str) -> list[int]:
    try:
        values = [int(x) for x in field.replace(" ", "").split(",") if x != ""]
    except ValueError:
        values = []
    if not values:
        raise ValueError(f"{where}: ratings={field!r}: must be comma-separated integers (e.g. 3,4,3); fix: correct the line or drop it")
    return values


def read_uss(path: Path, *, middle: float = 3.0) -> tuple[list[Dialogue], list[dict]]:
    """Every dialogue of a USS-format file as a :class:`Dialogue` whose user turns carry
    ``satisfaction`` (the class) and ``ratings`` (the raw ones), and whose ``label`` is the class of
    the OVERALL rating; plus one quarantine record per dialogue that breaks the format (the rest are kept)."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise UnreadableInputError(explain(str(path), f"must be a readable UTF-8 text file ({exc})", "check the path")) from exc
    dialogues, bad, block, start = [], [], [], 1
    for n, line in enumerate(lines + [""], 1):
        if line.strip():
            if not block:
                start = n
            block.append(line)
            continue
        if block:
            try:
                dialogues.append(_dialogue(block, f"{path.stem}-{len(dialogues) + len(bad):05d}", start, middle))
            except ValueError as exc:
                bad.append({"line": start, "reason": str(exc), "raw": "\n".join(block)[:2000]})
            block = []
    if not dialogues:
        why = bad[0]["reason"] if bad else "the file has no dialogue"
        raise InvalidInputError(explain(str(path), f"holds no dialogue in the USS format ({why})",
                                        "tab-separated ROLE, text, action, ratings lines; a blank line between dialogues"))
    return dialogues, bad


def _dialogue(block: list[str], did: str, start: int, middle: float) -> Dialogue:
    exchanges: list[Exchange] = []
    overall = None
    for k, line in enumerate(block):
        where = f"line {start + k}"
        parts = line.split("\t")
        role = parts[0].strip().upper()
        text = parts[1].strip() if len(parts) > 1 else ""
        if role not in ("USER", "SYSTEM"):
            raise ValueError(f"{where}: role={parts[0][:20]!r}: must be USER or SYSTEM; fix: start each line with the speaker")
        text = text[:MAX_TEXT]
        if role == "SYSTEM":
            if exchanges:
                exchanges[-1].system = (exchanges[-1].system + " " + text).strip()
            continue
        ratings = _ratings(parts[3] if len(parts) > 3 else "", where)
        if text == "OVERALL":
            overall = ratings
            continue
        exchanges.append(Exchange(text, "", {}, {"satisfaction": satisfaction_class(ratings, middle), "ratings": ratings}, len(exchanges)))
    if not exchanges:
        raise ValueError(f"dialogue at line {start}: has no rated user turn; fix: a dialogue needs at least one USER line")
    label = satisfaction_class(overall, middle) if overall else None
    return Dialogue(did, exchanges, label)


def parse_split(text: str) -> tuple[float, float, float]:
    """``"8:1:1"`` → shares of train, validation and test (they need not sum to 10)."""
    try:
        parts = [float(x) for x in text.split(":")]
    except ValueError:
        parts = []
    if len(parts) != 3 or any(p < 0 or not math.isfinite(p) for p in parts) or parts[0] <= 0 or sum(parts) <= 0:
        raise InvalidInputError(explain(f"split={text!r}", "must be three non-negative numbers train:valid:test with train > 0", "e.g. 8:1:1"))
    total = sum(parts)
    return parts[0] / total, parts[1] / total, parts[2] / total


def split_dialogues(dialogues: list[Dialogue], shares: tuple[float, float, float], seed: int = 0) -> dict[str, list[Dialogue]]:
    """A seeded split by dialogue: dialogues ordered by a hash of (seed, id), cut at the shares (so
    the same id lands in the same part whatever else the file holds)."""
    order = sorted(dialogues, key=lambda d: hashlib.sha256(f"{seed}:{d.dialogue_id}".encode()).hexdigest())
    n = len(order)
    a = round(n * shares[0])
    b = a + round(n * shares[1])
    return {"train": order[:a], "valid": order[a:b], "test": order[b:]}


def import_rated(path: Path, out_dir: Path, *, split: str = "8:1:1", min_user_turns: int = 2, middle: float = 3.0, seed: int = 0) -> dict:
    """Read a USS-format file, keep the dialogues with at least ``min_user_turns`` rated user turns,
    split them and write ``train.jsonl``, ``valid.jsonl``, ``test.jsonl`` (dialogue format) in
    ``out_dir``; returns counts per part and class."""
    if min_user_turns < 1:
        raise InvalidInputError(explain(f"min_user_turns={min_user_turns}", "must be at least 1", "use 2 (the protocol)"))
    shares = parse_split(split)
    dialogues, bad = read_uss(path, middle=middle)
    kept = [d for d in dialogues if len(d.exchanges) >= min_user_turns]
    parts = split_dialogues(kept, shares, seed)
    out_dir = Path(out_dir)
    summary = {"source": str(path), "dialogues": len(dialogues), "kept": len(kept), "quarantined": len(bad), "split": split, "seed": seed,
               "parts": {}}
    for name, part in parts.items():
        write_dialogues(part, out_dir / f"{name}.jsonl")
        classes = {c: sum(1 for d in part for e in d.exchanges if e.labels["satisfaction"] == c) for c in SATISFACTION_WORDS}
        summary["parts"][name] = {"dialogues": len(part), "turns": sum(len(d.exchanges) for d in part), "classes": classes}
    return summary | {"bad": bad}
