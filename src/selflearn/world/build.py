"""Build a world once: train its NLU, build catalogues and surface forms, and run
every surface form through ASR → NLU → entity resolution, so that simulation
itself only looks results up (the pipeline's outputs are cached per unique text).

A built world is a directory: ``manifest.json`` (inputs, parameters, version,
build statistics), ``nlu/`` (the trained model) and ``world.msgpack`` (the
compiled tables).
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import msgspec
import numpy as np

from .. import __version__
from ..errors import InvalidInputError, StoreVersionError, explain
from .asr_channel import CONDITIONS, AsrChannel, Condition
from .catalogue import CATALOGUE_TYPES, Catalogue, Entity
from .corpus import AsrRow, Sentence, load_asr_corpus, load_sentences, normalise, word_error_rate
from .nlu import JointNLU, NluResult
from .surfaces import Lexicon, build_surfaces

__all__ = ["WorldConfig", "World", "build_world", "interpret"]

FORMAT_VERSION = 1


@dataclass
class WorldConfig:
    sentences: list[str]
    asr_corpus: list[str]
    seed: int = 0
    nlu_train_share: float = 0.6
    nlu_epochs: int = 4
    #: ASR transcripts (of distinct conditions) per NLU training sentence, on average; production
    #: NLU is trained on annotated transcripts of its head traffic, not on typed text
    nlu_asr_augment: float = 2.0
    max_sentences: int | None = None
    threads: int = 2


@dataclass
class World:
    """The compiled world (what ``simulate`` needs, nothing it must compute)."""

    config: dict
    sentences: list[dict]  # per goal: slurp_id, text, intent, scenario, slots, in_nlu_train, popularity
    entities: list[dict]
    surfaces: list[dict]  # goal, kind, text, sense
    conditions: list[str]
    noisy_condition: str | None
    #: per surface, per condition: [heard text id, asr confidence]
    heard: list[list[list]]
    texts: list[str]  # every unique normalised text, by id
    #: per text id: [intent, confidence, top_k, slots, er_status, entities]
    interp: list[list]
    ref_text: list[int]  # per surface: text id of its clean wording
    stats: dict = field(default_factory=dict)

    # -- persistence ---------------------------------------------------------
    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        body = asdict(self)
        manifest = {
            "format_version": FORMAT_VERSION,
            "selflearn_version": __version__,
            "config": self.config,
            "stats": self.stats,
            "files": {"world": "world.msgpack", "nlu": "nlu/"},
        }
        tmp = directory / "world.msgpack.part"
        tmp.write_bytes(msgspec.msgpack.encode(body))
        tmp.replace(directory / "world.msgpack")
        (directory / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")

    @classmethod
    def load(cls, directory: Path) -> "World":
        try:
            manifest = json.loads((directory / "manifest.json").read_text())
        except (OSError, ValueError) as exc:
            raise InvalidInputError(
                explain(str(directory), "must be a world directory written by `selflearn world build`", "build one first")
            ) from exc
        if manifest.get("format_version") != FORMAT_VERSION:
            raise StoreVersionError(
                explain(f"format_version={manifest.get('format_version')}", f"must be {FORMAT_VERSION}", "rebuild the world")
            )
        return cls(**msgspec.msgpack.decode((directory / "world.msgpack").read_bytes()))

    def catalogue(self) -> Catalogue:
        return Catalogue([Entity(e["id"], e["type"], e["name"], e["popularity"], tuple(e["senses"])) for e in self.entities])


def _draw_training_split(n: int, popularity: np.ndarray, share: float, rng: np.random.Generator) -> np.ndarray:
    """Which goals the NLU is trained on: a weighted sample without replacement that
    favours popular requests (teams annotate their head traffic), keys u^(1/w)."""
    keys = rng.random(n) ** (1.0 / np.sqrt(popularity))
    chosen = np.zeros(n, dtype=bool)
    chosen[np.argsort(-keys)[: int(round(share * n))]] = True
    return chosen


def interpret(nlu: NluResult, catalogue: Catalogue, text: str) -> list:
    """NLU output + entity resolution for one text, as stored in ``World.interp``."""
    words = frozenset(text.split())
    ents, statuses = [], []
    for t, v in nlu.slots:
        if t not in CATALOGUE_TYPES:
            continue
        r = catalogue.resolve(t, v, words)
        ents.append([t, v, r.status, r.entity_id, r.name, round(r.score, 3), r.candidates])
        statuses.append(r.status)
    if not ents:
        status = "not_applicable"
    elif all(s == "resolved" for s in statuses):
        status = "resolved"
    elif "ambiguous" in statuses and "unresolved" not in statuses:
        status = "ambiguous"
    elif all(s == "unresolved" for s in statuses):
        status = "unresolved"
    else:
        status = "partial"
    return [nlu.intent, round(nlu.confidence, 4), [list(x) for x in nlu.top_k], [list(s) for s in nlu.slots], status, ents]


def build_world(config: WorldConfig, *, progress=None, live_cache: Path | None = None) -> tuple[World, JointNLU]:
    """Build the world; ``progress(stage, done, total)`` reports long stages."""
    say = progress or (lambda *a: None)
    started = time.perf_counter()
    if not 0.05 <= config.nlu_train_share <= 0.95:
        raise InvalidInputError(explain(f"nlu_train_share={config.nlu_train_share}", "must be in [0.05, 0.95]", "use e.g. 0.6"))
    sentences = load_sentences([Path(p) for p in config.sentences])
    sentences.sort(key=lambda s: s.slurp_id)
    if config.max_sentences:
        sentences = random.Random(config.seed).sample(sentences, min(config.max_sentences, len(sentences)))
        sentences.sort(key=lambda s: s.slurp_id)
    corpus = load_asr_corpus([Path(p) for p in config.asr_corpus])
    conditions = sorted({c for (_, c) in corpus})
    if not conditions:
        raise InvalidInputError(explain(",".join(config.asr_corpus), "must hold at least one ASR row", "pass an ASR corpus file"))
    rng = np.random.default_rng(config.seed)

    # 1. fill gaps in the corpus with the live channel (cached)
    missing = [(s, c) for s in sentences for c in conditions if (s.slurp_id, c) not in corpus]
    if missing:
        corpus.update(_live_rows(missing, corpus, live_cache, say))

    # 2. popularity, NLU training split, the NLU itself
    n = len(sentences)
    popularity = 1.0 / (1.0 + rng.permutation(n)) ** 1.0
    train = _draw_training_split(n, popularity, config.nlu_train_share, rng)
    lexicon = Lexicon()
    for s in sentences:
        for c in conditions:
            lexicon.add(s.slurp_id, c, s.text.split(), normalise(corpus[(s.slurp_id, c)].hypothesis).split())
    training = [s for s, t in zip(sentences, train) if t]
    aug_rng = random.Random(config.seed)
    augmented = []
    for s in training:
        k = int(config.nlu_asr_augment) + (aug_rng.random() < config.nlu_asr_augment % 1)
        augmented += [_transcribed(s, lexicon, c) for c in aug_rng.sample(conditions, min(k, len(conditions)))]
    nlu = JointNLU(epochs=config.nlu_epochs, random_state=config.seed, threads=config.threads)
    nlu.fit(training + [a for a in augmented if a], progress=lambda _, a, b: say("train NLU", a, b))

    # 3. catalogues, surfaces, what the recogniser heard
    catalogue = Catalogue.build(sentences, seed=config.seed)
    surfaces = build_surfaces(sentences, catalogue, seed=config.seed)
    text_id: dict[str, int] = {}

    def tid(t: str) -> int:
        return text_id.setdefault(t, len(text_id))

    heard, ref_text, unknown_words, edits, words_total = [], [], 0, 0, 0
    conf_rng = np.random.default_rng(config.seed + 1)
    for sf in surfaces:
        ref_text.append(tid(sf.text))
        row = []
        for c in conditions:
            if sf.corpus_id is not None:
                h = normalise(corpus[(sf.corpus_id, c)].hypothesis)
            else:
                parts = []
                for w, src in zip(sf.words, sf.source):
                    got, known = lexicon.hear(w, src, c)
                    unknown_words += not known
                    parts.append(got)
                h = " ".join(" ".join(parts).split())
            e, nw = word_error_rate(sf.text, h)
            edits, words_total = edits + e, words_total + nw
            conf = float(np.clip(0.97 - 0.9 * e / max(nw, 1) + conf_rng.normal(0, 0.06), 0.05, 0.99))
            row.append([tid(h), round(conf, 3)])
        heard.append(row)

    # 4. the NLU and entity resolution over every unique text, once
    texts = list(text_id)
    say("run NLU", 0, len(texts))
    results = []
    for b in range(0, len(texts), 2048):
        results.extend(nlu.predict(texts[b : b + 2048]))
        say("run NLU", min(b + 2048, len(texts)), len(texts))
    interp = [interpret(r, catalogue, t) for r, t in zip(results, texts)]

    noisy = sorted({r.condition for r in corpus.values() if r.snr_db is not None})
    world = World(
        config=asdict(config),
        sentences=[
            {"slurp_id": s.slurp_id, "text": s.text, "intent": s.intent, "scenario": s.scenario,
             "slots": [list(x) for x in s.slots], "in_nlu_train": bool(t), "popularity": float(p)}
            for s, t, p in zip(sentences, train, popularity)
        ],
        entities=[{"id": e.id, "type": e.type, "name": e.name, "popularity": e.popularity, "senses": list(e.senses)} for e in catalogue.entities],
        surfaces=[{"goal": sf.goal, "kind": sf.kind, "text": sf.text, "sense": sf.sense} for sf in surfaces],
        conditions=conditions,
        noisy_condition=noisy[0] if noisy else None,
        heard=heard,
        texts=texts,
        interp=interp,
        ref_text=ref_text,
    )
    world.stats = {
        "sentences": n,
        "nlu_train_sentences": int(train.sum()),
        "nlu_train_transcripts": sum(1 for a in augmented if a),
        "nlu_train_seconds": round(nlu.train_seconds_, 1),
        "surfaces": len(surfaces),
        "unique_texts": len(texts),
        "live_asr_rows": len(missing),
        "composed_words_unknown_to_corpus": unknown_words,
        "surface_wer": round(edits / max(words_total, 1), 4),
        "build_seconds": round(time.perf_counter() - started, 1),
        "fingerprint": hashlib.sha256(msgspec.msgpack.encode([texts[:1000], heard[:1000]])).hexdigest()[:16],
    }
    return world, nlu


def _transcribed(s: Sentence, lexicon: Lexicon, condition: str) -> Sentence | None:
    """A training sentence as the recogniser heard it, slot tags carried over by the
    word alignment (production NLU is trained on transcripts, not on typed text)."""
    heard = lexicon.alignments[(s.slurp_id, condition)]
    words, tags = [], []
    for tag, got in zip(s.tags or ("",) * len(heard), heard):
        words.extend(got)
        tags.extend([tag] * len(got))
    if not words:
        return None
    slots, prev = [], ""
    for w, t in zip(words, tags):
        if t and t == prev:
            slots[-1][1].append(w)
        elif t:
            slots.append((t, [w]))
        prev = t
    return Sentence(s.slurp_id, " ".join(words), s.intent, s.scenario, tuple((t, " ".join(v)) for t, v in slots), tuple(tags))


def _live_rows(missing: list[tuple[Sentence, str]], corpus: dict, cache: Path | None, say) -> dict:
    """Run the live channel for (sentence, condition) pairs the corpus lacks."""
    cached: dict[tuple[int, str], AsrRow] = {}
    if cache is not None and cache.exists():
        cached = load_asr_corpus(cache)
    todo = [(s, c) for s, c in missing if (s.slurp_id, c) not in cached]
    known = {r.condition: Condition(r.condition, r.voice, r.rate, r.snr_db) for r in corpus.values() if r.voice}
    channel = AsrChannel()
    by_cond: dict[str, list[Sentence]] = {}
    for s, c in todo:
        by_cond.setdefault(c, []).append(s)
    done = 0
    for c, items in by_cond.items():
        cond = known.get(c) or CONDITIONS.get(c)
        if cond is None:
            raise InvalidInputError(explain(f"condition={c!r}", "needs voice and rate in the corpus rows to be reproduced live", "add voice/rate/snr_db to its rows"))
        for row in channel.transcribe([(s.slurp_id, s.text) for s in items], cond):
            r = AsrRow(row["slurp_id"], c, row["hypothesis"], cond.voice, cond.rate, cond.snr_db)
            cached[(r.slurp_id, c)] = r
            if cache is not None:
                with open(cache, "a", encoding="utf-8") as fh:
                    fh.write(json.dumps(row) + "\n")
            done += 1
            say("live ASR", done, len(todo))
    return {k: cached[k] for k in ((s.slurp_id, c) for s, c in missing)}
