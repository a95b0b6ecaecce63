"""Recall and precision of the PII scrubber, per kind, on SLURP requests with planted PII (written
and spoken forms) and the untouched requests (their times, dates, amounts must survive).

    .venv/bin/python benchmarks/scrubber_results.py --slurp ../shared/data/slurp/test.jsonl ../shared/data/slurp/devel.jsonl

A planted item is found when a span of the same kind overlaps it; a found span is correct when it
overlaps a planted span of its kind. Also the scrubber's speed (texts per second).
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections import Counter
from pathlib import Path

from selflearn.privacy.scrub import KINDS, find_pii
from selflearn.world.pii import plant_pii


def _overlap(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--slurp", type=Path, nargs="+", required=True)
    ap.add_argument("--asr", type=Path, default=None, help="an ASR corpus (slurp_asr.jsonl): how many of Whisper's hypotheses (no PII in them) change")
    ap.add_argument("--share", type=float, default=0.5, help="share of requests that get planted PII")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    sentences = [json.loads(line)["sentence"] for p in args.slurp for line in p.read_text().splitlines() if line.strip()]
    data = plant_pii(sentences, random.Random(args.seed), share=args.share)
    planted, found_right, found, hit, scrubbed = Counter(), Counter(), Counter(), Counter(), Counter()
    false_examples: dict[str, list[str]] = {}
    started = time.perf_counter()
    predictions = [find_pii(text) for text, _ in data]
    seconds = time.perf_counter() - started
    for (text, spans), pred in zip(data, predictions):
        for s, e, kind in spans:
            planted[kind] += 1
            hit[kind] += any(p.kind == kind and _overlap((p.start, p.end), (s, e)) for p in pred)
            scrubbed[kind] += any(p.start <= s and p.end >= e for p in pred)  # gone, whatever placeholder it got
        for p in pred:
            found[p.kind] += 1
            ok = any(p.kind == kind and _overlap((p.start, p.end), (s, e)) for s, e, kind in spans)
            found_right[p.kind] += ok
            if not ok and len(false_examples.setdefault(p.kind, [])) < 5:
                false_examples[p.kind].append(text)
    per_kind = {k: {"planted": planted[k], "recall": round(hit[k] / planted[k], 4) if planted[k] else None,
                    "removed_any_placeholder": round(scrubbed[k] / planted[k], 4) if planted[k] else None,
                    "found": found[k], "precision": round(found_right[k] / found[k], 4) if found[k] else None} for k in KINDS}
    clean = [pred for (_, spans), pred in zip(data, predictions) if not spans]
    out = {"requests": len(data), "with_pii": sum(1 for _, s in data if s), "per_kind": per_kind,
           "removed_any_placeholder": round(sum(scrubbed.values()) / max(sum(planted.values()), 1), 4),
           "all_kinds": {"recall": round(sum(hit.values()) / max(sum(planted.values()), 1), 4),
                         "precision": round(sum(found_right.values()) / max(sum(found.values()), 1), 4)},
           "clean_requests_changed": round(sum(1 for p in clean if p) / max(len(clean), 1), 4),
           "false_positive_examples": false_examples, "texts_per_second": round(len(data) / seconds)}
    if args.asr:
        hyps = [json.loads(line)["hypothesis"] for line in args.asr.read_text().splitlines() if line.strip()]
        changed = [(h, [f.kind for f in find_pii(h)]) for h in hyps]
        changed = [(h, k) for h, k in changed if k]
        out["asr_hypotheses"] = {"texts": len(hyps), "changed": len(changed), "changed_share": round(len(changed) / max(len(hyps), 1), 5),
                                 "examples": changed[:8]}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
