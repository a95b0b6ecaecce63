"""A labelled set for the PII scrubber: real assistant requests (SLURP), some with planted PII of a
known kind and place, in the written and the spoken forms a voice assistant's ASR produces. The
requests without PII keep their own numbers (times, dates, amounts, zip codes): what the scrubber
must leave alone. Evaluation only."""

from __future__ import annotations

import random
import string

__all__ = ["plant_pii", "KIND_TEMPLATES"]

_DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
_NAMES = ["john", "maria", "wei", "aisha", "lars", "priya", "tom", "fatima", "diego", "yuki"]
_SURNAMES = ["doe", "smith", "garcia", "chen", "okafor", "nilsson", "patel", "kim", "rossi", "novak"]
_DOMAINS = ["example.com", "mail.example.org", "company.co.uk", "uni.edu", "inbox.net"]

#: how a request carries each kind ({} is the PII)
KIND_TEMPLATES = {
    "email": ["text my email {}", "send it to {}", "my email is {}", "forward this to {} please", "{} is my work address"],
    "phone": ["call {}", "text {} that i'm late", "my number is {}", "dial {}", "save {} as mum's number"],
    "card": ["pay with my card {}", "my card number is {}", "use card {} for the order"],
    "ip": ["ping {}", "is {} reachable", "block the device at {}"],
    "number": ["my account number is {}", "track parcel {}", "my policy number is {}", "reference {}"],
}


def _luhn_complete(prefix: str, rng: random.Random, length: int) -> str:
    body = prefix + "".join(rng.choice(string.digits) for _ in range(length - len(prefix) - 1))
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return body + str((10 - total % 10) % 10)


def _spoken(digits: str) -> str:
    return " ".join(_DIGITS[int(d)] for d in digits)


def _value(kind: str, rng: random.Random) -> str:
    if kind == "email":
        user = f"{rng.choice(_NAMES)}{rng.choice(['.', '_', ''])}{rng.choice(_SURNAMES)}{rng.choice(['', str(rng.randint(1, 99))])}"
        domain = rng.choice(_DOMAINS)
        if rng.random() < 0.4:  # said aloud
            return f"{user.replace('.', ' dot ').replace('_', ' underscore ')} at {domain.replace('.', ' dot ')}"
        return f"{user}@{domain}"
    if kind == "phone":
        area, mid, end = rng.randint(201, 989), rng.randint(200, 999), rng.randint(0, 9999)
        form = rng.random()
        if form < 0.3:
            return f"{area} {mid} {end:04d}"
        if form < 0.5:
            return f"({area}) {mid}-{end:04d}"
        if form < 0.65:
            return f"+44 20 {rng.randint(7000, 8999)} {rng.randint(0, 9999):04d}"
        return _spoken(f"{area}{mid}{end:04d}")
    if kind == "card":
        number = _luhn_complete(rng.choice(["4", "51", "37"]), rng, 16 if rng.random() < 0.8 else 15)
        return " ".join(number[i:i + 4] for i in range(0, len(number), 4)) if rng.random() < 0.6 else number
    if kind == "ip":
        if rng.random() < 0.7:
            return ".".join(str(rng.randint(1, 254)) for _ in range(4))
        return ":".join(f"{rng.randint(0, 0xFFFF):x}" for _ in range(8))
    digits = "".join(rng.choice(string.digits) for _ in range(rng.randint(7, 12)))
    return _spoken(digits) if rng.random() < 0.3 else digits


def plant_pii(sentences: list[str], rng: random.Random, *, share: float = 0.5) -> list[tuple[str, list[tuple[int, int, str]]]]:
    """Each sentence as is, or (with probability ``share``) replaced by a request carrying one PII
    item: (text, [(start, end, kind)])."""
    out = []
    kinds = list(KIND_TEMPLATES)
    for s in sentences:
        if rng.random() >= share:
            out.append((s, []))
            continue
        kind = rng.choice(kinds)
        value = _value(kind, rng)
        template = rng.choice(KIND_TEMPLATES[kind])
        start = template.index("{}")
        out.append((template.format(value), [(start, start + len(value), kind)]))
    return out
