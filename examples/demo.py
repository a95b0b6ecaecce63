"""`make demo`: selflearn's main job, end to end, with the real CLI as a user would run it.

1. The log format: import two example logs (ours and a Rasa export) into a fresh store, show the
   quarantine and the statistics, export to Parquet and re-import it (nothing is added twice).
2. The loop, in the simulated world (built once from the shared SLURP sentences and ASR corpus, then
   reused): 2,000 users talk to the assistant for 14 days; selflearn imports their logs, **mines the
   rewrite table** from them (no annotation), and an A/B test on the **following** 14 days measures what
   serving that table changes (about 12% fewer defective first attempts in this world); a label model
   is trained on a sample of the logs' weak labels and labels a sample; the failure-point classifier
   names the failing component of every turn; a user teaches a preference; and the morning report
   shows the defects, the mined rewrites with their wins and losses, and the A/B.
3. With ``--online``, the online rewriter is trained from the same logs and A/B-tested too (about 12
   minutes more on 2 cores: with it the demo no longer fits in 15 minutes on a first run, so by
   default its commands are printed instead).

    python examples/demo.py [--shared ../shared/data] [--online]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "demo-out"
DATA = ROOT / "examples" / "data"
SELFLEARN = [sys.executable, "-m", "selflearn.cli.main"]
STARTED = time.perf_counter()


def run(*args: str) -> None:
    print(f"\n$ selflearn {' '.join(args)}", flush=True)
    proc = subprocess.run([*SELFLEARN, *args], cwd=ROOT)
    if proc.returncode not in (0,):
        sys.exit(f"demo step failed with exit code {proc.returncode}")


def run_json(out: Path, *args: str):
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
    ap.add_argument("--online", action="store_true", help="also train the online rewriter and A/B-test it (about 12 minutes more)")
    args = ap.parse_args()
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir()
    store = str(OUT / "selflearn.duckdb")
    section("The log format: two example logs into a fresh store")
    run("store", "import", str(DATA / "assistant-logs.jsonl"), "--store", store)
    run("store", "import", str(DATA / "rasa-tracker-export.json"), "--format", "rasa", "--store", store)
    quarantine = OUT / "selflearn.quarantine.jsonl"
    print(f"\nQuarantined records ({quarantine.relative_to(ROOT)}), each with its reason:")
    for line in quarantine.read_text().splitlines():
        q = json.loads(line)
        print(f"  {Path(q['file']).name}:{q['line']}  {q['reason']}")
    run("store", "stats", "--store", store)
    run("store", "export", str(OUT / "turns.parquet"), "--store", store)
    run("store", "import", str(OUT / "turns.parquet"), "--store", store)
    world(args.shared.resolve(), online=args.online)
    print(f"\nDone in {time.perf_counter() - STARTED:.0f} s. Open {(OUT / 'report.html').relative_to(ROOT)} in a browser (it works offline).")


def world(shared: Path, *, online: bool) -> None:
    slurp, asr = shared / "slurp", shared / "asr" / "slurp_asr.jsonl"
    if not asr.exists():
        print(f"\n(no ASR corpus at {asr}: skipping the simulated world; pass --shared DIR)")
        return
    wd = str(ROOT / "world")  # built once (about 6 minutes on 2 idle cores), reused by later demos and by `selflearn world ...`
    run("world", "build", "--world", wd, "--sentences", str(slurp / "devel.jsonl"), "--sentences", str(slurp / "test.jsonl"),
        "--asr-corpus", str(asr))
    store = str(OUT / "assistant.duckdb")
    section("Days 0-13: 2,000 users talk to the assistant; selflearn reads their logs")
    sim = OUT / "sim"
    run("world", "simulate", "--world", wd, "--users", "2000", "--days", "14", "--seed", "0", "--out", str(sim))
    run("store", "import", str(sim / "logs.jsonl"), "--store", store)
    section("selflearn learns rewrites from the logs alone: signals -> rephrase chains -> absorbing Markov chains")
    table = OUT / "rewrites.parquet"
    run("rewrites", "mine", "--store", store, "--out", str(table))
    run("rewrites", "list", "--store", store, "--limit", "8")
    top = run_json(OUT / "top-rewrite.json", "rewrites", "list", "--store", store, "--limit", "1")
    if top:
        run("rewrites", "explain", top[0]["utterance"], "--store", store, "--chains", "3")
    section("Days 14-27: the same users, with and without the mined table (an A/B on identical traffic)")
    ab = run_json(OUT / "ab-mined-table.json", "world", "ab", "--world", wd, "--rewriter", str(table), "--users", "2000", "--days", "14",
                  "--first-day", "14")
    print(f"  first-attempt defects {ab['control_defect_rate']:.2%} -> {ab['treatment_defect_rate']:.2%}: "
          f"{ab['relative_reduction']:.1%} fewer [95% CI {ab['ci_low']:.1%}, {ab['ci_high']:.1%}], "
          f"{ab['wins']:,} wins : {ab['losses']:,} losses")
    section("Labels: a contextual model trained on the logs' weak labels (a sample), applied to a sample")
    run("labels", "train", "--store", store, "--limit", "600", "--text-layers", "1", "--epochs", "1", "--out", str(OUT / "label-model"))
    run("labels", "apply", "--store", store, "--model", str(OUT / "label-model"), "--limit", "300", "--min-precision", "0.9",
        "--out", str(OUT / "labels.jsonl"))
    section("Failure points: which component failed first in each turn")
    # a small annotated run (other users, other seed) trains the classifier (traces and context only
    # here, for speed); it then names the failing component of every turn in the store
    fpi = OUT / "sim-fpi"
    run("world", "simulate", "--world", wd, "--users", "300", "--days", "7", "--seed", "10", "--out", str(fpi))
    run("store", "import", str(fpi / "logs.jsonl"), "--store", str(OUT / "fpi.duckdb"))
    run("fpi", "train", "--store", str(OUT / "fpi.duckdb"), "--labels", str(fpi / "truth" / "turns.parquet"), "--out", str(OUT / "fpi-model"),
        "--no-text", "--epochs", "20")
    run("fpi", "apply", "--store", store, "--model", str(OUT / "fpi-model"))
    section("What a user teaches is used on their next request")
    run("prefs", "teach", "--user", "u00042", "I'm a Warriors fan", "--store", store)
    run("prefs", "list", "--user", "u00042", "--store", store)
    model = OUT / "online-model"
    online_steps = [("online", "train", "--store", store, "--table", str(table), "--out", str(model)),
                    ("world", "ab", "--world", wd, "--rewriter", str(model), "--users", "2000", "--days", "14", "--first-day", "14")]
    abs_ = [str(OUT / "ab-mined-table.json")]
    if online:
        section("The online rewriter: retrieval over what worked, global and personal layers, a learned ranker")
        run(*online_steps[0])
        ab2 = run_json(OUT / "ab-online.json", *online_steps[1])
        print(f"  first-attempt defects {ab2['control_defect_rate']:.2%} -> {ab2['treatment_defect_rate']:.2%}: "
              f"{ab2['relative_reduction']:.1%} fewer [95% CI {ab2['ci_low']:.1%}, {ab2['ci_high']:.1%}]")
        abs_.append(str(OUT / "ab-online.json"))
    section("The morning report")
    report = OUT / "report.html"
    run("report", "write", "--store", store, "--rewrites", str(table), *[x for a in abs_ for x in ("--ab", a)],
        "--labels-model", str(OUT / "label-model"), "--out", str(report))
    if not online:
        print("\nThe online rewriter (about 12 minutes more; `make demo DEMO_ARGS=--online` runs it):")
        for step in online_steps:
            print("  selflearn " + " ".join(step) + (" --json > demo-out/ab-online.json" if step[0] == "world" else ""))
    print("\nThe review dashboard: serve a model with this store, then open http://127.0.0.1:8000/dashboard")
    print("  selflearn keys create ops --scope admin --file demo-out/keys.txt    # prints the key to log in with")
    print(f"  selflearn online serve --model {model.relative_to(ROOT)} --store {Path(store).relative_to(ROOT)} --api-keys demo-out/keys.txt")


def section(title: str) -> None:
    print(f"\n=== {title} ===", flush=True)


if __name__ == "__main__":
    main()
