"""Feeding the label network with memory bounded by the batch, not the data set.

- :func:`plan_batches`: dialogues grouped into batches of about ``batch_turns`` exchanges (a long
  dialogue is a batch of its own), in a shuffled order.
- :class:`VectorCache`: with a frozen encoder, every exchange's user and reply sentence vectors are
  computed once, written to a temporary file (float16) and read back batch by batch — RAM holds one
  batch of vectors and an offset per dialogue, whatever the data set's size.
- :func:`training_schedule`: how many epochs and evaluations a data set of a given size gets.
- :func:`class_weights`: balanced weights of the rating tasks' classes.
"""

from __future__ import annotations

import math
import os
import random
import tempfile
from pathlib import Path

import numpy as np

from ..models.backbone import DIM
from .batches import Vocab, exchange_texts
from .dialogues import Dialogue

__all__ = ["plan_batches", "VectorCache", "Feed", "sentence_vectors", "class_weights", "training_schedule", "TARGET_STEPS", "FROZEN_MAX_TOKENS"]

#: optimiser steps a training run aims at when the epochs are left to the data: a frozen encoder
#: (cheap steps, a small head) and a fine-tuned one (costly steps, a pretrained body that moves little)
TARGET_STEPS = {"frozen": 1500, "finetune": 400}
MAX_EPOCHS = 40
FROZEN_MAX_TOKENS = 64  # a frozen sentence vector reads more of a long turn than the fine-tuned encoder's 32 tokens


def plan_batches(lengths: list[int], batch_turns: int, rng: random.Random | None) -> list[list[int]]:
    """Indices of dialogues grouped into batches of at most ``batch_turns`` exchanges (at least one
    dialogue each), in a shuffled order with ``rng`` (training), else in the input order (inference).
    Batches are not sorted by length: a batch of only one-turn dialogues would hold no label of what
    needs two turns (goal segmentation), and mixed batches are what the world's figures were made with."""
    order = list(range(len(lengths)))
    if rng is not None:
        rng.shuffle(order)
    batches, cur, turns = [], [], 0
    for i in order:
        if cur and turns + lengths[i] > batch_turns:
            batches.append(cur)
            cur, turns = [], 0
        cur.append(i)
        turns += lengths[i]
    if cur:
        batches.append(cur)
    return batches


def training_schedule(steps_per_epoch: int, encoder: str, epochs: int | None) -> tuple[int, int]:
    """(epochs, evaluate every N steps): ``epochs`` when given, else enough epochs for about
    :data:`TARGET_STEPS` steps (at least 1, at most 40); about 10 evaluations in all (at least one per epoch
    for short runs, several per epoch when one epoch is already most of the steps)."""
    steps_per_epoch = max(1, steps_per_epoch)
    if epochs is None:
        epochs = min(MAX_EPOCHS, max(1, math.ceil(TARGET_STEPS[encoder] / steps_per_epoch)))
    total = epochs * steps_per_epoch
    every = min(steps_per_epoch, max(1, math.ceil(total / 10)))
    return epochs, every


class VectorCache:
    """Sentence vectors of every exchange (user turn, reply) of ``dialogues`` in ``mode``, on disk."""

    def __init__(self, dialogues: list[Dialogue], mode: str, encoder, *, chunk: int = 256, progress=None):
        fd, name = tempfile.mkstemp(prefix="selflearn-vectors-", suffix=".f16")
        self.path = Path(name)
        self._fd = fd
        self.offsets = np.zeros(len(dialogues) + 1, np.int64)
        row = 0
        pending: list[tuple[str, str]] = []
        for i, d in enumerate(dialogues):
            pairs = exchange_texts(d, mode)
            pending.extend(pairs)
            row += len(pairs)
            self.offsets[i + 1] = row
            if len(pending) >= chunk or i == len(dialogues) - 1:
                self._write(pending, encoder)
                pending = []
                if progress:
                    progress("encode", i + 1, len(dialogues))

    def _write(self, pairs: list[tuple[str, str]], encoder) -> None:
        if not pairs:
            return
        users, replies = _encode_pairs(encoder, pairs)
        os.write(self._fd, np.stack([users, replies], axis=1).astype(np.float16).tobytes())  # (n, 2, DIM)

    def get(self, indices: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """(user vectors, reply vectors) of the exchanges of dialogues ``indices``, in order."""
        parts = []
        width = 2 * DIM * 2  # bytes per exchange
        for i in indices:
            a, b = int(self.offsets[i]), int(self.offsets[i + 1])
            buf = os.pread(self._fd, (b - a) * width, a * width)
            parts.append(np.frombuffer(buf, np.float16).reshape(b - a, 2, DIM))
        rows = np.concatenate(parts).astype(np.float32) if parts else np.zeros((0, 2, DIM), np.float32)
        return rows[:, 0], rows[:, 1]

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> "VectorCache":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Feed:
    """Dialogues to batch, their lengths, and (frozen encoder, training) their cached vectors."""

    def __init__(self, dialogues: list[Dialogue], cache: VectorCache | None):
        self.dialogues, self.cache = dialogues, cache
        self.lengths = [len(d.exchanges) for d in dialogues]


def sentence_vectors(encoder, dialogues: list[Dialogue], mode: str) -> tuple[np.ndarray, np.ndarray]:
    """The user and reply sentence vectors of every exchange of ``dialogues`` (computed now: inference)."""
    return _encode_pairs(encoder, [p for d in dialogues for p in exchange_texts(d, mode)])


def _encode_pairs(encoder, pairs: list[tuple[str, str]]) -> tuple[np.ndarray, np.ndarray]:
    """(user vectors, reply vectors) of ``pairs``, each distinct text encoded once."""
    texts = sorted({t for p in pairs for t in p}, key=lambda x: (len(x), x))  # similar lengths batch together
    row = {t: i for i, t in enumerate(texts)}
    vec = encoder.encode(texts, max_length=FROZEN_MAX_TOKENS)
    return vec[[row[u] for u, _ in pairs]], vec[[row[r] for _, r in pairs]]


def class_weights(dialogues: list[Dialogue], v: Vocab) -> dict[str, list[float]]:
    """Balanced weights (n / (k * count)) of the rating tasks' classes seen in training."""
    from sklearn.utils.class_weight import compute_class_weight

    out = {}
    for task, labels, ys in (("satisfaction", v.satisfaction, [e.labels["satisfaction"] for d in dialogues for e in d.exchanges if "satisfaction" in e.labels]),
                             ("dialogue_label", v.dialogue_labels, [str(d.label) for d in dialogues if d.label is not None])):
        if len(labels) < 2 or not ys:
            continue
        present = np.array(sorted(set(ys), key=labels.index))
        w = dict(zip(present.tolist(), compute_class_weight("balanced", classes=present, y=np.array(ys)).tolist()))
        out[task] = [round(float(w.get(c, 1.0)), 4) for c in labels]
    return out
