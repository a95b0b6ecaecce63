"""Entry points the CLI calls: build or reuse a world, simulate to a directory,
run an A/B test, run the live ASR channel."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import msgspec

from ..errors import InvalidInputError, explain
from .ab import ab_test
from .asr_channel import CONDITIONS, AsrChannel, Condition
from .build import World, WorldConfig, build_world
from .corpus import load_sentences
from ..rewriters import load_rewriter
from .simulate import SimConfig, Simulator, load_nlu_for
from .truth import TruthWriter, write_users

__all__ = ["ensure_world", "simulate_to", "run_ab", "run_teaching_ab", "run_channel"]


def ensure_world(
    world_dir: Path,
    *,
    sentences: list[Path] | None = None,
    asr_corpus: list[Path] | None = None,
    world_seed: int = 0,
    nlu_epochs: int | None = None,
    max_sentences: int | None = None,
    progress: Callable | None = None,
) -> tuple[World, bool]:
    """Load the world in ``world_dir``; build it first when it is missing or was
    built from other inputs. Returns (world, built_now)."""
    manifest = world_dir / "manifest.json"
    wanted = None
    if sentences or asr_corpus:
        if not (sentences and asr_corpus):
            raise InvalidInputError(explain("--sentences/--asr-corpus", "must be given together", "pass both files"))
        wanted = WorldConfig(
            sentences=[str(p.resolve()) for p in sentences],
            asr_corpus=[str(p.resolve()) for p in asr_corpus],
            seed=world_seed,
            max_sentences=max_sentences,
        )
        if nlu_epochs is not None:
            wanted.nlu_epochs = nlu_epochs
    if manifest.exists():
        have = json.loads(manifest.read_text()).get("config", {})
        if wanted is None or all(have.get(k) == v for k, v in vars(wanted).items() if k != "threads"):
            return World.load(world_dir), False
    if wanted is None:
        raise InvalidInputError(
            explain(str(world_dir), "holds no built world", "pass --sentences and --asr-corpus (SLURP and ASR-corpus files) to build one")
        )
    world_dir.mkdir(parents=True, exist_ok=True)
    world, nlu = build_world(wanted, progress=progress, live_cache=world_dir / "live_asr.jsonl")
    nlu.save(world_dir / "nlu")
    world.save(world_dir)
    return world, True


def simulate_to(out_dir: Path, world_dir: Path, world: World, config: SimConfig, *, rewriter=None, progress: Callable | None = None) -> dict:
    """Write ``out_dir/logs.jsonl`` (our log schema) and ``out_dir/truth/`` (hidden); ``rewriter``:
    a spec for :func:`load_rewriter`, or an object with ``rewrite``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    sim = Simulator(world, config, nlu_loader=load_nlu_for(world_dir))
    rw = load_rewriter(rewriter) if isinstance(rewriter, str) else rewriter
    encoder = msgspec.json.Encoder()
    truth = TruthWriter(out_dir / "truth" / "turns.parquet")
    logs_path = out_dir / "logs.jsonl"
    part = logs_path.with_suffix(".jsonl.part")
    buf: list[bytes] = []
    n = [0, 0]
    with open(part, "wb") as fh:

        def on_turn(turn: dict, row: dict) -> None:
            buf.append(encoder.encode(turn))
            truth.add(row)
            n[0] += 1
            n[1] += row["defective"]
            if len(buf) >= 20_000:
                fh.write(b"\n".join(buf) + b"\n")
                buf.clear()
                if progress:
                    progress(n[0])

        goals = sim.run(rw, on_turn)
        if buf:
            fh.write(b"\n".join(buf) + b"\n")
    truth.close()
    part.replace(logs_path)
    write_users(sim.users, out_dir / "truth" / "users.parquet")
    summary = {
        "logs": str(logs_path),
        "truth": str(out_dir / "truth"),
        "turns": n[0],
        "goals": len(goals),
        "users": config.users,
        "days": config.days,
        "seed": config.seed,
        "defective_turns": n[1],
        "defect_rate": n[1] / max(n[0], 1),
        "rewrites": sim.rewrites,
    }
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def run_ab(world_dir: Path, world: World, config: SimConfig, *, treatment: str, control: str | None = None, n_boot: int = 2000) -> dict:
    return ab_test(
        world,
        config,
        load_rewriter(treatment),
        control=load_rewriter(control) if control and control != "noop" else None,
        n_boot=n_boot,
        nlu_loader=load_nlu_for(world_dir),
    )


def run_teaching_ab(world_dir: Path, world: World, config: SimConfig, store: Path, *, measure_from_day: int | None = None,
                    prompt_window_days: float = 1.0, n_boot: int = 2000) -> dict:
    """The teaching A/B: the same traffic without and with teaching (``teach_ab.teaching_ab``); the
    treatment's preferences are written to ``store`` (a new file)."""
    from dataclasses import replace

    from .teach_ab import teaching_ab
    from .teaching import WORLD_MOMENTS

    if not 0 < prompt_window_days <= 365:
        raise InvalidInputError(explain(f"prompt_window_days={prompt_window_days}", "must be in (0, 365]", "e.g. 1 (one question a day at most)"))
    return teaching_ab(world, config, store, nlu_loader=load_nlu_for(world_dir), measure_from_day=measure_from_day,
                       moments=replace(WORLD_MOMENTS, prompt_window_days=prompt_window_days), n_boot=n_boot)


def run_channel(
    out: Path,
    *,
    sentences: Path | None = None,
    texts: list[str] | None = None,
    condition: str | None = None,
    voice: str | None = None,
    rate: int = 160,
    snr_db: float | None = None,
    speaker_embeddings: bool = False,
    limit: int | None = None,
    progress: Callable | None = None,
) -> int:
    """Produce ASR-corpus rows for sentences under a condition; returns the row count."""
    if condition and condition in CONDITIONS and voice is None:
        cond = CONDITIONS[condition]
    elif voice:
        cond = Condition(condition or f"{voice}_{rate}" + (f"_snr{snr_db:g}" if snr_db is not None else ""), voice, rate, snr_db)
    else:
        raise InvalidInputError(
            explain(f"condition={condition!r}", f"must be one of {sorted(CONDITIONS)} or come with --voice", "pass --condition us_clean, or --voice en-us --rate 160 [--snr 8]")
        )
    items: list[tuple[int, str]] = []
    if sentences:
        items = [(s.slurp_id, s.text) for s in load_sentences(sentences)]
    for i, t in enumerate(texts or []):
        items.append((-(i + 1), " ".join(t.lower().split())))
    if not items:
        raise InvalidInputError(explain("no sentences", "need --sentences FILE or at least one --text", "pass one of them"))
    items = items[:limit] if limit else items
    n = 0
    with open(out, "w", encoding="utf-8") as fh:
        for row in AsrChannel(speaker_embeddings=speaker_embeddings).transcribe(items, cond):
            fh.write(json.dumps(row) + "\n")
            n += 1
            if progress:
                progress(n, len(items))
    return n
