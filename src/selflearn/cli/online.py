"""CLI commands of online rewriting: train online, serve. Parse, call the library, print."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from selflearn.errors import InvalidInputError, SelflearnError, explain
from selflearn.store.store import DEFAULT_STORE, Store

from .app import StoreOpt, app, err, fail, out

__all__ = ["train_online_cmd", "serve_cmd"]

train_app = typer.Typer(help="Train models from the store's logs.", no_args_is_help=True, rich_markup_mode=None)
app.add_typer(train_app, name="train")


@train_app.command("online")
def train_online_cmd(
    store: StoreOpt = Path(DEFAULT_STORE),
    out_dir: Annotated[Path, typer.Option("--out", help="The model directory to write (what `selflearn serve` loads).")] = Path("online-model"),
    table: Annotated[Path | None, typer.Option(help="A rewrite table from `selflearn mine`, served before the online layers.")] = None,
    min_precision: Annotated[float, typer.Option(help="Rewrite only above the score that keeps this precision on held-out users.")] = 0.8,
    max_pairs: Annotated[int, typer.Option(help="Most (failing request, what worked) pairs to fine-tune the encoder on.")] = 20_000,
    examples: Annotated[int, typer.Option(help="Ranking examples drawn from the replayed logs.")] = 30_000,
    calibrate: Annotated[str, typer.Option(help="Threshold by 'precision' (--min-precision) or by 'harm' (--harm-ratio fixes per broken request).")] = "precision",
    harm_ratio: Annotated[float, typer.Option(help="With --calibrate harm: fixes needed per rewrite of a working request.")] = 12.0,
    fix_min: Annotated[int, typer.Option(help="Serve a user's own fix of a request once they made it this often (0: leave it to the ranker).")] = 2,
    phrase_min: Annotated[int, typer.Option(help="Insert the words a user added after a name (e.g. its state) once they did so this often (0: off).")] = 1,
    seed: Annotated[int, typer.Option(help="Seed of sampling, splits and training.")] = 0,
    threads: Annotated[int, typer.Option(help="CPU threads for torch.")] = 1,
    as_json: Annotated[bool, typer.Option("--json", help="Print the statistics as one JSON object.")] = False,
) -> None:
    """Fine-tune the retrieval encoder, build the global and personal layers, train the ranker
    and pick its threshold; write the model directory."""
    from selflearn.online import OnlineConfig, train_online

    try:
        cfg = OnlineConfig(min_precision=min_precision, max_pairs=max_pairs, examples=examples, seed=seed,
                           calibrate=calibrate, harm_ratio=harm_ratio, fix_min=fix_min, phrase_min=phrase_min).check()
        if table is not None and not table.is_file():
            raise InvalidInputError(explain(str(table), "is not a file", "pass the Parquet file `selflearn mine --out` wrote"))
        with Store(store) as st, err.status("training") as status:
            stats = train_online(st, out_dir, table=table, config=cfg, threads=threads, progress=lambda s: status.update(f"training: {s}"))
    except SelflearnError as exc:
        raise fail(exc) from exc
    if as_json:
        out.print_json(json.dumps(stats))
    else:
        at = stats["at_threshold"]
        precision = "n/a" if at["precision"] is None else f"{at['precision']:.1%}"
        out.print(f"model → {out_dir}: {stats['global_candidates']:,} global candidates, {stats['personal_users']:,} users; "
                  f"threshold {stats['threshold']:.3f} (held-out precision {precision}, coverage {at['coverage']:.1%}) "
                  f"in {stats['train_seconds']} s", highlight=False)


@app.command("serve")
def serve_cmd(
    model: Annotated[Path, typer.Option(help="Model directory from `selflearn train online`.")] = Path("online-model"),
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    layers: Annotated[str, typer.Option(help="Comma-separated layers to use: table, global, personal.")] = "table,global,personal",
    persist: Annotated[bool, typer.Option(help="Write the personal layer back to the model directory on shutdown.")] = False,
    store: Annotated[Path | None, typer.Option(help="Store with users' preferences: serve /v1/users/{id}/preferences and /v1/teach, "
                                                    "and fill what users taught into their requests; and the review dashboard at /dashboard.")] = None,
    admin_token: Annotated[str | None, typer.Option(envvar="SELFLEARN_ADMIN_TOKEN", help="Token for the dashboard's admin actions "
                                                    "(block or approve rewrites, delete preferences); without one they are refused.")] = None,
) -> None:
    """Serve POST /v1/rewrite (table, then the global and personal layers), POST /v1/turns,
    /healthz, /metrics (Prometheus), the OpenAPI docs at /docs and, with --store, the dashboard."""
    import uvicorn

    from selflearn.service import create_app

    try:
        chosen = tuple(x.strip() for x in layers.split(",") if x.strip())
        api = create_app(model, layers=chosen, persist=persist, store=store, admin_token=admin_token)
    except SelflearnError as exc:
        raise fail(exc) from exc
    uvicorn.run(api, host=host, port=port, log_level="warning", access_log=False)
