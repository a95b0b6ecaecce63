"""`selflearn privacy audit`: the practical leakage of a model trained on user logs, before release.

1. Membership inference at the record and the USER level: the loss-threshold attack and offline
   LiRA. Members are the records of the store the model was trained on (checked by its data
   fingerprint); non-members and the shadow models' data come from a reference store of OTHER
   users of the same population (the reference users are split in two by a stable hash: half are
   the non-member targets, half the pool the shadows train on, each shadow on a random
   ``shadow_share`` of the pool). Shadows are retrained exactly like the model (same parameters,
   DP included).
2. Canaries (planted with `selflearn privacy canaries` before training): each canary's exposure
   (rank of its secret among every secret of the format, by the model's log-probability of the
   canary records' labels) and a white-box inversion (:mod:`.inversion`): tokens recovered.
3. A release gate: ``max_advantage`` fails the audit when the held-out user-level advantage
   (:func:`..privacy.membership.heldout_advantage`: unbiased, where the in-sample maximum is biased
   upward by about the chance level) of any attack exceeds it.
"""

from __future__ import annotations

import hashlib
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..errors import InvalidInputError, explain
from ..privacy.canaries import exposure, load_canaries
from ..privacy.membership import advantage_bound, attack_metrics, lira_scores, loss_threshold_scores, user_scores
from ..text import normalise
from .audit_targets import Records, target_for
from .gate import release_gate, worst_user_advantage

SUBSTITUTION_CANDIDATES = 1_000  # secrets scored for a model without a vector path (each is a full prediction)

__all__ = ["AuditConfig", "audit_model", "audit_online", "audit_models", "summary", "CachedEncoder"]


@dataclass(frozen=True)
class AuditConfig:
    shadows: int = 4  # shadow models (each one retraining of the model on reference users)
    shadow_share: float = 0.5  # share of the shadow pool's users each shadow trains on
    max_users: int = 500  # members and non-members evaluated, each (users sampled)
    candidates: int = 10_000  # secrets each canary is ranked among (all of them when the format has fewer)
    inversion_steps: int = 150
    vocabulary: str = "format"  # the inversion's candidate tokens: the format's alphabet, or "all"
    max_advantage: float | None = None  # release gate on the user-level advantage
    seed: int = 0

    def check(self) -> "AuditConfig":
        if self.shadows < 2 or not 0 < self.shadow_share <= 1 or self.max_users < 2 or self.candidates < 2 or self.inversion_steps < 1:
            raise InvalidInputError(explain(f"shadows={self.shadows}, shadow_share={self.shadow_share}, max_users={self.max_users}",
                                            "need shadows >= 2, shadow_share in (0, 1], max_users >= 2, candidates >= 2, inversion_steps >= 1",
                                            "use the defaults"))
        if self.vocabulary not in ("format", "all"):
            raise InvalidInputError(explain(f"vocabulary={self.vocabulary!r}", "must be 'format' or 'all'", "use 'format'"))
        if self.max_advantage is not None and not 0 <= self.max_advantage <= 1:
            raise InvalidInputError(explain(f"max_advantage={self.max_advantage}", "must be in [0, 1]", "use e.g. 0.05"))
        return self


class CachedEncoder:
    """The frozen MiniLM with a cache: the target and every shadow embed the same texts once."""

    def __init__(self, threads: int = 1):
        from ..models.backbone import SentenceEncoder

        self.inner = SentenceEncoder(threads=threads)
        self.model, self.tokenizer = self.inner.model, self.inner.tokenizer
        self._cache: dict[str, np.ndarray] = {}

    def encode(self, texts: list[str], **kw) -> np.ndarray:
        todo = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if todo:
            self._cache.update(zip(todo, self.inner.encode(todo, **kw)))
        return np.stack([self._cache[t] for t in texts]) if texts else self.inner.encode([])


def _side(user: str, seed: int) -> bool:
    return int(hashlib.sha256(f"audit:{seed}:{user}".encode()).hexdigest()[:8], 16) % 2 == 0


def _sample_users(users: set[str], n: int, rng: random.Random) -> set[str]:
    return set(rng.sample(sorted(users), min(n, len(users))))


def membership(target, model, members: Records, reference: Records, c: AuditConfig, encoder=None, progress=None) -> dict:
    """Both attacks at the record and the user level (see the module's docstring)."""
    say = progress or (lambda *_: None)
    rng = random.Random(c.seed)
    ref_users = set(reference.users)
    overlap = set(members.users) & ref_users
    if overlap:
        raise InvalidInputError(explain(f"{len(overlap)} users in both stores", "the reference store must hold users the model never saw",
                                        "use logs of other users (or the same pseudonym key and disjoint users)"))
    out_users = {u for u in ref_users if _side(u, c.seed)}
    pool = sorted(ref_users - out_users)
    if len(out_users) < 2 or len(pool) < 2:
        raise InvalidInputError(explain(f"reference store with {len(ref_users)} users ({len(out_users)} non-member targets, {len(pool)} for shadows)",
                                        "needs at least 2 users on each side of its split (about half are non-member targets, half shadow data)",
                                        "pass a reference store with logs of more users who are not in the training data"))
    n = min(c.max_users, len(set(members.users)), len(out_users))
    ev_in = members.of_users(_sample_users(set(members.users), n, rng))
    ev_out = reference.of_users(_sample_users(out_users, n, rng))
    ev = Records(ev_in.items + ev_out.items, ev_in.labels + ev_out.labels, ev_in.users + ev_out.users, ev_in.texts + ev_out.texts)
    is_member = np.array([True] * len(ev_in.items) + [False] * len(ev_out.items))
    p_target = target.p_true(model, ev)
    shadow_p, started = [], time.perf_counter()
    for s in range(c.shadows):
        say(f"shadow {s + 1}/{c.shadows}")
        users = set(rng.sample(pool, max(2, int(round(c.shadow_share * len(pool))))))
        shadow = target.fit(model, reference.of_users(users), encoder=encoder)
        shadow_p.append(target.p_true(shadow, ev))
    shadow_seconds = time.perf_counter() - started
    scores = {"loss_threshold": loss_threshold_scores(p_target), "lira": lira_scores(p_target, np.stack(shadow_p))}
    result = {"records": {}, "users": {}}
    for name, s in scores.items():
        result["records"][name] = attack_metrics(s, is_member)
        names, us = user_scores(s, ev.users)
        result["users"][name] = attack_metrics(us, np.array([u in set(ev_in.users) for u in names]))
    result["composition_control"] = composition_control(np.stack(shadow_p), is_member, ev.users, set(ev_in.users))
    result["shadows"] = {"count": c.shadows, "users_each": max(2, int(round(c.shadow_share * len(pool)))),
                         "seconds_each": round(shadow_seconds / c.shadows, 1)}
    result["train_vs_other"] = {"mean_p_true_members": float(p_target[is_member].mean()), "mean_p_true_non_members": float(p_target[~is_member].mean())}
    return result


def composition_control(shadow_p: np.ndarray, is_member: np.ndarray, users: list[str], member_users: set[str]) -> dict:
    """The loss-threshold attack run against the shadows, models that saw NEITHER side (their
    geometric-mean probability of each record's label): whatever advantage it finds comes from the
    two sides' data (e.g. members' records being easier), not from the audited model's memory. A
    loss-threshold figure close to this one says little about the model; LiRA, which calibrates each
    record against the same shadows, is not fooled by it."""
    s = loss_threshold_scores(np.exp(np.log(np.clip(shadow_p, 1e-7, 1.0)).mean(0)))
    names, us = user_scores(s, users)
    strip = lambda r: {k: v for k, v in r.items() if k != "roc"}  # noqa: E731
    return {"attack": "loss threshold against the shadows", "records": strip(attack_metrics(s, is_member)),
            "users": strip(attack_metrics(us, np.array([u in member_users for u in names])))}


def canary_audit(target, model, members: Records, canaries_path: Path, c: AuditConfig, encoder) -> list[dict]:
    """Exposure and tokens recovered of every canary planted in the training data."""
    import torch

    from ..privacy.inversion import invert_secret

    fmt, canaries = load_canaries(canaries_path)
    out = []
    for canary in canaries:
        idx = target.canary_texts(members, canary.text)
        row = {"secret_length": fmt.length, "repetitions": canary.repetitions, "records_in_training": len(idx)}
        if not idx:
            out.append({**row, "exposure_bits": None, "tokens_recovered": None, "note": "not in the training data (scrubbed or not planted)"})
            continue
        recs = members.subset(idx)
        limit = c.candidates if target.vector_path else min(c.candidates, SUBSTITUTION_CANDIDATES)
        cands = fmt.secrets(limit=limit, include=canary.secret, seed=c.seed)  # the whole space, or a sample holding the secret
        if target.vector_path:
            score, text_path = target.text_scorer(model, recs, canary.text), target.text_encoder(model, encoder)
            vec = torch.from_numpy(text_path.encode([fmt.text(s) for s in cands]))
            with torch.no_grad():
                sc = np.concatenate([score(vec[b : b + 2048]).numpy() for b in range(0, len(cands), 2048)])
        else:  # each candidate put into (up to 4 of) the canary's records, scored by the model as a whole
            few = recs.subset(range(min(4, len(recs.items))))
            items = [target.with_text(it, fmt.text(s), old=canary.text) for s in cands for it in few.items]
            probe = Records(items, few.labels * len(cands), few.users * len(cands), [""] * len(items))
            sc = np.log(np.clip(target.p_true(model, probe), 1e-7, 1)).reshape(len(cands), -1).sum(1)
        e = exposure(float(sc[cands.index(canary.secret)]), sc, space=fmt.size)
        row.update(exposure_bits=round(e["exposure_bits"], 3), max_bits=round(e["max_bits"], 3), rank=e["rank"], candidates_scored=len(cands))
        if target.vector_path:
            guess = invert_secret(text_path, score, fmt, vocabulary=c.vocabulary, steps=c.inversion_steps, seed=c.seed)
            right = sum(a == b for a, b in zip(guess, canary.secret))
            row.update(tokens_recovered=right, tokens_chance=round(fmt.length / len(fmt.alphabet), 3), extracted=right == fmt.length)
        else:
            row.update(tokens_recovered=None, extracted=None, note="no sentence-vector path: inversion not run; exposure from a sample of secrets")
        out.append(row)
    return out


def audit_model(model, store, reference, *, canaries: Path | None = None, config: AuditConfig | None = None, progress=None,
                target=None) -> dict:
    """The audit of one model (see the module's docstring); ``store`` is the store it was trained on,
    ``reference`` a store of other users of the same population; ``target``: how to attack it (by
    default, the one its component names)."""
    c = (config or AuditConfig()).check()
    target = target or target_for(model)
    started = time.perf_counter()
    encoder = CachedEncoder(threads=int(getattr(model, "threads", 1) or 1))
    target.share_encoder(model, encoder)
    members = target.records(store, model)
    target.check_trained_on(model, members, store)
    ref = target.reference_records(reference, model, members)
    report = {"model": model.component, "privacy": getattr(model, "privacy_", None), "config": asdict(c),
              "membership": membership(target, model, members, ref, c, encoder=encoder, progress=progress)}
    eps = (report["privacy"] or {}).get("epsilon")
    report["membership"]["dp_advantage_bound"] = advantage_bound(eps, (report["privacy"] or {}).get("delta", 0.0)) if eps else None
    if canaries is not None:
        report["canaries"] = canary_audit(target, model, members, Path(canaries), c, encoder)
    report.update(worst_user_advantage(report["membership"]["users"]))
    report["gate"] = release_gate(c.max_advantage, report)
    report["seconds"] = round(time.perf_counter() - started, 1)
    return report


def audit_online(rw, *, model_dir: Path | None = None, store=None, reference=None, canaries: Path | None = None,
                 config: AuditConfig | None = None, progress=None, threads: int = 1) -> dict:
    """The online model: its personal memory as a data store (:mod:`.isolation`: a leak fails the
    gate) and, given the store it was trained on and a ``reference`` store, membership inference
    against its parts: the retrieval encoder (trained on users' texts; canaries too), the ranker
    (trained on features of replayed requests) and the global layer's index (which requests it
    holds). Their attacks share one table, each named after its part; the gate takes the worst."""
    from ..privacy.isolation import personal_isolation

    c = (config or AuditConfig()).check()
    started = time.perf_counter()
    iso = personal_isolation(rw, seed=c.seed)
    report = {"model": "online-rewriter", "privacy": rw.dp, "personal_isolation": iso, "membership": None,
              "membership_note": "pass the store the model was trained on and --reference to attack its encoder and ranker"}
    if model_dir is not None and store is not None and reference is not None:
        parts = _online_parts(Path(model_dir), store, reference, canaries, c, progress, threads)
        # one table: each part's attacks under its name (the gate takes the worst of them)
        report["membership"] = {lvl: {f"{part} {a}": r for part, sub in parts.items() for a, r in sub["membership"][lvl].items()}
                                for lvl in ("users", "records")}
        report["membership"]["parts"] = {part: {k: v for k, v in sub["membership"].items() if k not in ("users", "records")} | {"privacy": sub["privacy"]}
                                         for part, sub in parts.items()}
        report["membership_note"] = ("the retrieval encoder (fine-tuned on failing requests and their fixes), the ranker "
                                     "(trained on replayed requests' candidates), the global layer's index (k-anonymous; under DP a private release) "
                                     "and, when the model serves one, the mined table (k-anonymous)")
        report["canaries"] = parts["encoder"].get("canaries", [])
        report.update(worst_user_advantage(report["membership"]["users"]))
    report["gate"] = release_gate(c.max_advantage, report, leaks=iso["leaks"])
    report["seconds"] = round(time.perf_counter() - started, 1)
    return report


def _online_parts(model_dir: Path, store, reference, canaries, c: AuditConfig, progress, threads: int) -> dict:
    """The audits of the online model's parts: its two learned parts (encoder, ranker) on their own records, and
    its shared texts (the global index, the mined table when it serves one)."""
    import dataclasses
    import json

    from ..models.directory import CONFIG
    from ..online.encoder import BiEncoder
    from ..online.memory import GlobalMemory
    from ..online.ranker import Ranker
    from ..online.train import OnlineConfig
    from .audit_targets import EncoderTarget, RankerTarget

    saved = json.loads((model_dir / CONFIG).read_text()).get("config") or {}
    known = {f.name for f in dataclasses.fields(OnlineConfig)}
    trained = OnlineConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in saved.items() if k in known})
    say = progress or (lambda *_: None)
    say("encoder")
    g = GlobalMemory.load(model_dir / "global")
    enc = audit_model(BiEncoder.load(model_dir / "encoder", threads=threads), store, reference, canaries=canaries, config=c, progress=progress,
                      target=EncoderTarget(trained.validation_share, trained.seed, negatives=[g.texts[i] for i in g.candidates]))
    say("ranker")
    rank = audit_model(Ranker.load(model_dir / "ranker"), store, reference, config=c, progress=progress, target=RankerTarget(model_dir, trained))
    shared = {"global layer": (set(g.row), g.privacy)}
    if (model_dir / "rewrites.parquet").is_file():  # the mined table it serves first: its requests and rewrites
        from ..rewrites.table import TableRewriter

        table = TableRewriter.load(model_dir / "rewrites.parquet").table_
        shared["table"] = (set(table) | {normalise(v) for v in table.values()}, None)
    return {"encoder": enc, "ranker": rank, **known_texts_membership(shared, store, reference, c)}


def known_texts_membership(artefacts: dict[str, tuple[set[str], dict | None]], store, reference, c: AuditConfig) -> dict[str, dict]:
    """Membership through shared artefacts' texts (name -> (texts, DP record or None): the global
    layer's index, the mined table): an attacker holding a user's requests checks which of them the
    released artefact holds. Without DP a member's own turns count towards the k users a text needs
    to enter, so a member's requests are in it more often; under DP (the global layer's private
    release) the bound of its epsilon applies. Score of a turn: 1 when the artefact holds its text
    (as heard, or its rewrite), else 0; a user's: the share of their turns. Both stores are read
    and their users sampled once for all the artefacts. No shadows (nothing is trained): the audit's
    other parts give their shadows' cost."""
    from ..online.train import load_history

    rng = random.Random(c.seed)
    sides = []
    for st in (store, reference):
        rows = load_history(st).rows
        users = _sample_users({r["user_id"] for r in rows}, c.max_users, rng)
        sides.append([(r["user_id"], r["rewrite"] or r["text"]) for r in rows if r["user_id"] in users])
    if {u for u, _ in sides[0]} & {u for u, _ in sides[1]}:
        raise InvalidInputError(explain("users in both stores", "the reference store must hold users the model never saw",
                                        "use logs of other users (or the same pseudonym key and disjoint users)"))
    n = min(len({u for u, _ in sides[0]}), len({u for u, _ in sides[1]}))
    keep = [_sample_users({u for u, _ in side}, n, rng) for side in sides]  # as many users a side
    recs = [(u, t, k == 0) for k, side in enumerate(sides) for u, t in side if u in keep[k]]
    member = np.array([m for _, _, m in recs])
    users = [u for u, _, _ in recs]
    members = {u for u, _, m in recs if m}
    attack = "known requests"
    out = {}
    for name, (texts, privacy) in artefacts.items():
        scores = np.array([float(t in texts) for _, t, _ in recs])
        names, us = user_scores(scores, users)
        by_user = attack_metrics(us, np.array([u in members for u in names]))
        out[name] = {"membership": {"records": {attack: attack_metrics(scores, member)}, "users": {attack: by_user},
                                    "train_vs_other": {"known_share_members": float(scores[member].mean()),
                                                       "known_share_non_members": float(scores[~member].mean())},
                                    "dp_advantage_bound": advantage_bound(privacy["epsilon"], privacy["delta"]) if privacy else None},
                     "privacy": privacy}
    return out


def summary(report: dict) -> dict:
    """The audit without its ROC curves (what a terminal or a log line shows)."""
    if not report.get("membership"):
        return report
    mem = {lvl: {a: {k: v for k, v in r.items() if k != "roc"} for a, r in report["membership"][lvl].items()} for lvl in ("records", "users")}
    return {**{k: v for k, v in report.items() if k != "membership"}, "membership": {**report["membership"], **mem}}


def audit_models(model_dir: Path, store_path: Path, reference_path: Path | None, *, canaries: Path | None = None,
                 config: AuditConfig | None = None, threads: int = 1) -> dict:
    """The audit of whatever model ``model_dir`` holds (what the CLI calls)."""
    from ..models.directory import describe
    from ..models.registry import load_model
    from ..store.store import Store

    online = describe(model_dir)["component"] == "online-rewriter"
    if reference_path is None and not online:
        raise InvalidInputError(explain(f"--model {model_dir}", "a membership audit needs --reference (a store of users the model never saw)",
                                        "import logs of other users into a store and pass it as --reference"))
    if reference_path is not None and (not Path(store_path).exists() or not Path(reference_path).exists()):
        raise InvalidInputError(explain(f"{store_path} / {reference_path}", "both stores must exist", "check --store and --reference"))
    if online:
        from ..online import OnlineRewriter

        rw = OnlineRewriter.load(model_dir, threads=threads)
        if reference_path is None:
            return audit_online(rw, config=config)
        with Store(store_path) as st, Store(reference_path) as ref:
            return audit_online(rw, model_dir=Path(model_dir), store=st, reference=ref, canaries=canaries, config=config, threads=threads)
    model = load_model(model_dir, threads=threads)
    with Store(store_path) as st, Store(reference_path) as ref:  # the signals may need computing
        return audit_model(model, st, ref, canaries=canaries, config=config)
