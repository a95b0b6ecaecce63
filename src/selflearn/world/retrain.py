"""Closing the loop: the world's NLU retrained on NLU training rows (``selflearn labels
export-nlu``) becomes a world variant, simulated against the original on the same traffic."""

from __future__ import annotations

import json
import random
import time
from dataclasses import replace
from pathlib import Path

from ..errors import InvalidInputError, explain
from ..models.base import no_progress
from ..labels.weak import align_slot
from .build import World, interpret
from .corpus import Sentence
from .nlu import JointNLU

__all__ = ["retrain_world_nlu", "tagged_sentence", "read_nlu_rows"]


def tagged_sentence(text: str, intent: str, slots, slurp_id: int = -1) -> Sentence | None:
    """A Sentence with per-word slot tags found by aligning each slot value in ``text`` (None when
    a value cannot be found: the row cannot teach tagging); ``slots=None`` (unknown) gives an
    intent-only sentence (tags None)."""
    words = text.split()
    if slots is None:  # slots not labelled: an intent-only sentence
        return Sentence(slurp_id, text, intent, intent.split("_")[0], (), None)
    tags = [""] * len(words)
    for name, value in slots:
        span = align_slot(words, value)
        if span is None:
            return None
        for j in range(*span):
            tags[j] = name
    return Sentence(slurp_id, text, intent, intent.split("_")[0], tuple((n, v) for n, v in slots), tuple(tags))


def read_nlu_rows(path: Path) -> list[dict]:
    try:
        rows = [json.loads(x) for x in Path(path).read_text().splitlines() if x.strip()]
    except (OSError, ValueError) as exc:
        raise InvalidInputError(explain(str(path), f"must be the JSONL `selflearn labels export-nlu` writes ({exc})", "export it first")) from exc
    return rows


def retrain_world_nlu(world_dir: Path, rows: list[dict], out_dir: Path, *, epochs: int = 1, base_share: float = 1.0,
                      seed: int = 0, threads: int = 2, dp_epsilon: float | None = None, dp_delta: float | None = None, progress=None) -> dict:
    """Continue training the world's NLU on ``rows`` (text, intent, slots, users) mixed with the
    NLU's own training sentences (``base_share`` of them, so it does not forget), re-interpret
    every text of the world, and write the variant world to ``out_dir``. ``rows=[]`` gives the
    control: the same extra training on the original sentences only. With ``dp_epsilon`` the rows
    (users' sentences: one per user who said it) train with user-level DP, the NLU's own plainly."""
    say = progress or no_progress
    world = World.load(world_dir)
    nlu = JointNLU.load(world_dir / "nlu", threads=threads)
    base = [tagged_sentence(s["text"], s["intent"], s["slots"], s["slurp_id"]) for s in world.sentences if s["in_nlu_train"]]
    base = [s for s in base if s is not None]
    base = random.Random(seed).sample(base, int(len(base) * base_share))
    new, users = [], []
    for r in rows:
        s = tagged_sentence(r["text"], r["intent"], None if r.get("slots") is None else [(x["name"], x["value"]) for x in r["slots"]])
        if s is not None and s.text.split():
            owners = r.get("users") or [None]
            new += [s] * (len(owners) if dp_epsilon is not None else 1)
            users += owners if dp_epsilon is not None else owners[:1]
    if dp_epsilon is not None and None in users:
        raise InvalidInputError(explain("rows without 'users'", "private retraining needs the users who said each row",
                                        "export the rows again with `selflearn labels export-nlu` (it now records them)"))
    started = time.perf_counter()
    say(f"retrain NLU ({len(base)} original + {len(new)} generated sentences)", 0, 0)
    if dp_epsilon is not None and new:
        nlu.dp_epsilon, nlu.dp_delta = dp_epsilon, dp_delta
        nlu.refit(new, users=users, public=base, epochs=epochs)
    else:
        nlu.refit(base + new, epochs=epochs)
    train_s = time.perf_counter() - started
    say("re-interpret the world's texts", 0, 0)
    catalogue = world.catalogue()
    results = []
    for b in range(0, len(world.texts), 2048):
        results.extend(nlu.predict(world.texts[b : b + 2048]))
    interp = [interpret(r, catalogue, t) for r, t in zip(results, world.texts)]
    changed = sum(a[0] != b[0] or a[3] != b[3] for a, b in zip(world.interp, interp))
    variant = replace(world, interp=interp, stats={**world.stats, "nlu_retrained": {"generated": len(new), "original": len(base), "epochs": epochs,
                                                                                   "train_seconds": round(train_s, 1), "texts_changed": changed,
                                                                                   "privacy": getattr(nlu, "privacy_", None)}})
    variant.save(out_dir)
    nlu.save(out_dir / "nlu")
    return variant.stats["nlu_retrained"]
