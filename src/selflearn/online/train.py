"""``selflearn online train``: from the store's logs to a model directory.

1. Signals say which turns worked; rephrase chains say what a failing request's user meant
   (the first working turn the chain reaches). No truth is read.
2. The global layer: every request's turns, successes, meanings and contexts; the requests
   that usually work are retrieval candidates.
3. The bi-encoder is fine-tuned on (failing request, what worked) pairs of the training users
   and exported to ONNX int8; the candidates are indexed with it.
4. The logs are replayed in time order through the personal layer; at each sampled request
   the candidates of both layers are ranked with what was known *then*; the label says
   whether a candidate means what the chain reached (failing requests a retry fixed) or nothing
   should change (requests that worked, and failing requests no retry fixed: a rewrite of one is
   served all the same, so the held-out precision must see them).
5. The ranker is fitted on the training users; the threshold is chosen on held-out users for
   the precision asked for.
"""

from __future__ import annotations

import hashlib
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..errors import InvalidInputError, explain
from ..text import normalise
from ..models.base import no_progress
from ..models.private import check_dp
from ..privacy.kanon import K_DEFAULT, check_k
from ..rewrites.table import TableRewriter
from ..signals import DEFECT_AT, SignalConfig, compute_signals
from ..store.store import Store
from .encoder import BiEncoder, OnnxEncoder, export_onnx
from .global_layer import build_global
from .habits import HabitRules
from .memory import PersonalMemory, meaning_key
from .private_global import build_private_global
from .calibration import calibrate_thresholds, judge_top
from .ranker import Ranker
from .replay import ranking_examples, ranking_rows
from .retry_window import DEFAULT_WINDOW_S, gaps_after_failure, learn_retry_window
from .online_rewriter import OnlineRewriter

__all__ = ["OnlineConfig", "train_online", "load_history", "History", "build_global", "held_out", "encoder_pairs"]

CALIBRATIONS = ("precision", "harm", "win-loss")
SUCCESS_BELOW = DEFECT_AT  # defect score under which a turn counts as having worked (as in mining)


@dataclass(frozen=True)
class OnlineConfig:
    min_precision: float = 0.8  # the rewrite threshold is the lowest that keeps this precision on held-out users
    validation_share: float = 0.2  # users held out for the threshold and the reported precision
    max_pairs: int = 20_000  # bi-encoder fine-tuning pairs
    epochs: int = 1
    batch_size: int = 64
    examples: int = 30_000  # ranking examples from the replay
    unfixed_share: float = 0.25  # of them, failing requests no retry fixed (the rest: half fixed by a retry, the others worked)
    k_global: int = 10
    k_personal: int = 5
    k_phonetic: int = 0  # global candidates found by sound (metaphone codes) beside the k_global found by meaning
    ignore_features: tuple[str, ...] = ()  # ranking features held at 0 (ablations: what a feature adds)
    seed: int = 0
    min_users: int = K_DEFAULT  # k-anonymity of the global layer: a request enters it once this many users said it
    dp_epsilon: float | None = None  # user-level DP: the encoder (a low-rank adapter) and the ranker train with DP-SGD, the global layer is released privately; a third of the budget each
    dp_delta: float | None = None  # None: 1 / (10 x the store's users)
    dp_texts_per_user: int = 10  # under DP: the requests each user contributes to the global layer (a seeded sample of theirs)
    calibrate: str = "precision"  # or "harm": the lowest threshold whose fixes outnumber harm harm_ratio to 1; or "win-loss" (calibration.py)
    harm_ratio: float = 12.0  # "harm": fixes per harm; "win-loss": wins per loss
    still_failing_loss: float = 0.0  # "win-loss": a rewrite that leaves a failing request failing counts as this much of a loss (calibration.py)
    fix_min: int = 1  # serve a user's own fix of a request once they made it this often (0: the ranker decides)
    phrase_min: int = 1  # insert the words a user added after a name (its state) this often before (0: off)
    fix_similarity: float = 0.0  # ...a fix at least this like the request (the signals' text similarity; 0.6 when no retry window can be learned)
    skip_working: bool = True  # ...never of a request that usually works as heard (habits.HabitRules; chosen in benchmarks/habit_pilot.py)
    fix_max_confidence: float = 0.95  # ...only when the recogniser's confidence is below this (1: at any; habits.HabitRules.max_confidence; chosen on a product pilot)
    retry_window: float | None = None  # seconds within which the next turn retries a failing one (None: learned from the logs' gaps, retry_window.py)
    retry_similarity: float = 0.0  # ...and at least this like it (the signals' text similarity; 0.35 when no window can be learned) for the personal layer to count a retry

    def check(self) -> "OnlineConfig":
        check_k(self.min_users)
        if not 0.0 <= self.unfixed_share < 0.5:
            raise InvalidInputError(explain(f"unfixed_share={self.unfixed_share}", "must be in [0, 0.5) (half the examples are fixed requests)", "use e.g. 0.25"))
        if not 0.0 < self.validation_share < 1.0:
            raise InvalidInputError(explain(f"validation_share={self.validation_share}", "must be in (0, 1)", "use e.g. 0.2"))
        if self.calibrate not in CALIBRATIONS:
            raise InvalidInputError(explain(f"calibrate={self.calibrate!r}", f"must be one of {list(CALIBRATIONS)}", "use one of them"))
        self.habits.check()
        if not 0.0 <= self.still_failing_loss <= 1.0:
            raise InvalidInputError(explain(f"still_failing_loss={self.still_failing_loss}", "must be in [0, 1] (the share of such rewrites that count as a loss)", "use e.g. 0.1"))
        if self.retry_window is not None and not 0.0 < self.retry_window <= 3600.0:
            raise InvalidInputError(explain(f"retry_window={self.retry_window}", "must be in (0, 3600] seconds, or None to learn it from the logs", "use e.g. 15, or leave it out"))
        if not 0.0 <= self.retry_similarity <= 1.0:
            raise InvalidInputError(explain(f"retry_similarity={self.retry_similarity}", "must be in [0, 1] (the signals' text similarity)", "use e.g. 0.35"))
        if not isinstance(self.dp_texts_per_user, int) or self.dp_texts_per_user < 1:
            raise InvalidInputError(explain(f"dp_texts_per_user={self.dp_texts_per_user!r}", "must be an integer >= 1 (requests a user contributes to the private global layer)", "use e.g. 10"))
        if self.max_pairs < 2 or self.examples < 10 or self.k_global < 1 or self.k_personal < 0 or self.k_phonetic < 0:
            raise InvalidInputError(explain(f"max_pairs={self.max_pairs}, examples={self.examples}, k={self.k_global}/{self.k_personal}",
                                            "need max_pairs >= 2, examples >= 10, k_global >= 1, k_personal >= 0, k_phonetic >= 0", "use the defaults"))
        return self

    @property
    def habits(self) -> HabitRules:
        return HabitRules(fix_min=self.fix_min, phrase_min=self.phrase_min, fix_similarity=self.fix_similarity, skip_working=self.skip_working,
                          max_confidence=self.fix_max_confidence)

    def dp_split(self, n_users: int) -> dict:
        """Under DP, the budget of each of the three private parts (the encoder, the ranker, the
        global layer) for logs of ``n_users`` users: a third of epsilon and of delta each, so that
        they add up to the budget asked for."""
        dp = check_dp(self.dp_epsilon, self.dp_delta, n_users)
        if dp is None:
            return {}
        return {"dp_epsilon": dp[0] / 3, "dp_delta": dp[1] / 3}


@dataclass
class History:
    """The store's turns in time order, with what the signals and chains say about each."""

    rows: list[dict]
    target: dict[int, int]  # row -> row of the first working turn its rephrase chain reaches


def load_history(store: Store, signals: SignalConfig | None = None) -> History:
    compute_signals(store, signals)
    con = store.reader()
    cur = con.execute(
        """SELECT t.session_id, t.turn_index, epoch(t.ts) AS ts, hour(timezone('UTC', t.ts)) AS hour, t.user_id, t.device_type, t.has_screen, t.location,
                   t.asr_text, t.asr_confidence, json_extract_string(t.extra, '$.utterance.rewrite') AS rewrite, t.intent, CAST(t.slots AS VARCHAR) AS slots,
                   t.response_status, t.barge_in, t.explicit_feedback, s.defect_score, s.rephrase_candidate
            FROM turns t JOIN signals s USING (session_id, turn_index)
            ORDER BY t.ts, t.session_id, t.turn_index"""
    )
    names = [d[0] for d in cur.description]
    rows = [dict(zip(names, r)) for r in cur.fetchall()]
    if not rows:
        raise InvalidInputError(explain(str(store.path), "has no turns", "import logs first (`selflearn store import FILE`)"))
    keys: dict[tuple, str] = {}
    pos: dict[tuple[str, int], int] = {}
    for i, r in enumerate(rows):
        r["text"] = normalise(r["asr_text"])
        r["rewrite"] = normalise(r["rewrite"]) if r["rewrite"] else None
        k = (r["intent"], r["slots"])
        r["meaning"] = keys[k] if k in keys else keys.setdefault(k, meaning_key(r["intent"], r["slots"]))
        r["ok"] = r["defect_score"] < SUCCESS_BELOW and r["response_status"] == "success"
        pos[(r["session_id"], r["turn_index"])] = i
    target: dict[int, int] = {}
    for i, r in enumerate(rows):
        if r["ok"] or r["rewrite"]:
            continue
        j, cur_row = i, r
        while cur_row["rephrase_candidate"]:
            nxt = pos.get((cur_row["session_id"], cur_row["turn_index"] + 1))
            if nxt is None:
                break
            j, cur_row = nxt, rows[nxt]
            if cur_row["ok"]:
                target[i] = j
                break
    return History(rows, target)


def held_out(user: str, share: float, seed: int) -> bool:
    """Whether ``user`` is in the validation share (a stable hash, so runs agree)."""
    h = int(hashlib.sha256(f"{seed}:{user}".encode()).hexdigest()[:8], 16)
    return h / 0xFFFFFFFF < share


def encoder_pairs(h: History, validation_share: float, seed: int) -> tuple[list[tuple[str, str]], list[str]]:
    """What the retrieval encoder is fine-tuned on: (failing request, the request that fixed it) of
    every user outside the validation share, in time order, and whose pair each is."""
    held: dict[str, bool] = {}
    out, users = [], []
    for i, t in h.target.items():
        u = h.rows[i]["user_id"]
        if u not in held:
            held[u] = held_out(u, validation_share, seed)
        if not held[u] and h.rows[i]["text"] != h.rows[t]["text"]:
            out.append((h.rows[i]["text"], h.rows[t]["text"]))
            users.append(u)
    return out, users


SIGNALS_RULE = (DEFAULT_WINDOW_S, 0.35, 0.6)  # the retry window, retry and fix similarity chosen for the signals' window (habit_pilot.py)


def personal_retry_rule(h: History, c: OnlineConfig) -> tuple[float, float, float, bool]:
    """How the personal layer tells a user's retry (and so their own fix) from their next request:
    (window in seconds, how alike a retry must be, how alike a fix must be to be served, whether the
    window was learned). ``c.retry_window`` when set; else the window learned from the gaps after
    failing requests (:mod:`.retry_window`) with ``c``'s similarities; else, when the logs are too
    few to learn it — or under differential privacy, where a window learned from every user's gaps
    would be a statistic released without noise — the signals' 45 s window with the similarities
    chosen for it."""
    if c.retry_window is not None:
        return float(c.retry_window), c.retry_similarity, c.fix_similarity, False
    learned = None if c.dp_epsilon is not None else learn_retry_window(gaps_after_failure(h), seed=c.seed)
    if learned is None:
        return SIGNALS_RULE[0], max(c.retry_similarity, SIGNALS_RULE[1]), max(c.fix_similarity, SIGNALS_RULE[2]), False
    return learned, c.retry_similarity, c.fix_similarity, True


def _reuse_encoder(model_dir: Path, out: Path, *, private: bool) -> dict:
    """Copy the fine-tuned encoder (and its ONNX export) of an online model trained on the same logs."""
    from ..models.directory import describe

    src, onnx = model_dir / "encoder", model_dir / "encoder.onnx"
    if not (src / "config.json").is_file() or not onnx.is_file():
        raise InvalidInputError(explain(str(model_dir), "must be an online model directory (encoder/ and encoder.onnx)",
                                        "pass a directory `selflearn online train` wrote"))
    if private and (describe(src).get("privacy") or {}).get("epsilon") is None:
        raise InvalidInputError(explain(str(model_dir), "holds an encoder trained without differential privacy",
                                        "reuse an encoder trained with --dp-epsilon, or train a new one"))
    if src.resolve() != (out / "encoder").resolve():
        shutil.copytree(src, out / "encoder", dirs_exist_ok=True)
        shutil.copyfile(onnx, out / "encoder.onnx")
    return {"reused_from": str(model_dir)}


def train_online(store: Store, out: Path, *, table: Path | None = None, config: OnlineConfig | None = None,
                 signals: SignalConfig | None = None, threads: int = 1, progress=None, encoder_from: Path | None = None) -> dict:
    """Train the online rewriter from the store's logs and write the model directory ``out``
    (with ``table``, a `selflearn rewrites mine` Parquet, served first). Returns the statistics.
    ``encoder_from``: an online model trained on the same logs whose fine-tuned encoder is reused
    (only the layers and the ranker are trained again: ablations, a ranker refresh)."""
    import torch

    c = (config or OnlineConfig()).check()
    say = progress or no_progress
    torch.set_num_threads(threads)
    started = time.perf_counter()
    say("history", 0, 0)
    h = load_history(store, signals)
    held = {u: held_out(u, c.validation_share, c.seed) for u in {r["user_id"] for r in h.rows}}
    pairs, pair_users = encoder_pairs(h, c.validation_share, c.seed)
    say("global layer", 0, 0)
    dp = c.dp_split(len(held))
    if dp:  # released with user-level DP (partition selection and noisy counts) instead of k-anonymity
        g, _ = build_private_global(h, dp["dp_epsilon"], dp["dp_delta"], max_texts=c.dp_texts_per_user, seed=c.seed, min_users=c.min_users)
    else:
        g = build_global(h, c.min_users)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if encoder_from is not None:
        fit_stats = _reuse_encoder(Path(encoder_from), out, private=bool(dp))
    else:
        say(f"fine-tune encoder ({min(len(set(pairs)), c.max_pairs)} pairs)", 0, 0)
        # under DP the budget is split in thirds (they add up): the global layer, the encoder (a private
        # low-rank adapter over the frozen MiniLM, negatives from the private global index) and the ranker
        enc = BiEncoder(epochs=c.epochs, batch_size=c.batch_size, random_state=c.seed, threads=threads, max_pairs=c.max_pairs, **dp)
        if dp:
            enc.fit(pairs, users=pair_users, negatives=[g.texts[i] for i in g.candidates])
        else:
            enc.fit(pairs)
        fit_stats = enc.training_
        enc.save(out / "encoder")
        say("export ONNX", 0, 0)
        export_onnx(enc, out / "encoder.onnx", quantize=True)
    onnx = OnnxEncoder(out / "encoder.onnx", out / "encoder" / "tokenizer", threads=threads)
    say("index", 0, 0)
    g.set_vectors(onnx.encode([g.texts[i] for i in g.candidates]))
    window, retry_similarity, fix_similarity, learned = personal_retry_rule(h, c)
    personal = PersonalMemory(onnx, known=g.has_vector, window_s=window, min_similarity=retry_similarity)
    rw = OnlineRewriter(onnx, g, personal, Ranker(), TableRewriter.load(table) if table else None,
                        layers=("global", "personal"), k_global=c.k_global, k_personal=c.k_personal, k_phonetic=c.k_phonetic, threshold=1.0)
    say("replay", 0, 0)
    examples, fixable_set, weight_of, n_unfixed = ranking_examples(rw, h, c)
    say("ranker", 0, 0)
    rows = ranking_rows(h, examples, held)
    if not rows.ys or not rows.global_fixes:
        raise InvalidInputError(explain(
            f"a global layer of {len(g.texts)} requests ({len(g.candidates)} that usually work) from {len(held)} users"
            + (f", released with DP at epsilon {dp['dp_epsilon']:.3g}" if dp else ""),
            "the ranker needs failing requests whose fix is among the global layer's candidates (each candidate shared by enough users to enter it)",
            "train on more users' logs" + (", raise --dp-epsilon, or train without DP (the global layer is then k-anonymous)" if dp else "")))
    x, y, tr = rows.x, np.concatenate(rows.ys), rows.train
    ranker = Ranker(random_state=c.seed, ignore=tuple(c.ignore_features), **dp).fit(x[tr], y[tr], users=list(rows.users[tr]))
    val = [(examples[k], yk) for k, yk, t in zip(rows.example, rows.ys, rows.example_train) if not t]
    judged = judge_top(h, g, [e for e, _ in val], [ranker.score(e[2]) for e, _ in val], [yk for _, yk in val], fixable_set, weight_of, table=rw.table)
    rw.ranker = ranker
    calibration = calibrate_thresholds(judged, c)
    ranker.threshold_ = calibration["threshold"]
    rw.threshold, rw.personal_threshold = calibration["threshold"], calibration["personal_threshold"]
    rw.layers = ("table", "global", "personal")
    rw.habits = replace(c.habits, fix_similarity=fix_similarity)
    stats = {"turns": len(h.rows), "fixable_requests": len(h.target), "biencoder": fit_stats,
             "global_texts": len(g.texts), "global_candidates": int(len(g.candidates)),
             "personal_users": len(personal.users), "retry_window_s": window, "retry_window_learned": learned,
             "retry_similarity": retry_similarity, "fix_similarity": fix_similarity, "ranking_examples": len(examples), "personal_fix_census": sum(e[3] for e in examples), "ranking_rows": int(len(y)),
             "validation_requests": int(len(judged.score)), "unfixed_requests": n_unfixed, "fixable_by_rewriting": len(fixable_set), "min_precision": c.min_precision,
             **calibration, "train_seconds": round(time.perf_counter() - started, 1)}
    say("save", 0, 0)
    rw.ids = store.pseudonyms()  # it learned from pseudonyms: requests will name users by their own ids
    rw.save(out, meta={"training": {k: v for k, v in stats.items() if k not in ("curve", "win_loss_curve")}, "config": c.__dict__})
    return stats
