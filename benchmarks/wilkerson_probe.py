"""Why the personal layer barely helps the Wilkerson case: for users whose history holds a request
that failed for them as said and worked once they named the state, how the trained ranker scores
the state-qualified wording they used, against the threshold.

Usage: python benchmarks/wilkerson_probe.py --model online-model [--limit 20]
(the model of benchmarks/online_results.py, kept with its --keep option)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from selflearn.online import OnlineRewriter
from selflearn.world.catalogue import STATES


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--limit", type=int, default=20)
    args = ap.parse_args()
    rw = OnlineRewriter.load(args.model)
    states = {w for w, _ in STATES}
    rows = []
    for user, hist in rw.personal.users.items():
        for text, e in hist.items():
            if e[1] == 0 or not states & set(text.split()):
                continue
            plain = " ".join(w for w in text.split() if w not in states)
            if plain not in hist or hist[plain][0] <= hist[plain][1]:
                continue
            ctx = {"hour": 12, "timestamp": e[2] + 86400}  # a day after the user last said it
            texts, _, x = rw.candidates(plain, user_id=user, device={"type": "speaker", "has_screen": False}, context=ctx)
            scores = rw.ranker.score(x)
            k = texts.index(text) if text in texts else None
            rows.append({"user": user, "request": plain, "worked_for_them": text,
                         "rank": None if k is None else int((scores > scores[k]).sum()) + 1,
                         "score": None if k is None else round(float(scores[k]), 3)})
            if len(rows) >= args.limit:
                break
        if len(rows) >= args.limit:
            break
    scored = [r["score"] for r in rows if r["score"] is not None]
    print(json.dumps({"threshold": rw.threshold, "cases": len(rows), "ranked_first": sum(r["rank"] == 1 for r in rows),
                      "above_threshold": sum(s >= rw.threshold for s in scored),
                      "score_median": float(np.median(scored)) if scored else None, "examples": rows[:5]}, indent=2))


if __name__ == "__main__":
    main()
