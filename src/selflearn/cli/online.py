"""CLI commands of online rewriting: train online, serve. Parse, call the library, print."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from selflearn.errors import InvalidInputError, explain
from selflearn.store.store import DEFAULT_STORE, Store

from .app import DpDeltaOpt, DpEpsilonOpt, JsonOpt, StoreOpt, err, group, out, print_json

__all__ = ["train_online_cmd", "serve_cmd", "calibrate_cmd"]

from selflearn.online.train import OnlineConfig  # noqa: E402  (its defaults are the options' defaults)

_ONLINE = OnlineConfig()
online_app = group("online", "The online rewriter: train it from the store's logs, serve it.")


@online_app.command("train")
def train_online_cmd(
    store: StoreOpt = Path(DEFAULT_STORE),
    out_dir: Annotated[Path, typer.Option("--out", help="The model directory to write (what `selflearn online serve` loads).")] = Path("online-model"),
    table: Annotated[Path | None, typer.Option(help="A rewrite table from `selflearn rewrites mine`, served before the online layers.")] = None,
    min_precision: Annotated[float, typer.Option(help="Rewrite only above the score that keeps this precision on held-out users.")] = _ONLINE.min_precision,
    max_pairs: Annotated[int, typer.Option(help="Most (failing request, what worked) pairs to fine-tune the encoder on.")] = _ONLINE.max_pairs,
    examples: Annotated[int, typer.Option(help="Ranking examples drawn from the replayed logs.")] = _ONLINE.examples,
    calibrate: Annotated[str, typer.Option(help="Threshold by 'precision' (--min-precision), by 'harm' (--harm-ratio fixes per broken request) or by "
                                            "'win-loss' (--harm-ratio wins per loss, a threshold for the global and one for the personal layer).")] = _ONLINE.calibrate,
    harm_ratio: Annotated[float, typer.Option(help="With --calibrate harm: fixes needed per rewrite of a working request; win-loss: wins per loss.")] = _ONLINE.harm_ratio,
    still_failing_loss: Annotated[float, typer.Option(help="With --calibrate win-loss: how much of a loss a rewrite that leaves a failing request failing counts (0-1).")] = _ONLINE.still_failing_loss,
    fix_min: Annotated[int, typer.Option(help="Serve a user's own fix of a request once they made it this often (0: leave it to the ranker).")] = _ONLINE.fix_min,
    phrase_min: Annotated[int, typer.Option(help="Insert the words a user added after a name (e.g. its state) once they did so this often (0: off).")] = _ONLINE.phrase_min,
    fix_similarity: Annotated[float, typer.Option(help="Serve a user's own fix only when it is at least this like the request (0-1, the signals' text similarity; "
                                                         "at least 0.6 when no retry window can be learned).")] = _ONLINE.fix_similarity,
    fix_max_confidence: Annotated[float, typer.Option(help="Serve the user's habits only when the recogniser's confidence is below this (0-1; 1: at any).")] = _ONLINE.fix_max_confidence,
    retry_window: Annotated[float | None, typer.Option(help="Seconds within which a user's next turn counts as a retry of a failing one, for the personal layer "
                                                       "(default: learned from the logs' gaps after failing requests).")] = _ONLINE.retry_window,
    retry_similarity: Annotated[float, typer.Option(help="How alike that next turn must be to count as the retry, for the personal layer (0-1, the signals' text similarity; "
                                                          "at least 0.35 when no retry window can be learned).")] = _ONLINE.retry_similarity,
    k_phonetic: Annotated[int, typer.Option(help="Global candidates found by sound (metaphone codes of the words) beside those found by meaning (0: off).")] = _ONLINE.k_phonetic,
    seed: Annotated[int, typer.Option(help="Seed of sampling, splits and training.")] = _ONLINE.seed,
    min_users: Annotated[int, typer.Option(help="k-anonymity: a request enters the shared global layer once this many distinct users said it.")] = _ONLINE.min_users,
    dp_epsilon: DpEpsilonOpt = None,
    dp_delta: DpDeltaOpt = None,
    dp_texts_per_user: Annotated[int, typer.Option(help="With --dp-epsilon: the requests each user contributes to the private global layer.")] = _ONLINE.dp_texts_per_user,
    threads: Annotated[int, typer.Option(help="CPU threads for torch.")] = 1,
    as_json: JsonOpt = False,
) -> None:
    """Fine-tune the retrieval encoder, build the global and personal layers, train the ranker
    and pick its threshold; write the model directory."""
    from selflearn.online import OnlineConfig, train_online

    cfg = OnlineConfig(min_precision=min_precision, max_pairs=max_pairs, examples=examples, seed=seed,
                       calibrate=calibrate, harm_ratio=harm_ratio, still_failing_loss=still_failing_loss, fix_min=fix_min, phrase_min=phrase_min, fix_similarity=fix_similarity, min_users=min_users,
                       fix_max_confidence=fix_max_confidence, retry_window=retry_window, retry_similarity=retry_similarity, k_phonetic=k_phonetic, dp_epsilon=dp_epsilon, dp_delta=dp_delta, dp_texts_per_user=dp_texts_per_user).check()
    if table is not None and not table.is_file():
        raise InvalidInputError(explain(str(table), "is not a file", "pass the Parquet file `selflearn rewrites mine --out` wrote"))
    with Store(store) as st, err.status("training") as status:
        stats = train_online(st, out_dir, table=table, config=cfg, threads=threads, progress=lambda s, *_: status.update(f"training: {s}"))
    if as_json:
        print_json(stats)
    else:
        at = stats["at_threshold"]
        if stats["calibrate"] == "win-loss":
            g, p = stats["win_loss_threshold"], stats["personal_win_loss_threshold"]
            chosen = (f"threshold {stats['threshold']:.3f} (held-out {g['wins']:,.0f} wins : {g['losses']:,.0f} losses), "
                      f"personal {stats['personal_threshold']:.3f} ({p['wins']:,.0f} : {p['losses']:,.0f})")
        else:
            precision = "n/a" if at["precision"] is None else f"{at['precision']:.1%}"
            chosen = f"threshold {stats['threshold']:.3f} (held-out precision {precision}, coverage {at['coverage']:.1%})"
        out.print(f"model → {out_dir}: {stats['global_candidates']:,} global candidates, {stats['personal_users']:,} users; "
                  f"{chosen} in {stats['train_seconds']} s", highlight=False)


@online_app.command("serve")
def serve_cmd(
    model: Annotated[Path, typer.Option(help="Model directory from `selflearn online train`.")] = Path("online-model"),
    api_keys: Annotated[Path | None, typer.Option("--api-keys", envvar="SELFLEARN_API_KEYS_FILE", help="Key file from `selflearn keys create` "
                                                  "(digests and scopes; $SELFLEARN_API_KEYS may hold more entries). The service needs at least one key.")] = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    layers: Annotated[str, typer.Option(help="Comma-separated layers to use: table, global, personal.")] = "table,global,personal",
    persist: Annotated[bool, typer.Option(help="Write the personal layer back to the model directory on shutdown.")] = False,
    store: Annotated[Path | None, typer.Option(help="Store with users' preferences: serve /v1/users/{id}/preferences and /v1/teach, "
                                                    "and fill what users taught into their requests; and the review dashboard at /dashboard.")] = None,
    deadline_ms: Annotated[float, typer.Option(help="A rewrite that cannot be answered within this many ms is refused at once with 503 (callers may ask for less with x-deadline-ms).")] = 50.0,
    max_body: Annotated[int, typer.Option(help="Largest request body in bytes (413 beyond).")] = 64 * 1024,
    max_queue: Annotated[int, typer.Option(help="Requests waiting for the rewriter at most (503 beyond, whatever their deadline).")] = 256,
    cors_origin: Annotated[list[str] | None, typer.Option(help="A browser origin allowed to call the API (repeatable); none by default.")] = None,
    global_threshold: Annotated[float | None, typer.Option(help="Serve the global layer's rewrites from this score, not the model's: a pilot "
                                                                "for `selflearn online calibrate` (serve it to a share of traffic).")] = None,
) -> None:
    """Serve POST /v1/rewrite (table, then the global and personal layers), POST /v1/turns,
    /healthz, /metrics (Prometheus), the OpenAPI docs at /docs and, with --store, the dashboard.
    Every /v1 call and the dashboard need an API key of the right scope (docs/security.md)."""
    import uvicorn

    from selflearn.service import create_app
    from selflearn.service.app import ServiceSettings
    from selflearn.service.keys import KeyRing

    chosen = tuple(x.strip() for x in layers.split(",") if x.strip())
    settings = ServiceSettings(deadline_ms=deadline_ms, max_body=max_body, max_queue=max_queue, cors_origins=tuple(cors_origin or ()))
    api = create_app(model, keys=KeyRing.load(api_keys), layers=chosen, persist=persist, store=store, settings=settings, global_threshold=global_threshold)
    import os
    import sys

    # Two threads are busy in the service (the event loop, the owner thread): hand the GIL over every
    # 0.5 ms rather than Python's 5 ms, or each hand-over can keep a request waiting for milliseconds.
    sys.setswitchinterval(float(os.environ.get("SELFLEARN_SWITCH_INTERVAL_S", "0.0005")))
    uvicorn.run(api, host=host, port=port, log_level="warning", access_log=False, limit_concurrency=4096, h11_max_incomplete_event_size=16 * 1024)


@online_app.command("calibrate")
def calibrate_cmd(
    store: StoreOpt = Path(DEFAULT_STORE),
    model: Annotated[Path, typer.Option(help="Model directory from `selflearn online train` whose rewrites the store's logs show served.")] = Path("online-model"),
    ratio: Annotated[float, typer.Option(help="Wins needed per loss at the threshold chosen.")] = 12.0,
    still_failing_loss: Annotated[float, typer.Option(help="How much of a loss a rewrite that left a failing request failing counts (0-1).")] = 0.0,
    write: Annotated[bool, typer.Option(help="Save the threshold in the model directory (else only report it).")] = True,
    as_json: JsonOpt = False,
) -> None:
    """Choose the global layer's threshold on traffic it served (a pilot: `selflearn online serve
    --global-threshold 0.2` for a share of traffic, its logs imported into --store): each rewritten
    turn is judged by its outcome against how often its words work as heard."""
    from selflearn.online.served import calibrate_on_served

    with Store(store) as st, err.status("calibrating"):
        stats = calibrate_on_served(model, st, min_ratio=ratio, still_failing_loss=still_failing_loss, write=write)
    if as_json:
        print_json(stats)
    else:
        at = stats["at_threshold"]
        out.print(f"global threshold {stats['threshold']:.3f} (was {stats['before']:.3f}): {at['rewrites']:,} of {stats['served_rewrites']:,} served rewrites, "
                  f"judged {at['wins']:,.1f} wins : {at['losses']:,.1f} losses" + (f"; saved in {model}" if write else " (not saved)"), highlight=False)


keys_app = group("keys", "API keys of the rewrite service: create, list, revoke.")
KeyFile = Annotated[Path, typer.Option("--file", envvar="SELFLEARN_API_KEYS_FILE", help="The key file (digests only; created readable by you alone).")]


@keys_app.command("create")
def keys_create_cmd(
    name: Annotated[str, typer.Argument(help="Who holds the key, e.g. assistant-backend.")],
    scope: Annotated[list[str], typer.Option(help="rewrite, ingest or admin (repeatable, or comma-separated).")],
    file: KeyFile = Path("selflearn-keys.txt"),
) -> None:
    """Make a key: its digest goes into the key file, the key itself is printed once (store it in your secret manager)."""
    from selflearn.service.keys import create_key

    secret, entry = create_key(file, name, ",".join(scope))
    err.print(f"key {entry.name!r} with scopes {','.join(sorted(entry.scopes))} added to {file}; it is shown once:", highlight=False)
    out.print(secret, highlight=False)


@keys_app.command("list")
def keys_list_cmd(file: KeyFile = Path("selflearn-keys.txt")) -> None:
    """The keys in a key file: names and scopes (the keys themselves are not kept)."""
    from selflearn.service.keys import KeyRing

    ring = KeyRing.load(file, env="")
    table = Table("name", "scopes", title=f"keys in {file}")
    for k in ring.keys:
        table.add_row(k.name, ",".join(sorted(k.scopes)))
    out.print(table)


@keys_app.command("revoke")
def keys_revoke_cmd(name: Annotated[str, typer.Argument(help="The key's name.")], file: KeyFile = Path("selflearn-keys.txt")) -> None:
    """Remove a key (a running service stops accepting it within a second)."""
    from selflearn.service.keys import revoke_key

    if not revoke_key(file, name):
        raise InvalidInputError(explain(f"name {name!r}", f"is not a key in {file}", "see `selflearn keys list`"))
    out.print(f"revoked {name}", highlight=False)
