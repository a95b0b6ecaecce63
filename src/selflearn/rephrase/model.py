"""Contextual rephrase detection as span prediction (the keynote's model), on MiniLM.

The input is the anchor utterance followed by the next utterances of the session, each preceded by
its time gap: ``[CLS] anchor [SEP] +5s next1 [SEP] +12s next2 [SEP] ...``. Two linear heads give
each token a start and an end score; a candidate span is one following utterance, and "no rephrase"
is the [CLS] position (as in SQuAD 2.0). Trained on weak labels from the feedback signals.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..errors import InvalidInputError, explain
from ..models.backbone import build_encoder, load_tokenizer
from ..models.private import DpSettings, PrivateSGD, check_dp
from ..models.base import Estimator, Progress, no_progress
from ..models.directory import load_module, save_module
from .examples import Example

__all__ = ["ContextualRephraseDetector"]



def _gap_words(gap: float) -> str:
    return f"after {int(round(gap))} seconds"


def _top_layers_class():
    import torch

    class TopLayers(torch.nn.Module):
        """MiniLM's top layers and the span head over the cached input of those layers (the
        private training's model; its parameters are the detector's own)."""

        def __init__(self, layers, qa):
            super().__init__()
            self.layers, self.qa = layers, qa

        def forward(self, hidden, attention_mask):
            ext = (1.0 - attention_mask[:, None, None, :].to(hidden.dtype)) * torch.finfo(hidden.dtype).min
            for layer in self.layers:
                out = layer(hidden, attention_mask=ext)
                hidden = out[0] if isinstance(out, tuple) else out
            logits = self.qa(hidden).masked_fill(attention_mask.unsqueeze(-1) == 0, torch.finfo(hidden.dtype).min)
            return logits[..., 0], logits[..., 1]

    return TopLayers


def _TopLayers(layers, qa):
    return _top_layers_class()(layers, qa)


class ContextualRephraseDetector(Estimator):
    """``fit(examples, labels)``; ``predict(examples)`` → (index or -1, probability) per example."""

    component = "rephrase-detector"
    format_version = 2  # 2: the shared model directory (component, params, data fingerprint)
    fitted_attr = "module_"
    fix = "train one with `selflearn rephrase train`"

    def __init__(self, *, epochs: int = 1, batch_size: int = 32, lr: float = 5e-5, max_length: int = 96, dp_epsilon: float | None = None,
                 dp_delta: float | None = None, dp_max_grad_norm: float | None = None, dp_train_layers: int = 0, dp_epochs: float = 40.0,
                 dp_examples_per_user: int = 8, dp_lr: float = 3e-2, random_state: int = 0, threads: int = 1):
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.max_length = max_length
        self.dp_epsilon = dp_epsilon  # user-level differential privacy (models.private); None: off
        self.dp_delta = dp_delta
        self.dp_max_grad_norm = dp_max_grad_norm
        self.dp_train_layers = dp_train_layers  # under DP only the span head (and this many of MiniLM's top layers) train
        self.dp_epochs = dp_epochs  # under DP: expected passes over the users
        self.dp_examples_per_user = dp_examples_per_user  # under DP: a sampled user's examples in a step (their mean gradient)
        self.dp_lr = dp_lr
        self.random_state = random_state
        self.threads = threads

    # -- encoding -----------------------------------------------------------
    def _encode(self, batch: list[Example]):
        """Token ids with, per example, the (start, end) token span of each following utterance."""
        import torch

        tok = self.tokenizer_
        cls, sep, pad = tok.cls_token_id, tok.sep_token_id, tok.pad_token_id
        ids_list, spans_list = [], []
        for ex in batch:
            ids = [cls] + tok.encode(ex.text, add_special_tokens=False)[:32] + [sep]
            spans = []
            for _, text, gap in ex.following:
                ids += tok.encode(_gap_words(gap), add_special_tokens=False)
                body = tok.encode(text, add_special_tokens=False)[:24] or [tok.unk_token_id]
                if len(ids) + len(body) + 1 > self.max_length:
                    break
                spans.append((len(ids), len(ids) + len(body) - 1))
                ids += body + [sep]
            ids_list.append(ids)
            spans_list.append(spans)
        width = max(len(x) for x in ids_list)
        input_ids = torch.full((len(batch), width), pad, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, ids in enumerate(ids_list):
            input_ids[i, : len(ids)] = torch.tensor(ids)
            mask[i, : len(ids)] = 1
        return input_ids, mask, spans_list

    def _build(self, pretrained: bool):
        import torch

        class SpanModel(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.encoder = build_encoder(pretrained=pretrained)
                self.qa = torch.nn.Linear(self.encoder.config.hidden_size, 2)

            def forward(self, input_ids, attention_mask):
                h = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
                logits = self.qa(h)
                neg = torch.finfo(logits.dtype).min
                logits = logits.masked_fill(attention_mask.unsqueeze(-1) == 0, neg)
                return logits[..., 0], logits[..., 1]

        return SpanModel()

    # -- training -------------------------------------------------------------
    def fit(self, examples: list[Example], labels: list[int], *, progress: Progress | None = None) -> "ContextualRephraseDetector":
        import torch

        if len(examples) != len(labels) or not examples:
            raise InvalidInputError(explain(f"{len(examples)} examples, {len(labels)} labels", "need as many labels as examples, at least one", "pass matching lists"))
        for lab, ex in zip(labels, examples):
            if not (lab == -1 or 0 <= lab < len(ex.following)):
                raise InvalidInputError(explain(f"label={lab}", f"must be -1 or index a following turn (0..{len(ex.following) - 1})", "fix the labels"))
        dp = check_dp(self.dp_epsilon, self.dp_delta, len({e.user_id or e.session_id for e in examples}))
        rng = self._start(examples, labels)
        self.tokenizer_ = load_tokenizer()
        self.module_ = self._build(pretrained=True)
        if dp is not None:
            self._fit_private(examples, labels, dp, progress)
            return self
        opt = torch.optim.AdamW(self.module_.parameters(), lr=self.lr, weight_decay=0.01)
        data = list(zip(examples, labels))
        steps = self.epochs * ((len(data) + self.batch_size - 1) // self.batch_size)
        self.module_.train()
        started, step = time.perf_counter(), 0
        for _ in range(self.epochs):
            rng.shuffle(data)
            for b in range(0, len(data), self.batch_size):
                batch = data[b : b + self.batch_size]
                input_ids, mask, spans = self._encode([e for e, _ in batch])
                starts = torch.tensor([spans[i][lab][0] if 0 <= lab < len(spans[i]) else 0 for i, (_, lab) in enumerate(batch)])
                ends = torch.tensor([spans[i][lab][1] if 0 <= lab < len(spans[i]) else 0 for i, (_, lab) in enumerate(batch)])
                s_logits, e_logits = self.module_(input_ids, mask)
                loss = torch.nn.functional.cross_entropy(s_logits, starts) + torch.nn.functional.cross_entropy(e_logits, ends)
                opt.zero_grad()
                loss.backward()
                opt.step()
                step += 1
                (progress or no_progress)("train", step, steps)
        self.module_.eval()
        self.train_seconds_ = time.perf_counter() - started
        self.n_train_ = len(data)
        return self

    def _targets(self, batch: list[Example], labels: list[int]):
        import torch

        input_ids, mask, spans = self._encode(batch)
        starts = torch.tensor([spans[i][lab][0] if 0 <= lab < len(spans[i]) else 0 for i, lab in enumerate(labels)])
        ends = torch.tensor([spans[i][lab][1] if 0 <= lab < len(spans[i]) else 0 for i, lab in enumerate(labels)])
        return input_ids, mask, starts, ends

    def _fit_private(self, examples: list[Example], labels: list[int], dp: tuple[float, float], progress) -> None:
        """User-level DP-SGD (models.private) over the top ``dp_train_layers``
        MiniLM layers and the span head, the layers below frozen and run ONCE per example (their
        output cached in float16): each step costs only the top layers. ``dp_epochs`` passes over
        the users; a sampled user's mean gradient over up to ``dp_examples_per_user`` of their
        examples is clipped as one (user by user)."""
        import torch

        top = self.dp_train_layers
        encoder = self.module_.encoder
        for p in self.module_.parameters():
            p.requires_grad = False
        layers = torch.nn.ModuleList(encoder.encoder.layer[len(encoder.encoder.layer) - top:])
        for p in [*layers.parameters(), *self.module_.qa.parameters()]:
            p.requires_grad = True
        started = time.perf_counter()
        cached, starts, ends = self._cache_below(examples, labels, top)
        users = [e.user_id or e.session_id for e in examples]
        n_users = len(set(users))
        settings = DpSettings(*dp, users_per_step=min(n_users, 256), epochs=self.dp_epochs, max_grad_norm=self.dp_max_grad_norm,
                              clipping="microbatch", examples_per_user=self.dp_examples_per_user)
        head = _TopLayers(layers, self.module_.qa)
        opt = torch.optim.AdamW([p for p in head.parameters() if p.requires_grad], lr=self.dp_lr, weight_decay=0.01)
        private = PrivateSGD(head, opt, users, settings, seed=self.random_state)
        ce = torch.nn.CrossEntropyLoss(reduction="none")

        def rows(model):
            def loss(ix):
                width = max(len(cached[i]) for i in ix)
                h = torch.zeros((len(ix), width, cached[ix[0]].shape[1]))
                mask = torch.zeros((len(ix), width), dtype=torch.long)
                for r, i in enumerate(ix):
                    h[r, : len(cached[i])] = cached[i].float()
                    mask[r, : len(cached[i])] = 1
                s_logits, e_logits = model(h, mask)
                return ce(s_logits, starts[ix]) + ce(e_logits, ends[ix])
            return loss

        self.module_.train()
        model = private.make_private(rows(head))
        for step in range(private.steps):
            private.step(rows(model))
            (progress or no_progress)("private", step + 1, private.steps)
        for p in self.module_.parameters():
            p.requires_grad = True
        self.module_.eval()
        self.privacy_ = private.spent
        self.train_seconds_ = time.perf_counter() - started
        self.n_train_ = len(examples)

    def _cache_below(self, examples: list[Example], labels: list[int], top: int, batch_size: int = 64):
        """The input of the top ``top`` layers for every example (float16, real tokens only), and
        the label's start and end token."""
        import torch

        cached, starts, ends = [], [], []
        self.module_.eval()
        with torch.inference_mode():
            for b in range(0, len(examples), batch_size):
                input_ids, mask, s, e = self._targets(examples[b : b + batch_size], labels[b : b + batch_size])
                hidden = self.module_.encoder(input_ids=input_ids, attention_mask=mask, output_hidden_states=True).hidden_states[-1 - top]
                cached += [hidden[r, : int(mask[r].sum())].to(torch.float16).clone() for r in range(len(mask))]
                starts.append(s)
                ends.append(e)
        return cached, torch.cat(starts), torch.cat(ends)

    # -- inference --------------------------------------------------------------
    def predict(self, examples: list[Example], *, batch_size: int = 64) -> list[tuple[int, float]]:
        """Per example: (index of the rephrase among its following turns, or -1; probability)."""
        out = []
        for p in self.predict_proba(examples, batch_size=batch_size):
            k = int(np.argmax(p))
            out.append((k - 1, float(p[k])))
        return out

    def predict_proba(self, examples: list[Example], *, batch_size: int = 64) -> list[np.ndarray]:
        """Per example: the probability of "no rephrase" and of each following turn, in that order."""
        import torch

        self._check_fitted()
        self._threads()
        out: list[np.ndarray] = []
        with torch.inference_mode():
            for b in range(0, len(examples), batch_size):
                batch = examples[b : b + batch_size]
                input_ids, mask, spans = self._encode(batch)
                s_logits, e_logits = self.module_(input_ids, mask)
                s, e = s_logits.numpy(), e_logits.numpy()
                for i, sp in enumerate(spans):
                    scores = np.array([s[i, 0] + e[i, 0]] + [s[i, a] + e[i, z] for a, z in sp])
                    p = np.exp(scores - scores.max())
                    out.append(p / p.sum())
        return out

    # -- persistence --------------------------------------------------------------
    def _learned(self) -> dict:
        return {"n_train_": self.n_train_, "train_seconds_": round(self.train_seconds_, 1)}

    def _save_weights(self, directory: Path) -> None:
        save_module(directory, self.module_, self.tokenizer_)

    def _restore(self, directory: Path, learned: dict) -> None:
        self.n_train_, self.train_seconds_ = learned["n_train_"], learned["train_seconds_"]
        self.tokenizer_ = load_tokenizer(directory / "tokenizer")
        self.module_ = load_module(directory, self._build(pretrained=False))
