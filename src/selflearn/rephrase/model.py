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
from ..models.base import Estimator, Progress, no_progress
from ..models.directory import load_module, save_module
from .examples import Example

__all__ = ["ContextualRephraseDetector"]



def _gap_words(gap: float) -> str:
    return f"after {int(round(gap))} seconds"


class ContextualRephraseDetector(Estimator):
    """``fit(examples, labels)``; ``predict(examples)`` → (index or -1, probability) per example."""

    component = "rephrase-detector"
    format_version = 2  # 2: the shared model directory (component, params, data fingerprint)
    fitted_attr = "module_"
    fix = "train one with `selflearn rephrase train`"

    def __init__(self, *, epochs: int = 1, batch_size: int = 32, lr: float = 5e-5, max_length: int = 96, random_state: int = 0, threads: int = 1):
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.max_length = max_length
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
        rng = self._start(examples, labels)
        self.tokenizer_ = load_tokenizer()
        self.module_ = self._build(pretrained=True)
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

    # -- inference --------------------------------------------------------------
    def predict(self, examples: list[Example], *, batch_size: int = 64) -> list[tuple[int, float]]:
        """Per example: (index of the rephrase among its following turns, or -1; probability)."""
        import torch

        self._check_fitted()
        self._threads()
        out: list[tuple[int, float]] = []
        with torch.inference_mode():
            for b in range(0, len(examples), batch_size):
                batch = examples[b : b + batch_size]
                input_ids, mask, spans = self._encode(batch)
                s_logits, e_logits = self.module_(input_ids, mask)
                s, e = s_logits.numpy(), e_logits.numpy()
                for i, sp in enumerate(spans):
                    scores = np.array([s[i, 0] + e[i, 0]] + [s[i, a] + e[i, z] for a, z in sp])
                    p = np.exp(scores - scores.max())
                    p /= p.sum()
                    k = int(np.argmax(p))
                    out.append((k - 1, float(p[k])))
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
