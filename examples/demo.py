"""`make demo`: what selflearn does today, end to end, on the example data.

Runs the real CLI as a user would: import two logs (one of our format, one Rasa export) into a fresh
store, show the quarantine, print the store's statistics, export to Parquet, and re-import the export to
show that nothing is added twice. Then the simulated world: build it from the shared SLURP sentences and
ASR corpus (once; reused afterwards), simulate 2,000 users for 14 days, import the logs (zero quarantined),
and run two A/B tests on identical traffic: a no-op rewriter (identical arms) and a naive example rewriter;
name the failing component of every turn; teach a preference; and write the morning report.

    python examples/demo.py [--shared ../shared/data]
"""

from __future__ import annotations

import argparse
import json
import os
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


def run_json(out: Path, *args: str) -> dict:
    """Run a command with --json, keep its JSON in ``out`` and return it."""
    print(f"\n$ selflearn {' '.join(args)} --json > {out.relative_to(ROOT)}", flush=True)
    proc = subprocess.run([*SELFLEARN, *args, "--json"], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        sys.exit(f"demo step failed with exit code {proc.returncode}")
    out.write_text(proc.stdout)
    return json.loads(proc.stdout)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", type=Path, default=Path(os.environ.get("SHARED", ROOT.parent / "shared" / "data")))
    args = ap.parse_args()
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
    world(args.shared.resolve(), store)
    print(f"\nDone. Store: {store}. Next: `selflearn store stats --store {store} --json`.")


def world(shared: Path, store: str) -> None:
    slurp, asr = shared / "slurp", shared / "asr" / "slurp_asr.jsonl"
    if not asr.exists():
        print(f"\n(no ASR corpus at {asr}: skipping the simulated world; pass --shared DIR)")
        return
    wd = str(ROOT / "world")  # built once, reused by later demos and by `selflearn world simulate`
    run("world", "build", "--world", wd, "--sentences", str(slurp / "devel.jsonl"), "--sentences", str(slurp / "test.jsonl"),
        "--asr-corpus", str(asr))
    sim = OUT / "sim"
    run("simulate", "--world", wd, "--users", "2000", "--days", "14", "--seed", "0", "--out", str(sim))
    run("import", str(sim / "logs.jsonl"), "--store", store)
    run("ab", "--world", wd, "--rewriter", "noop", "--users", "2000", "--days", "14")
    ab = run_json(OUT / "ab-strip-fillers.json", "ab", "--world", wd, "--rewriter", "examples.rewriters:StripFillers", "--users", "2000", "--days", "14")
    print(f"  first-attempt defects {ab['control_defect_rate']:.2%} -> {ab['treatment_defect_rate']:.2%} "
          f"({ab['relative_reduction']:+.1%} [{ab['ci_low']:+.1%}, {ab['ci_high']:+.1%}])")
    # failure points: a small annotated run (other users, other seed) trains the classifier (traces and
    # context only here, for speed); it then names the failing component of every turn in the store
    fpi = OUT / "sim-fpi"
    run("simulate", "--world", wd, "--users", "300", "--days", "7", "--seed", "10", "--out", str(fpi))
    run("import", str(fpi / "logs.jsonl"), "--store", str(OUT / "fpi.duckdb"))
    run("fpi", "train", "--store", str(OUT / "fpi.duckdb"), "--labels", str(fpi / "truth" / "turns.parquet"), "--out", str(OUT / "fpi-model"),
        "--no-text", "--epochs", "20")
    run("fpi", "apply", "--store", store, "--model", str(OUT / "fpi-model"))
    # what a user teaches is used on their next request
    run("prefs", "teach", "--user", "u00042", "I'm a Warriors fan", "--store", store)
    run("prefs", "list", "--user", "u00042", "--store", store)
    # the morning report: one offline HTML file
    report = OUT / "report.html"
    run("report", "--store", store, "--ab", str(OUT / "ab-strip-fillers.json"), "--out", str(report))
    print(f"\nReport: {report} (open it in a browser; it works offline)")
    print("\nDashboard: mine rewrites, train the online rewriter and serve it with this store, then open http://127.0.0.1:8000/dashboard")
    print(f"  selflearn rewrites mine --store {store} --out demo-out/rewrites.parquet")
    print(f"  selflearn online train --store {store} --table demo-out/rewrites.parquet --out demo-out/online-model")
    print("  selflearn keys create ops --scope admin --file demo-out/keys.txt    # prints the key to log in with")
    print(f"  selflearn online serve --model demo-out/online-model --store {store} --api-keys demo-out/keys.txt")


if __name__ == "__main__":
    main()
