"""Entry points the CLI calls: mine (signals → chains → table), list/search, explain."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pyarrow as pa

from ..errors import InvalidInputError, explain
from ..models.base import no_progress
from ..signals import DEFECT_AT, SignalConfig, compute_signals
from ..store.derived import replace_table
from ..store.store import Store
from ..text import normalise
from .reviews import rewrite_chains
from .table import BASELINE_REPHRASES, MODEL_REPHRASES, MiningConfig, mine_rewrites, write_table

__all__ = ["mine", "list_rewrites", "explain_rewrite", "detect_rephrases", "train_rephrase_model", "rephrase_training_set"]


def mine(store: Store, out: Path, *, signals: SignalConfig | None = None, mining: MiningConfig | None = None,
         rephrase_model: Path | None = None, threads: int = 1, progress=None) -> dict:
    """Compute signals, find rephrases (the pairwise baseline, or a trained contextual model),
    mine the rewrite table, write it to ``out`` (Parquet) and to the store's ``rewrites`` table
    (both replaced). Returns the statistics."""
    say = progress or no_progress
    say("signals", 0, 0)
    n = compute_signals(store, signals)
    if n == 0:
        raise InvalidInputError(explain(str(store.path), "has no turns", "import logs first (`selflearn store import FILE`)"))
    source = BASELINE_REPHRASES
    if rephrase_model is not None:
        say("rephrases (model)", 0, 0)
        stats_pairs = detect_rephrases(store, rephrase_model, success_below=(mining or MiningConfig()).success_below, threads=threads)
        source = MODEL_REPHRASES
    table, stats = mine_rewrites(store, mining, rephrases=source, progress=say)
    stats["signal_turns"] = n
    stats["rephrases"] = "model" if rephrase_model is not None else "pairwise baseline"
    if rephrase_model is not None:
        stats["model_pairs"] = stats_pairs
    say("write", 0, 0)
    write_table(table, stats, out)
    with store.transaction() as con:
        con.register("_mined", table)
        # the store's table lists and explains rewrites; the confidence bands are for serving (the Parquet)
        replace_table(con, "rewrites", "SELECT * EXCLUDE (band_support, band_success) FROM _mined", {"mining": asdict(mining or MiningConfig()), "rephrases": stats["rephrases"]})
        con.unregister("_mined")
    stats["table"] = str(out)
    return stats


def detect_rephrases(store: Store, model_dir: Path, *, success_below: float = DEFECT_AT, threads: int = 1) -> int:
    """Run the contextual model on every turn that did not look successful (only those need a
    rephrase edge) and store the pairs in the ``rephrases`` table. Returns the pair count."""
    from ..rephrase import ContextualRephraseDetector, load_examples

    model = ContextualRephraseDetector.load(model_dir, threads=threads)
    examples = [e for e in load_examples(store.reader(), where=f"defect_score >= {float(success_below)}") if e.following]
    found = [(e.session_id, e.turn_index, e.following[k][1]) for e, (k, _) in zip(examples, model.predict(examples)) if k >= 0]
    table = pa.table({"session_id": [f[0] for f in found], "turn_index": pa.array([f[1] for f in found], pa.int32()),
                      "rephrase": [f[2] for f in found]})
    with store.transaction() as con:
        con.register("_found", table)
        replace_table(con, "rephrases", "SELECT * FROM _found", {"model": str(model_dir), "success_below": success_below})
        con.unregister("_found")
    return len(found)


def rephrase_training_set(store: Store, *, examples: int = 4000, seed: int = 0, distractors: float = 0.0,
                          signals: SignalConfig | None = None, rates: dict[str, float] | None = None) -> tuple[list, list, dict]:
    """The examples `train_rephrase_model` trains on: half weak positives, half weak negatives,
    sampled; ``distractors`` of them get a self-supervised distractor turn from another session.
    The statistics say which share of each was sampled (``rates``); given ``rates``, other logs are
    sampled at those shares instead (the privacy audit's reference users)."""
    import random

    from ..rephrase import load_examples, weak_label, with_distractors

    if examples < 2:
        raise InvalidInputError(explain(f"examples={examples}", "must be >= 2", "use e.g. --examples 4000"))
    if not 0.0 <= distractors <= 1.0:
        raise InvalidInputError(explain(f"distractors={distractors}", "must be a share in [0, 1]", "use e.g. 0.3"))
    compute_signals(store, signals)
    labelled = [(e, weak_label(e)) for e in load_examples(store.reader()) if e.following]
    pos = [x for x in labelled if x[1] is not None and x[1] >= 0]
    neg = [x for x in labelled if x[1] == -1]
    if not pos or not neg:
        raise InvalidInputError(explain(f"{len(pos)} weak positives, {len(neg)} weak negatives", "training needs both", "import more logs"))
    rng = random.Random(seed)
    n_pos, n_neg = (min(len(pos), examples // 2), min(len(neg), examples // 2)) if rates is None else (
        min(len(pos), int(round(rates["positives"] * len(pos)))), min(len(neg), int(round(rates["negatives"] * len(neg)))))
    chosen = rng.sample(pos, n_pos) + rng.sample(neg, n_neg)
    x, y = with_distractors([e for e, _ in chosen], [lab for _, lab in chosen], share=distractors, seed=seed)
    return x, y, {"examples": len(chosen), "weak_positives": len(pos), "weak_negatives": len(neg),
                  "rates": {"positives": n_pos / len(pos), "negatives": n_neg / len(neg)}}


def train_rephrase_model(store: Store, out: Path, *, examples: int = 4000, epochs: int = 1, lr: float = 5e-5, batch_size: int = 32, seed: int = 0, threads: int = 1,
                         distractors: float = 0.0, signals: SignalConfig | None = None, dp_epsilon: float | None = None,
                         dp_delta: float | None = None) -> dict:
    """Train the contextual rephrase model on weak labels from the store's signals (no truth), on
    :func:`rephrase_training_set`. Saves it to ``out``."""
    from ..rephrase import ContextualRephraseDetector

    x, y, stats = rephrase_training_set(store, examples=examples, seed=seed, distractors=distractors, signals=signals)
    model = ContextualRephraseDetector(epochs=epochs, lr=lr, batch_size=batch_size, random_state=seed, threads=threads,
                                       dp_epsilon=dp_epsilon, dp_delta=dp_delta).fit(x, y)
    model.save(out)
    return {"model": str(out), **stats, "train_seconds": round(model.train_seconds_, 1), "privacy": model.privacy_}


def _rows(cur) -> list[dict]:
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r)) for r in cur.fetchall()]


def _require(store: Store, table: str, fix: str) -> None:
    if not store.has_derived(table):
        raise InvalidInputError(explain(f"table {table!r}", "is not in the store", fix))


def list_rewrites(store: Store, *, search: str | None = None, limit: int = 20) -> list[dict]:
    """Rewrites by support; ``search`` matches either side (case-insensitive substring)."""
    if limit < 1:
        raise InvalidInputError(explain(f"limit={limit}", "must be >= 1", "use e.g. --limit 20"))
    _require(store, "rewrites", "run `selflearn rewrites mine` first")
    con = store.reader()
    where, args = "", []
    if search:
        where, args = "WHERE utterance ILIKE ? OR rewrite ILIKE ?", [f"%{search}%", f"%{search}%"]
    return _rows(con.execute(f"SELECT * FROM rewrites {where} ORDER BY support DESC, utterance LIMIT {int(limit)}", args))


def explain_rewrite(store: Store, utterance: str, *, max_chains: int = 10) -> dict:
    """One rewrite and the chains it came from: sessions where the utterance was followed, through
    rephrases, by the rewrite, with every turn between them and its signals."""
    _require(store, "rewrites", "run `selflearn rewrites mine` first")
    con = store.reader()
    u = normalise(utterance)
    found = _rows(con.execute("SELECT * FROM rewrites WHERE utterance = ?", [u]))
    if not found:
        raise InvalidInputError(explain(f"utterance={u!r}", "has no rewrite in the table", "list them with `selflearn rewrites list --search WORD`"))
    rw = found[0]
    out = []
    for chain in rewrite_chains(store, u, rw["rewrite"], limit=max_chains):
        turns = _rows(con.execute(
            """SELECT s.turn_index, s.ts, s.asr_text, s.response_status, s.barge_in, s.explicit_negative, s.rephrase_candidate,
                      round(s.defect_score, 3) AS defect_score
               FROM signals s WHERE s.session_id = ? AND s.turn_index BETWEEN ? AND ? ORDER BY s.turn_index""",
            [chain.session_id, chain.first, chain.last]))
        out.append({"session_id": chain.session_id, "turns": turns})
    return {"rewrite": rw, "chains": out}
