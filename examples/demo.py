"""`make demo`: what selflearn does today, end to end, on the example data.

Runs the real CLI as a user would: import two logs (one of our format, one Rasa export) into a fresh
store, show the quarantine, print the store's statistics, export to Parquet, and re-import the export to
show that nothing is added twice. Later issues grow this into simulate -> learn -> A/B -> report.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "demo-out"
DATA = ROOT / "examples" / "data"
SELFLEARN = [sys.executable, "-m", "selflearn.cli.main"]


def run(*args: str) -> None:
    print(f"\n$ selflearn {' '.join(args)}", flush=True)
    proc = subprocess.run([*SELFLEARN, *args], cwd=ROOT)
    if proc.returncode not in (0,):
        sys.exit(f"demo step failed with exit code {proc.returncode}")


def main() -> None:
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir()
    store = str(OUT / "selflearn.duckdb")
    run("import", str(DATA / "assistant-logs.jsonl"), "--store", store)
    run("import", str(DATA / "rasa-tracker-export.json"), "--format", "rasa", "--store", store)
    quarantine = OUT / "selflearn.quarantine.jsonl"
    print(f"\nQuarantined records ({quarantine.relative_to(ROOT)}), each with its reason:")
    for line in quarantine.read_text().splitlines():
        q = json.loads(line)
        print(f"  {Path(q['file']).name}:{q['line']}  {q['reason']}")
    run("stats", "--store", store)
    run("export", str(OUT / "turns.parquet"), "--store", store)
    run("import", str(OUT / "turns.parquet"), "--store", store)
    print(f"\nDone. Store: {store}. Next: `selflearn stats --store {store} --json`.")


if __name__ == "__main__":
    main()
