"""`selflearn privacy scan`: what PII a store holds, by kind and place, shown only as placeholders."""

from __future__ import annotations

import re
from collections import Counter

from ..privacy.pseudonyms import PSEUDONYM_RE
from ..privacy.scrub import KINDS, PLACEHOLDER_RE, Scrubber, find_pii, scrub

__all__ = ["scan_store", "SCANNED"]

#: the text columns scanned, per table (JSON columns are scanned string by string)
SCANNED = {
    "turns": ("asr_text", "response_text", "feedback_comment", "asr_nbest", "slots", "er_entities", "user_id", "device_id", "session_id"),
    "raw_text": ("asr_text", "response_text", "feedback_comment", "asr_nbest", "slots", "er_entities"),
    "preferences": ("user_id", "value", "key"),
    "rewrites": ("utterance", "rewrite"),
}
_JSON = {"asr_nbest", "slots", "er_entities"}
_IDS = {"user_id", "device_id", "session_id"}


def scan_store(store, *, examples: int = 3) -> dict:
    """Counts of PII still in the store (by kind, table and column), placeholders the import left
    (by kind), ids that are not pseudonyms, and up to ``examples`` texts per kind, scrubbed."""
    con = store.reader()
    found: Counter = Counter()
    where: Counter = Counter()
    placeholders: Counter = Counter()
    shown: dict[str, list[str]] = {k: [] for k in KINDS}
    raw_ids: Counter = Counter()
    rows_scanned = 0
    for table, columns in SCANNED.items():
        if not store.has_table(table):
            continue
        for col in columns:
            cur = con.execute(f'SELECT "{col}" FROM {table} WHERE "{col}" IS NOT NULL')
            while batch := cur.fetchmany(10_000):
                for (value,) in batch:
                    rows_scanned += 1
                    text = str(value)
                    if col in _IDS:
                        if not PSEUDONYM_RE.fullmatch(text):
                            raw_ids[f"{table}.{col}"] += 1
                        continue
                    placeholders.update(m.group(1).lower() for m in PLACEHOLDER_RE.finditer(text))
                    counter = Scrubber()
                    if col in _JSON:
                        counter.json(text)
                        kinds = counter.counts
                    else:
                        kinds = Counter(f.kind for f in find_pii(text))
                    for kind, n in kinds.items():
                        found[kind] += n
                        where[f"{table}.{col}"] += n
                        if len(shown[kind]) < examples:
                            shown[kind].append(_shown(text, col))
    return {"store": str(store.path), "values_scanned": rows_scanned,
            "pii_found": {k: found.get(k, 0) for k in KINDS}, "pii_found_total": sum(found.values()),
            "found_in": dict(sorted(where.items())),
            "placeholders": {k: placeholders.get(k, 0) for k in KINDS},
            "ids_not_pseudonymous": dict(sorted(raw_ids.items())),
            "examples": {k: v for k, v in shown.items() if v},
            "pseudonym_key": store.meta("pseudonym_key_fingerprint"),
            "raw_text_kept": bool(store.has_table("raw_text") and con.execute("SELECT count(*) FROM raw_text").fetchall()[0][0])}


def _shown(text: str, col: str) -> str:
    """An example as it may be shown: scrubbed, and short."""
    if col in _JSON:
        text = re.sub(r"\s+", " ", text)
    clean = scrub(text) or ""
    return clean if len(clean) <= 120 else clean[:117] + "..."
