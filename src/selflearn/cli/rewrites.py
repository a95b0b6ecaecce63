"""`selflearn rewrites mine | list | explain` and `selflearn rephrase train`: parse, call the library, print."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from selflearn.rewrites.mining import explain_rewrite, list_rewrites, mine, train_rephrase_model
from selflearn.rewrites.table import MiningConfig
from selflearn.signals import SignalConfig
from selflearn.store.store import DEFAULT_STORE, Store

from .app import DpDeltaOpt, DpEpsilonOpt, JsonOpt, StoreOpt, err, group, out, print_json

__all__ = ["mine_cmd", "list_cmd", "explain_cmd", "train_rephrase_cmd"]

_SIG, _MINE = SignalConfig(), MiningConfig()
rewrites_app = group("rewrites", "The precomputed rewrite table: mine it from the logs, list it, explain a rewrite.")
rephrase_app = group("rephrase", "The contextual rephrase model: train it on weak labels from the logs.")

@rewrites_app.command("mine")
def mine_cmd(
    store: StoreOpt = Path(DEFAULT_STORE),
    out_file: Annotated[Path, typer.Option("--out", help="Where the rewrite table goes (Parquet).")] = Path("rewrites.parquet"),
    window: Annotated[float, typer.Option(help="Seconds within which a next request can be a rephrase.")] = _SIG.window_s,
    min_similarity: Annotated[float, typer.Option(help="How similar a next request must be to count as a rephrase.")] = _SIG.min_similarity,
    min_support: Annotated[int, typer.Option(help="Turns of an utterance needed before it is rewritten.")] = _MINE.min_support,
    min_probability: Annotated[float, typer.Option(help="Least success probability of the rewrite (how often it works when said).")] = _MINE.min_probability,
    min_share: Annotated[float, typer.Option(help="Least share of the utterance's successful chains that end in the rewrite.")] = _MINE.min_share,
    max_direct_success: Annotated[float, typer.Option(help="Never rewrite an utterance that succeeds this often as it is.")] = _MINE.max_direct_success,
    rephrase_model: Annotated[Path | None, typer.Option(help="A contextual rephrase model (`selflearn rephrase train`) instead of the pairwise baseline.")] = None,
    min_users: Annotated[int, typer.Option(help="k-anonymity: an utterance and its rewrite must each have been said by this many distinct users.")] = _MINE.min_users,
    as_json: JsonOpt = False,
) -> None:
    """Signals -> rephrase chains -> absorbing Markov chains -> rewrite table (Parquet and the store's
    `rewrites` table)."""
    with Store(store) as st, err.status("mining") as status:
        stats = mine(
            st, out_file,
            signals=SignalConfig(window_s=window, min_similarity=min_similarity),
            mining=MiningConfig(min_support=min_support, min_probability=min_probability, min_share=min_share,
                                max_direct_success=max_direct_success, min_users=min_users),
            rephrase_model=rephrase_model,
            progress=lambda stage, *_: status.update(f"mining: {stage}"),
        )
    if as_json:
        print_json(stats)
    else:
        out.print(f"{stats['rewrites']:,} rewrites from {stats['signal_turns']:,} turns "
                  f"({stats['utterances']:,} distinct utterances) in {stats['seconds']} s → {stats['table']}")


@rewrites_app.command("list")
def list_cmd(
    store: StoreOpt = Path(DEFAULT_STORE),
    search: Annotated[str | None, typer.Option(help="Only rewrites whose utterance or rewrite contains this.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many rows.")] = 20,
    as_json: JsonOpt = False,
) -> None:
    """List or search the mined rewrites, most supported first."""
    with Store(store, read_only=True) as st:
        result = list_rewrites(st, search=search, limit=limit)
    if as_json:
        print_json(result)
        return
    t = Table(title=f"{len(result)} rewrites" + (f" matching {search!r}" if search else ""))
    for c in ("utterance", "rewrite", "works", "as is", "share", "support"):
        t.add_column(c)
    for r in result:
        t.add_row(r["utterance"], r["rewrite"], f"{r['rewrite_success']:.0%}", f"{r['direct_success']:.0%}", f"{r['share']:.0%}", str(r["support"]))
    out.print(t)


@rewrites_app.command("explain")
def explain_cmd(
    utterance: Annotated[str, typer.Argument(help="The request (as heard; case and spacing do not matter).")],
    store: StoreOpt = Path(DEFAULT_STORE),
    chains: Annotated[int, typer.Option(min=1, max=100, help="At most this many sessions it was learned from.")] = 10,
    as_json: JsonOpt = False,
) -> None:
    """One rewrite and the sessions it was learned from (the chains the dashboard shows too)."""
    with Store(store, read_only=True) as st:
        result = explain_rewrite(st, utterance, max_chains=chains)
    if as_json:
        print_json(result)
        return
    rw = result["rewrite"]
    out.print(f"{rw['utterance']!r} → {rw['rewrite']!r}: the rewrite works {rw['rewrite_success']:.0%} of the time, the utterance "
              f"{rw['direct_success']:.0%}; {rw['share']:.0%} of its successful chains end in the rewrite "
              f"(absorption probability {rw['probability']:.2f}); seen {rw['support']} times, {rw['rephrase_support']} followed by a rephrase")
    for chain in result["chains"]:
        out.print(f"\nsession {chain['session_id']}")
        for t in chain["turns"]:
            flags = ", ".join(k for k in ("barge_in", "explicit_negative", "rephrase_candidate") if t[k])
            out.print(f"  [{t['turn_index']}] {t['asr_text']!r}  {t['response_status']}  defect score {t['defect_score']}  {flags}")


@rephrase_app.command("train")
def train_rephrase_cmd(
    store: StoreOpt = Path(DEFAULT_STORE),
    out_dir: Annotated[Path, typer.Option("--out", help="Model directory to write.")] = Path("rephrase-model"),
    examples: Annotated[int, typer.Option(help="Weakly labelled examples to train on (half positive).")] = 4000,
    epochs: Annotated[int, typer.Option(help="Fine-tuning epochs.")] = 1,
    seed: Annotated[int, typer.Option(help="Training seed.")] = 0,
    threads: Annotated[int, typer.Option(help="CPU threads for torch.")] = 1,
    distractors: Annotated[float, typer.Option(help="Share of examples given a self-supervised distractor turn from another session.")] = 0.0,
    dp_epsilon: DpEpsilonOpt = None,
    dp_delta: DpDeltaOpt = None,
) -> None:
    """Train the contextual rephrase model (MiniLM span prediction) on weak labels from the store's
    feedback signals; no annotation needed. Use it with `selflearn rewrites mine --rephrase-model DIR`."""
    with Store(store) as st, err.status("training the rephrase model"):
        res = train_rephrase_model(st, out_dir, examples=examples, epochs=epochs, seed=seed, threads=threads, distractors=distractors,
                                   dp_epsilon=dp_epsilon, dp_delta=dp_delta)
    out.print(f"trained on {res['examples']:,} weak labels in {res['train_seconds']} s → {res['model']}")
