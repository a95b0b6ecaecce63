"""PII scrubbing: e-mail addresses, phone numbers, payment cards, IP addresses and long digit
sequences become typed placeholders (``<EMAIL>``, ``<PHONE>``, ``<CARD>``, ``<IP>``, ``<NUMBER>``).

Voice logs say PII in words as often as in digits ("john dot doe at example dot com", "four one
five five five five ..."): both forms are found. Phone numbers come from the ``phonenumbers``
library (libphonenumber's rules, US and UK numbering by default); a card is a 13-19 digit run that
passes the Luhn check; a long digit sequence has 6 or more digits (a zip code or a time stays).

Person names are NOT scrubbed: a contact's name is a legitimate slot value ("call mum", "text
anna") that the rewrites and the label model need. What protects a name is the rest of the privacy
layer: pseudonymous ids, k-anonymous shared artefacts (a name one user says never reaches the
table, the global index or the report) and forgetting (docs/privacy.md).
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache

import phonenumbers

__all__ = ["KINDS", "PLACEHOLDERS", "Finding", "find_pii", "scrub", "scrub_json", "Scrubber", "luhn_ok", "PLACEHOLDER_RE"]

KINDS = ("email", "phone", "card", "ip", "number")
PLACEHOLDERS = {k: f"<{k.upper()}>" for k in KINDS}
PLACEHOLDER_RE = re.compile(r"<(EMAIL|PHONE|CARD|IP|NUMBER)>")
REGIONS = ("US", "GB")

_EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9][A-Za-z0-9._%+-]*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
_TLD = r"(?:com|org|net|edu|gov|io|co|uk|de|fr|in|us|me|info)"
_WORDPART = r"[a-z0-9]+(?:\s+(?:dot|underscore|dash|hyphen)\s+[a-z0-9]+)*"
_SPOKEN_EMAIL = re.compile(rf"\b{_WORDPART}\s+at\s+[a-z0-9]+(?:\s+dot\s+[a-z0-9]+)*\s+dot\s+{_TLD}\b", re.IGNORECASE)
_IPV4 = re.compile(r"(?<![\d.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?![\d.]*\d)")
_IPV6_CANDIDATE = re.compile(r"(?<![\w:])[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?![\w:])")
_DIGIT_RUN = re.compile(r"(?<![\w])\+?\d(?:[ .-]?\d){5,}(?![\w])")  # phone and card candidates (any separators)
_NUMBER_RUN = re.compile(r"(?<![\w.:/-])\d(?: ?\d){5,}(?!\w|[.:/-]\d)")  # not a date, version or time
_NANP_SHAPE = re.compile(r"(?<![\w(])(?:\+?1[ .-]?)?\(?\d{3}\)?[ .-]?\d{3}[ .-]\d{4}(?!\w)")  # 415 555 0134 shape, valid or not
_DIGIT_WORDS = {"zero": "0", "oh": "0", "o": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6",
                "seven": "7", "eight": "8", "nine": "9"}
_DIGIT_WORD = r"(?:zero|oh|o|one|two|three|four|five|six|seven|eight|nine|double|triple|\d)"
_SPOKEN_RUN = re.compile(rf"\b{_DIGIT_WORD}(?:[\s,.-]+{_DIGIT_WORD}){{5,}}\b", re.IGNORECASE)
_JSON_NUMBER = re.compile(r'":\s*-?\d[\d.eE+-]*')  # a number value right after a key
_SPOKEN_DIGIT = r"(?:zero|oh|o|one|two|three|four|five|six|seven|eight|nine|double|triple)"
# worth a closer look: an @, four digits close together (every written kind has more), an IPv6-like
# colon group, "... at ... dot ...", or six spoken digits in a row
_MAYBE = re.compile(rf"@|(?:\d\D{{0,3}}){{4}}|::|[0-9a-f]{{1,4}}:[0-9a-f]{{1,4}}:|\bat\b.*\bdot\b|\b{_SPOKEN_DIGIT}(?:[\s,.-]+{_SPOKEN_DIGIT}){{5}}\b",
                    re.IGNORECASE)


@dataclass(frozen=True)
class Finding:
    kind: str
    start: int
    end: int


def luhn_ok(digits: str) -> bool:
    """The Luhn checksum every payment card number passes."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _spoken_digits(span: str) -> str:
    out: list[str] = []
    repeat = 1
    for w in re.findall(r"[a-z]+|\d", span.lower()):
        if w == "double":
            repeat = 2
        elif w == "triple":
            repeat = 3
        else:
            out.append((_DIGIT_WORDS.get(w) or w) * repeat)
            repeat = 1
    return "".join(out)


_NUMBER_CUES = re.compile(r"\b(account|policy|reference|ref|parcel|order|tracking|invoice|customer|member|membership|booking|serial)\b[^.?!]{0,20}$", re.I)
_PHONE_CUES = re.compile(r"\b(call|dial|text|phone|ring|mobile|cell|whatsapp)\b[^.?!]{0,20}$|\bnumber is\s*$", re.I)


def _by_context(text: str, start: int, kind: str, n_digits: int) -> str:
    """A phone-shaped number after "account", "policy", ... is a number; a 7, 10 or 11 digit run after
    "call", "dial", "text", ... is a phone number."""
    before = text[max(0, start - 40):start]
    if kind == "phone" and _NUMBER_CUES.search(before):
        return "number"
    if kind == "number" and n_digits in (7, 10, 11) and _PHONE_CUES.search(before) and not _NUMBER_CUES.search(before):
        return "phone"
    return kind


def _free(taken: list[tuple[int, int]], start: int, end: int) -> bool:
    return all(end <= a or start >= b for a, b in taken)


def find_pii(text: str) -> list[Finding]:
    """Every PII span in ``text`` (non-overlapping, in order)."""
    return list(_find_cached(text)) if text else []


@lru_cache(maxsize=1 << 17)
def _find_cached(text: str) -> tuple[Finding, ...]:  # logs repeat their requests (and n-best lists repeat the request)
    return tuple(_find(text)) if _MAYBE.search(text) else ()


@lru_cache(maxsize=1 << 17)
def _json_maybe(skeleton: str) -> bool:
    """Whether a JSON document (its number values removed) may hold PII; cached: n-best lists differ
    mostly in their confidences."""
    return bool(_MAYBE.search(skeleton))


def _find(text: str) -> list[Finding]:
    found: list[Finding] = []
    taken: list[tuple[int, int]] = []

    def add(kind: str, start: int, end: int) -> None:
        if _free(taken, start, end):
            if kind in ("phone", "number"):
                n_digits = sum(ch.isdigit() for ch in text[start:end]) or len(_spoken_digits(text[start:end]))
                kind = _by_context(text, start, kind, n_digits)
            found.append(Finding(kind, start, end))
            taken.append((start, end))

    for m in _EMAIL.finditer(text):
        add("email", m.start(), m.end())
    for m in _SPOKEN_EMAIL.finditer(text):
        add("email", m.start(), m.end())
    for m in _IPV4.finditer(text):
        add("ip", m.start(), m.end())
    for m in _IPV6_CANDIDATE.finditer(text):
        if m.group().count(":") >= 2:
            try:
                ipaddress.IPv6Address(m.group())
            except ValueError:
                continue
            add("ip", m.start(), m.end())
    for m in _DIGIT_RUN.finditer(text):
        digits = re.sub(r"\D", "", m.group())
        if 13 <= len(digits) <= 19 and luhn_ok(digits):
            add("card", m.start(), m.end())
    if sum(ch.isdigit() for ch in text) >= 7:
        for region in REGIONS:
            for m in phonenumbers.PhoneNumberMatcher(text, region, leniency=phonenumbers.Leniency.VALID):
                add("phone", m.start, m.end)
        for m in _NANP_SHAPE.finditer(text):
            add("phone", m.start(), m.end())
    for m in _NUMBER_RUN.finditer(text):
        add("number", m.start(), m.end())
    for m in _SPOKEN_RUN.finditer(text):
        digits = _spoken_digits(m.group())
        if len(digits) >= 6:
            kind = "card" if 13 <= len(digits) <= 19 and luhn_ok(digits) else "phone" if len(digits) in (7, 10, 11) else "number"
            add(kind, m.start(), m.end())
    return sorted(found, key=lambda f: f.start)


def scrub(text: str | None) -> str | None:
    """``text`` with every PII span replaced by its placeholder."""
    if text is None:
        return None
    spans = find_pii(text)
    if not spans:
        return text
    out, last = [], 0
    for f in spans:
        out.append(text[last:f.start])
        out.append(PLACEHOLDERS[f.kind])
        last = f.end
    out.append(text[last:])
    return "".join(out)


def _walk(value, counts: Counter | None):
    if isinstance(value, str):
        if counts is not None:
            counts.update(f.kind for f in find_pii(value))
        return scrub(value)
    if isinstance(value, list):
        return [_walk(v, counts) for v in value]
    if isinstance(value, dict):
        return {k: _walk(v, counts) for k, v in value.items()}
    return value


def scrub_json(text: str | None) -> str | None:
    """A JSON document with every string value scrubbed (keys and numbers are kept)."""
    if text is None or not _json_maybe(_JSON_NUMBER.sub('":', text)):
        return text
    value = json.loads(text)
    new = _walk(value, None)
    return text if new == value else json.dumps(new, ensure_ascii=False)


@dataclass
class Scrubber:
    """Counts what it replaced, by kind (for `selflearn privacy scan` and the import report)."""

    counts: Counter = field(default_factory=Counter)

    def text(self, text: str | None) -> str | None:
        if text is None:
            return None
        spans = find_pii(text)
        self.counts.update(f.kind for f in spans)
        return scrub(text) if spans else text

    def json(self, text: str | None) -> str | None:
        if text is None or not _json_maybe(_JSON_NUMBER.sub('":', text)):  # its numbers ("confidence": 0.87) are not PII
            return text
        new, kinds = _json_cached(text)
        self.counts.update(kinds)
        return new


@lru_cache(maxsize=1 << 16)
def _json_cached(text: str) -> tuple[str, tuple[str, ...]]:
    counts: Counter = Counter()
    value = json.loads(text)
    new = _walk(value, counts)
    return (text if new == value else json.dumps(new, ensure_ascii=False)), tuple(counts.elements())
