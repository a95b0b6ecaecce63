"""CLI commands of privacy: `selflearn privacy scan | rotate-key | scrub` and `selflearn forget`.
Parse, call the library, print."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from selflearn.store.store import DEFAULT_STORE, Store

from .app import JsonOpt, StoreOpt, app, group, out, print_json

__all__ = ["privacy_app"]

privacy_app = group("privacy", "Privacy: what PII a store holds, rotating the pseudonym key, scrubbing an older store.")

ModelsOpt = Annotated[list[Path] | None, typer.Option("--model", help="An online model directory trained on this store (repeatable).")]


@privacy_app.command("scan")
def scan_cmd(store: StoreOpt = Path(DEFAULT_STORE), examples: Annotated[int, typer.Option(min=0, help="Examples per kind (shown scrubbed).")] = 3,
             as_json: JsonOpt = False) -> None:
    """Report the PII the store still holds (e-mails, phone numbers, cards, IP addresses, long numbers), by
    kind and column, the placeholders the import left, and any id that is not a pseudonym. Examples are
    shown only with their PII replaced."""
    from selflearn.governance.scan import scan_store

    with Store(store, read_only=True) as st:
        report = scan_store(st, examples=examples)
    if as_json:
        print_json(report)
        return
    table = Table("kind", "found", "placeholders", "examples (scrubbed)", title=f"privacy scan: {report['store']}")
    for kind, n in report["pii_found"].items():
        table.add_row(kind, str(n), str(report["placeholders"][kind]), " | ".join(report["examples"].get(kind, [])))
    out.print(table)
    out.print(f"values scanned {report['values_scanned']}; ids that are not pseudonyms: {report['ids_not_pseudonymous'] or 'none'}; "
              f"raw text kept: {report['raw_text_kept']}", highlight=False, markup=False)


@privacy_app.command("rotate-key")
def rotate_cmd(store: StoreOpt = Path(DEFAULT_STORE), model: ModelsOpt = None, as_json: JsonOpt = False) -> None:
    """Re-key every pseudonym in the store (and in the online models given) under a fresh key added to the
    key file's chain; a store an older selflearn filled with raw ids is pseudonymised. One transaction."""
    from selflearn.governance.rotation import rotate_key

    with Store(store) as st:
        report = rotate_key(st, models=model or [])
    if as_json:
        print_json(report)
        return
    out.print(f"{report['store']}: key {report['old_fingerprint'] or '(raw ids)'} -> {report['new_fingerprint']} "
              f"({sum(report['rows'].values())} rows re-keyed; key file {report['key_file']})", highlight=False, markup=False)


@privacy_app.command("scrub")
def scrub_cmd(store: StoreOpt = Path(DEFAULT_STORE), as_json: JsonOpt = False) -> None:
    """Scrub the texts of every stored turn in place (a store an older selflearn imported unscrubbed)."""
    from selflearn.governance.rotation import scrub_store

    with Store(store) as st:
        report = scrub_store(st)
    if as_json:
        print_json(report)
        return
    out.print(f"{report['store']}: scrubbed " + (", ".join(f"{n} {k}" for k, n in report["scrubbed"].items()) or "nothing"),
              highlight=False, markup=False)


@app.command("forget")
def forget_cmd(
    user: Annotated[str, typer.Option("--user", help="The user's id (the assistant's own, as in the logs).")],
    store: StoreOpt = Path(DEFAULT_STORE),
    model: ModelsOpt = None,
    table: Annotated[Path | None, typer.Option(help="The mined rewrite table (Parquet) to re-mine with --rebuild.")] = None,
    rebuild: Annotated[bool, typer.Option(help="Re-mine --table and retrain each --model without the user.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Forget a user: delete their turns, sessions, signals, rephrases, failure points, raw texts,
    preferences, teaching prompts, quarantined records and personal memory in one transaction, rewrite
    the store file so no deleted page keeps them, and list the shared artefacts they contributed to."""
    from selflearn.governance.forget import compact_store, forget_user, rebuild_after_forget
    from selflearn.store.importer import default_quarantine_path

    with Store(store) as st:
        report = forget_user(st, user, models=model or [], quarantine=default_quarantine_path(Path(store)))
    compact_store(Path(store))
    if rebuild:
        report["rebuilt"] = rebuild_after_forget(Path(store), table=table, models=model or [])
    if as_json:
        print_json(report)
        return
    out.print(f"forgot {report['user']}: " + ", ".join(f"{n} {t}" for t, n in report["deleted"].items()), highlight=False, markup=False)
    for a in report["shared_artefacts"]:
        out.print(f"  shared: {a['artefact']}: rebuild with {a['rebuild']}", highlight=False, markup=False)
    for r in report.get("rebuilt", []):
        out.print(f"  rebuilt: {r}", highlight=False, markup=False)


@privacy_app.command("info")
def info_cmd(model: Annotated[Path, typer.Option("--model", help="A model directory.")], as_json: JsonOpt = False) -> None:
    """What a model directory says about privacy: the component, the training data's fingerprint, the
    differential-privacy budget spent (user-level epsilon and delta, accountant, noise) or that it was
    trained without DP, and the pseudonym key it expects."""
    from selflearn.models.directory import describe

    info = describe(model)
    if as_json:
        print_json(info)
        return
    p = info["privacy"] or {}
    dp = _dp_line(p) if p.get("epsilon") is not None else "trained WITHOUT differential privacy"
    if p.get("parts"):
        dp = f"user-level DP: epsilon {p['epsilon']}, delta {p['delta']:.3g} in all ({p['composition']}): " + "; ".join(
            f"{name}: {_dp_line(part)}" for name, part in p["parts"].items())
    out.print(f"{model}: {info['component']} (format {info['format_version']}); {dp}"
              + (f"; pseudonym key {p['pseudonym_key']}" if p.get("pseudonym_key") else ""), highlight=False, markup=False)


def _dp_line(p: dict) -> str:
    if p.get("steps") is None and p.get("mechanism"):  # a private release (the online model's global layer), not a training run
        return (f"user-level DP: epsilon {p['epsilon']:.4g}, delta {p['delta']:.3g}, {p['mechanism']}; noise sd {p.get('noise_sd')}, "
                f"{p.get('texts')} requests kept, at most {p.get('max_texts_per_user')} per user")
    return (f"user-level DP: epsilon {p['epsilon']} (target {p.get('epsilon_target')}), delta {p['delta']:.3g}, {p.get('accountant')} accountant, "
            f"noise multiplier {p.get('noise_multiplier')}, {p.get('steps')} steps")


@privacy_app.command("canaries")
def canaries_cmd(
    logs: Annotated[Path, typer.Argument(help="JSONL logs to plant the canaries into (not changed).")],
    output: Annotated[Path, typer.Option("--out", help="The planted logs (JSONL): train on these.")],
    canaries: Annotated[Path, typer.Option("--canaries", help="Where to write the canaries (with their secrets) for the audit.")],
    repetitions: Annotated[list[int] | None, typer.Option("--repetitions", help="How often each canary is said (repeatable).")] = None,
    per_repetition: Annotated[int, typer.Option(min=1, help="Canaries for each number of repetitions.")] = 2,
    users_per_canary: Annotated[int, typer.Option(min=1, help="Users who say each canary.")] = 1,
    seed: Annotated[int, typer.Option(help="Random seed (secrets, users, turns).")] = 0,
    as_json: JsonOpt = False,
) -> None:
    """Plant canaries (sentences with random secrets, "my pin code is 4 7 2 9") into a copy of the logs, said
    1, 4 and 16 times by users drawn at random: train on the planted logs, then `privacy audit --canaries`."""
    from selflearn.privacy.canaries import REPETITIONS, plant_file

    report = plant_file(logs, output, canaries, repetitions=tuple(repetitions or REPETITIONS), per_repetition=per_repetition,
                        users_per_canary=users_per_canary, seed=seed)
    if as_json:
        print_json(report)
        return
    out.print(f"planted {report['canaries']} canaries ({report['turns_added']} turns) into {report['logs']}; "
              f"secrets in {report['canaries_file']}", highlight=False, markup=False)


@privacy_app.command("audit")
def audit_cmd(
    model: Annotated[Path, typer.Option("--model", help="The model directory to audit (a failure-point, label, rephrase or online model).")],
    output: Annotated[Path, typer.Option("--out", help="Where to write the audit (JSON).")],
    reference: Annotated[Path | None, typer.Option("--reference", help="A store of OTHER users of the same population (non-members, shadow data).")] = None,
    store: StoreOpt = Path(DEFAULT_STORE),
    canaries: Annotated[Path | None, typer.Option("--canaries", help="The canaries file `privacy canaries` wrote (planted before training).")] = None,
    shadows: Annotated[int, typer.Option(min=2, help="Shadow models for the calibrated attack (each is one retraining).")] = 4,
    max_users: Annotated[int, typer.Option(min=2, help="Members and non-members evaluated, each.")] = 500,
    max_advantage: Annotated[float | None, typer.Option("--max-advantage", help="Release gate: exit 4 when the held-out user-level membership advantage of any attack is above this.")] = None,
    threads: Annotated[int, typer.Option(min=1, help="CPU threads.")] = 1,
    as_json: JsonOpt = False,
) -> None:
    """Membership inference (loss threshold and LiRA with shadow models, record and user level: AUC, advantage,
    TPR at 1% and 0.1% FPR) and, with --canaries, canary exposure and a white-box inversion attack, against a
    model and the store it was trained on. For an online model: membership against its encoder and ranker (with
    --store and --reference), and whether one user's private entries in the
    personal memory can be read through another user's requests. Writes --out; with --max-advantage, a
    release gate (exit 4)."""
    from selflearn.governance.audit import AuditConfig, audit_models, summary
    from selflearn.governance.gate import check_gate, gate_text, heldout_text

    config = AuditConfig(shadows=shadows, max_users=max_users, max_advantage=max_advantage)
    report = audit_models(model, store, reference, canaries=canaries, config=config, threads=threads)
    output.write_text(json.dumps(report, indent=1, default=str))
    if as_json:
        print_json(summary(report))
    if not as_json and report.get("personal_isolation"):
        iso = report["personal_isolation"]
        out.print(f"personal memory: {iso['requests']} requests of {iso['owners']} users' private entries asked as other users: "
                  f"{iso['rewrites']} rewrites, {iso['leaks']} leaks", highlight=False, markup=False)
    if not as_json and report.get("membership"):
        if report.get("personal_isolation"):
            out.print(f"membership: {report['membership_note']}", highlight=False, markup=False)
        table = Table("level", "attack", "AUC", "advantage", "chance (95%)", "held out [95%]", "TPR@1%FPR", "TPR@0.1%FPR", title=Text(f"privacy audit: {model}"))
        for lvl in ("users", "records"):
            for a, r in report["membership"][lvl].items():
                table.add_row(Text(lvl), Text(a), f"{r['auc']:.3f}", f"{r['advantage']:.3f}", f"{r['advantage_null_95']:.3f}", heldout_text(r),
                              *(f"{r[k]:.3f}" if r[k] is not None else "n/a" for k in ("tpr_at_fpr_0.01", "tpr_at_fpr_0.001")))
        out.print(table)
        controls = {part: v.get("composition_control") for part, v in (report["membership"].get("parts") or {"": report["membership"]}).items()}
        for part, ctl in controls.items():
            if ctl:
                out.print(f"control{' (' + part + ')' if part else ''}: the {ctl['attack']} (models that saw neither side), users: "
                          f"held out {heldout_text(ctl['users'])}", highlight=False, markup=False)
        for c in report.get("canaries", []):
            out.print(f"canary x{c['repetitions']}: exposure {c['exposure_bits']} bits, tokens recovered {c['tokens_recovered']}", highlight=False, markup=False)
    if not as_json and gate_text(report):
        out.print(gate_text(report), highlight=False, markup=False)
    out.print(f"audit written to {output}", highlight=False, markup=False)
    check_gate(report)
