"""CLI commands of the simulated world: simulate, ab, world build, asr-channel.
They parse, call selflearn.world.experiments, print, and map errors to exit codes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from selflearn.world.experiments import ensure_world, run_ab, run_channel, run_teaching_ab, simulate_to
from selflearn.world.simulate import SimConfig

from .app import JsonOpt, err, group, out, print_json

__all__ = ["world_app"]

world_app = group("world", "Build and inspect the simulated world.")

WorldOpt = Annotated[Path, typer.Option("--world", envvar="SELFLEARN_WORLD", help="World directory (built on first use).")]
SentencesOpt = Annotated[
    list[Path] | None,
    typer.Option("--sentences", envvar="SELFLEARN_SENTENCES", help="SLURP-format sentence file(s); needed to build a world."),
]
AsrOpt = Annotated[
    list[Path] | None,
    typer.Option("--asr-corpus", envvar="SELFLEARN_ASR_CORPUS", help="ASR-corpus file(s) (what the recogniser heard); needed to build a world."),
]
SeedOpt = Annotated[int, typer.Option("--seed", help="Traffic seed: same seed, same logs.")]
UsersOpt = Annotated[int, typer.Option("--users", help="Number of simulated users.")]
DaysOpt = Annotated[int, typer.Option("--days", help="Number of simulated days.")]
FirstDayOpt = Annotated[int, typer.Option("--first-day", help="Start at this day: the same users, later traffic (e.g. the days after mining).")]


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err, transient=True)


def _world(world: Path, sentences, asr, max_sentences=None, epochs=None, world_seed=0):
    with _progress() as bar:
        tasks: dict[str, int] = {}

        def tick(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done, total=total)

        w, built = ensure_world(world, sentences=sentences, asr_corpus=asr, max_sentences=max_sentences, nlu_epochs=epochs, world_seed=world_seed, progress=tick)
    if built:
        err.print(f"built the world in {w.stats['build_seconds']} s → {world}")
    return w


@world_app.command("build")
def build_cmd(
    sentences: SentencesOpt = None,
    asr_corpus: AsrOpt = None,
    world: WorldOpt = Path("world"),
    world_seed: Annotated[int, typer.Option(help="Seed of the world (NLU split, catalogues, wordings).")] = 0,
    epochs: Annotated[int | None, typer.Option(help="NLU fine-tuning epochs (default: the world default, 4).")] = None,
    max_sentences: Annotated[int | None, typer.Option(help="Use a random subset of this many sentences (smaller, faster worlds).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Build a world once: train its NLU on part of the sentences and run every wording through ASR, NLU and
    entity resolution. Rebuilt only when its inputs change."""
    w = _world(world, sentences, asr_corpus, max_sentences, epochs, world_seed)
    print_json(w.stats) if as_json else out.print(w.stats)


@world_app.command("gold")
def gold_cmd(
    store: Annotated[Path, typer.Option("--store", help="Store holding the run's imported logs.")],
    run: Annotated[Path, typer.Option("--run", help="The run directory (`selflearn world simulate --out`) whose truth to read.")],
    out_file: Annotated[Path, typer.Option("--out", help="Dialogue-format JSONL to write.")] = Path("gold.jsonl"),
    limit: Annotated[int | None, typer.Option(help="Only the first N sessions.")] = None,
) -> None:
    """The run's sessions labelled with its hidden truth (defect, goal, goal success, intent, slots):
    reference labels for `selflearn labels evaluate --data` (evaluation only)."""
    from selflearn.world.gold import write_gold

    n = write_gold(store, run, out_file, limit=limit)
    out.print(f"{n:,} dialogues with the truth's labels → {out_file}", highlight=False)


@world_app.command("simulate")
def simulate_cmd(
    out_dir: Annotated[Path, typer.Option("--out", help="Run directory: logs.jsonl here, hidden truth under truth/.")] = Path("sim-out"),
    world: WorldOpt = Path("world"),
    sentences: SentencesOpt = None,
    asr_corpus: AsrOpt = None,
    users: UsersOpt = 2000,
    days: DaysOpt = 14,
    first_day: FirstDayOpt = 0,
    seed: SeedOpt = 0,
    rewriter: Annotated[str | None, typer.Option(help="Rewriter between ASR and NLU: 'module:attr' or an http(s) URL.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Simulate users talking to the assistant; write logs (importable with `selflearn store import`) and the
    hidden truth, stored apart."""
    w = _world(world, sentences, asr_corpus)
    with _progress() as bar:
        task = bar.add_task("simulate (turns)", total=None)
        summary = simulate_to(out_dir, world, w, SimConfig(users=users, days=days, seed=seed, first_day=first_day), rewriter=rewriter, progress=lambda n: bar.update(task, completed=n))
    if as_json:
        print_json(summary)
    else:
        out.print(f"{summary['turns']:,} turns, {summary['goals']:,} goals, {summary['users']} users × {summary['days']} days; "
                  f"defect rate {summary['defect_rate']:.1%}\nlogs:  {summary['logs']}\ntruth: {summary['truth']} (evaluation only)")


@world_app.command("ab")
def ab_cmd(
    rewriter: Annotated[str, typer.Option("--rewriter", help="Treatment rewriter: 'module:attr', an http(s) URL, a rewrite table (.parquet), an online model directory, or 'noop'.")],
    control: Annotated[str | None, typer.Option(help="Control rewriter (default: none).")] = None,
    world: WorldOpt = Path("world"),
    sentences: SentencesOpt = None,
    asr_corpus: AsrOpt = None,
    users: UsersOpt = 2000,
    days: DaysOpt = 14,
    first_day: FirstDayOpt = 0,
    seed: SeedOpt = 0,
    n_boot: Annotated[int, typer.Option(help="Bootstrap resamples (over users).")] = 2000,
    as_json: JsonOpt = False,
) -> None:
    """Run control and treatment on identical traffic (same users, goals and ASR draws) and compare the
    first-attempt defect rate and the goal failure rate, with bootstrap 95% CIs."""
    w = _world(world, sentences, asr_corpus)
    res = run_ab(world, w, SimConfig(users=users, days=days, seed=seed, first_day=first_day), treatment=rewriter, control=control, n_boot=n_boot)
    if as_json:
        print_json(res)
        return
    t = Table(title=f"A/B on {res['goals']:,} goals ({users} users × {days} days, seed {seed})")
    for c in ("metric", "control", "treatment", "reduction [95% CI]"):
        t.add_column(c)
    t.add_row("first-attempt defect rate", f"{res['control_defect_rate']:.2%}", f"{res['treatment_defect_rate']:.2%}",
              f"{res['relative_reduction']:+.1%} [{res['ci_low']:+.1%}, {res['ci_high']:+.1%}]")
    t.add_row("goal failure rate", f"{res['control_goal_failure_rate']:.2%}", f"{res['treatment_goal_failure_rate']:.2%}",
              f"{res['goal_failure_relative_reduction']:+.1%} [{res['goal_failure_ci_low']:+.1%}, {res['goal_failure_ci_high']:+.1%}]")
    t.add_row("first attempts, by failure point", "", "", "")
    for fp, v in res["failure_points"].items():
        t.add_row(f"  {fp}", f"{v['control']:.2%}", f"{v['treatment']:.2%}", "")
    out.print(t)
    ratio = f"{res['win_loss_ratio']:.1f}:1" if res["win_loss_ratio"] is not None else "no losses"
    out.print(f"first attempts rewritten {res['first_attempts_rewritten']:,}: wins {res['wins']:,}, losses {res['losses']:,} "
              f"({res['losses_broken']:,} broken, {res['losses_defective_another_way']:,} defective another way), win:loss {ratio}; "
              f"rewrites served {res['treatment_rewrites']:,}")


@world_app.command("teach-ab")
def teach_ab_cmd(
    store: Annotated[Path, typer.Option("--store", help="A new store for the preferences the treatment learns.")],
    world: WorldOpt = Path("world"),
    sentences: SentencesOpt = None,
    asr_corpus: AsrOpt = None,
    users: UsersOpt = 2000,
    days: DaysOpt = 14,
    seed: SeedOpt = 0,
    vague_share: Annotated[float, typer.Option(help="Share of requests for a user's own genre or cuisine said without it.")] = 0.5,
    measure_from: Annotated[int | None, typer.Option(help="Compare ambiguous requests from this day on (default: the first).")] = None,
    prompt_window_days: Annotated[float, typer.Option(help="At most one teaching question per user within this many days.")] = 1.0,
    as_json: JsonOpt = False,
) -> None:
    """The same traffic without and with teaching (questions at teachable moments, the guided Q&A,
    preferences used by entity resolution and the rewriter): defects on ambiguous requests, prompts
    per 1,000 turns, the share declined, turns until learned."""
    w = _world(world, sentences, asr_corpus)
    res = run_teaching_ab(world, w, SimConfig(users=users, days=days, seed=seed, vague_share=vague_share), store,
                          measure_from_day=measure_from, prompt_window_days=prompt_window_days)
    if as_json:
        print_json(res)
        return
    t = Table(title=f"Teaching A/B: ambiguous first attempts from day {res['config']['measure_from_day']} ({users} users × {days} days)")
    for c in ("requests", "goals", "without teaching", "with teaching", "fewer defects [95% CI]"):
        t.add_column(c)
    for name, r in res["ambiguous"].items():
        if name.startswith("failure_points") or not r.get("goals"):
            continue
        t.add_row(name, f"{r['goals']:,}", f"{r['control_defect_rate']:.1%}", f"{r['teaching_defect_rate']:.1%}",
                  f"{r['relative_reduction']:+.1%} [{r['ci_low']:+.1%}, {r['ci_high']:+.1%}]")
    out.print(t)
    p, learned = res["prompts"], res["learned"]
    wait = learned["turns_until_learned"] or {}
    out.print(f"prompts {p['total']:,} ({p['per_1000_turns']} per 1,000 turns), declined {p['declined_share']:.0%}; "
              f"needed preferences learned {learned['learned']:,} of {learned['needs']:,}, turns until learned: median {wait.get('median')}, "
              f"mean {wait.get('mean')}; guided Q&A users {res['guided']['users']:,}", highlight=False)


@world_app.command("asr-channel")
def asr_channel_cmd(
    out_file: Annotated[Path, typer.Option("--out", help="Where the ASR-corpus rows go (JSONL).")],
    sentences: Annotated[Path | None, typer.Option("--sentences", help="SLURP-format sentences to speak.")] = None,
    text: Annotated[list[str] | None, typer.Option("--text", help="A sentence to speak (repeatable).")] = None,
    condition: Annotated[str | None, typer.Option(help="A named condition (us_clean, us_f_noisy, gb_rp, hi_accent) or a new name.")] = None,
    voice: Annotated[str | None, typer.Option(help="espeak-ng voice, e.g. en-us, en-gb-x-rp, hi.")] = None,
    rate: Annotated[int, typer.Option(help="Speaking rate, words per minute.")] = 160,
    snr: Annotated[float | None, typer.Option(help="Pink-noise SNR in dB (default: clean).")] = None,
    speaker_embeddings: Annotated[bool, typer.Option(help="Add a resemblyzer speaker embedding to every 5th row.")] = False,
    limit: Annotated[int | None, typer.Option(help="Only the first N sentences.")] = None,
) -> None:
    """Produce ASR-corpus rows the way ../shared/data/asr was made: espeak-ng speaks, 16 kHz, Whisper tiny.en int8 listens."""
    with _progress() as bar:
        task = bar.add_task("speak + recognise", total=None)
        n = run_channel(out_file, sentences=sentences, texts=text, condition=condition, voice=voice, rate=rate, snr_db=snr,
                        speaker_embeddings=speaker_embeddings, limit=limit, progress=lambda a, b: bar.update(task, completed=a, total=b))
    out.print(f"{n} rows → {out_file}")
