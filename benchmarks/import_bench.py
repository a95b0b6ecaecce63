"""Import throughput and peak memory on a generated JSONL of N turns (default 1,000,000).

    .venv/bin/python benchmarks/import_bench.py [--turns N] [--out bench-out]

Generates realistic, varied turns (10 intents, 6 device types, optional fields present or not, 1% of
records carrying extra fields so they take the pydantic path), writes them as JSONL, then imports the
file into a fresh store in a child process and reports turns/s and the child's peak RSS. Prints one JSON
object; docs/benchmarks.md records the figures with the command and the date.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

INTENTS = [("music", "music_play"), ("weather", "weather_query"), ("iot", "iot_hue_lightoff"),
           ("calendar", "calendar_set"), ("alarm", "alarm_set"), ("news", "news_query"),
           ("qa", "qa_factoid"), ("play", "play_radio"), ("general", "general_quirky"), ("email", "email_query")]
DEVICES = [("speaker", False), ("screen_speaker", True), ("phone", True), ("car", False), ("tv", True),
           ("watch", True)]


def generate(path: Path, n: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    with path.open("w") as fh:
        sid, idx, t = 0, 0, start
        for i in range(n):
            if idx == 0 or rng.random() < 0.25:
                sid, idx = sid + 1, 0
                t = start + timedelta(seconds=rng.randrange(14 * 86400))
            t += timedelta(seconds=rng.randrange(2, 40))
            domain, intent = rng.choice(INTENTS)
            dtype, screen = rng.choice(DEVICES)
            conf = round(rng.random(), 3)
            rec = {
                "schema_version": 1, "session_id": f"s{sid}", "turn_index": idx,
                "timestamp": t.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "user_id": f"u{sid % 20000}",
                "device_id": f"d{sid % 30000}",
                "device": {"type": dtype, "has_screen": screen, "state": {"volume": rng.randrange(10)}
                           if rng.random() < 0.5 else {}, "location": rng.choice(["kitchen", "living room", None])},
                "utterance": {"text": f"{intent.replace('_', ' ')} request number {i % 977}", "asr_confidence": conf,
                              "nbest": [{"text": f"{intent} hyp {j}", "confidence": round(conf / (j + 1), 3)}
                                        for j in range(rng.randrange(1, 4))]},
                "nlu": {"domain": domain, "intent": intent, "confidence": round(rng.random(), 3),
                        "slots": [{"name": "date", "value": "tomorrow"}] if rng.random() < 0.4 else [],
                        "top_k": [{"intent": intent, "confidence": 0.8}, {"intent": "general_quirky",
                                                                          "confidence": 0.1}]},
                "entity_resolution": {"status": rng.choice(["resolved", "unresolved", "not_applicable"]),
                                      "entities": []},
                "response": {"status": rng.choice(["success"] * 8 + ["failure", "unsupported"]),
                             "text": "Okay.", "action": intent},
                "latency_ms": round(rng.uniform(200, 1500), 1),
                "feedback": {"barge_in": rng.random() < 0.05, "explicit": rng.choice([None] * 30 + ["negative"])},
            }
            if rng.random() < 0.01:
                rec["app_version"] = "4.2.1"  # extra field: takes the pydantic path
            fh.write(json.dumps(rec) + "\n")
            idx += 1


CHILD = """
import json, resource, sys, time
from selflearn.store.store import Store
from selflearn.store.importer import import_files
t0 = time.perf_counter()
with Store(sys.argv[1]) as st:
    r = import_files(st, [sys.argv[2]])
secs = time.perf_counter() - t0
print(json.dumps({"seconds": secs, "imported": r.imported, "quarantined": r.quarantined,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--turns", type=int, default=1_000_000)
    ap.add_argument("--out", type=Path, default=Path("bench-out"))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    logs = args.out / f"turns-{args.turns}.jsonl"
    if not logs.exists():
        t0 = time.perf_counter()
        generate(logs, args.turns)
        print(f"generated {logs} in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    db = args.out / "bench.duckdb"
    for p in (db, db.with_suffix(".duckdb.wal"), args.out / "bench.quarantine.jsonl"):
        p.unlink(missing_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", CHILD, str(db), str(logs)], capture_output=True, text=True,
                          env=env, check=True)
    res = json.loads(proc.stdout)
    res.update(turns=args.turns, turns_per_s=round(args.turns / res["seconds"]),
               file_mb=round(logs.stat().st_size / 2**20), cpus=os.cpu_count(), python=platform.python_version(),
               date=datetime.now(UTC).strftime("%Y-%m-%d"))
    res["seconds"] = round(res["seconds"], 2)
    res["peak_rss_mb"] = round(res["peak_rss_mb"])
    print(json.dumps(res))


if __name__ == "__main__":
    main()
