"""The retrieval encoder: MiniLM, mean-pooled and L2-normalised, fine-tuned DPR-style with
in-batch negatives, exported to ONNX (int8) for serving.

Implementations of one interface (``encode(texts) -> float32 (n, 384)``, unit rows):
:class:`BiEncoder` (the fine-tune, in torch), :class:`~selflearn.models.backbone.SentenceEncoder`
(off the shelf) and :class:`OnnxEncoder` (serving). The ONNX export is checked against the torch
model (``agreement``)."""

from __future__ import annotations

import logging
import time
import warnings
from pathlib import Path

import numpy as np

from ..errors import InvalidInputError, explain
from ..models.backbone import MAX_TOKENS, SentenceEncoder, build_encoder, encoder_path, load_tokenizer, mean_pool, pool_numpy
from ..models.base import Estimator, Progress, no_progress
from ..models.directory import load_module, save_module

__all__ = ["BiEncoder", "SentenceEncoder", "OnnxEncoder", "export_onnx", "agreement"]

ONNX_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


MIN_NEGATIVES = 16  # shared negatives the private adapter needs; with fewer it is not trained


class BiEncoder(Estimator):
    """The retrieval encoder: MiniLM fine-tuned so a failing request lands next to the request that
    worked for the same goal. ``fit(pairs)`` with (query, positive) pairs; ``encode(texts)``."""

    component = "biencoder"
    format_version = 2  # 2: the shared model directory
    fitted_attr = "model_"
    fix = "train it with `selflearn online train`"

    def __init__(self, *, epochs: int = 1, batch_size: int = 64, lr: float = 3e-5, scale: float = 20.0, max_pairs: int | None = None,
                 dp_epsilon: float | None = None, dp_delta: float | None = None, dp_rank: int = 16, dp_epochs: float = 20.0,
                 random_state: int = 0, threads: int = 1):
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.scale = scale
        self.max_pairs = max_pairs
        self.dp_epsilon = dp_epsilon  # user-level DP (online.adapter): a low-rank adapter over the frozen MiniLM
        self.dp_delta = dp_delta
        self.dp_rank = dp_rank
        self.dp_epochs = dp_epochs  # under DP: passes over the pairs (in user-sampled steps)
        self.random_state = random_state
        self.threads = threads

    def fit(self, pairs: list[tuple[str, str]], *, users: list[str] | None = None, negatives: list[str] | None = None,
            progress: Progress | None = None) -> "BiEncoder":
        """In-batch negatives (sentence-transformers' multiple-negatives ranking loss, as in DPR),
        cosine ×``scale``; a batch never holds the same positive twice (a false negative). Under DP
        (``dp_epsilon``): ``users`` (whose pair each is) and shared ``negatives`` (texts), and a
        private low-rank adapter instead (online.adapter)."""
        import torch
        from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

        if not pairs:
            raise InvalidInputError(explain("0 pairs", "fine-tuning needs (query, positive) pairs", "mine rephrases first (`selflearn rewrites mine`)"))
        if self.batch_size < 2:
            raise InvalidInputError(explain(f"batch_size={self.batch_size}", "in-batch negatives need >= 2", "use e.g. 64"))
        if self.dp_epsilon is not None:
            return self._fit_private(pairs, users, negatives)
        rng = self._start(pairs)
        pairs = list(dict.fromkeys(pairs))
        rng.shuffle(pairs)
        if self.max_pairs is not None:
            pairs = pairs[: self.max_pairs]
        model, tok = build_encoder(pretrained=True, attn_implementation="eager"), load_tokenizer()
        loss_fn = MultipleNegativesRankingLoss(model, scale=self.scale)
        model.train()
        opt = torch.optim.AdamW(model.parameters(), lr=self.lr)
        started, steps, losses = time.perf_counter(), 0, []

        def embed(texts):
            b = tok(texts, padding=True, truncation=True, max_length=MAX_TOKENS, return_tensors="pt")
            return mean_pool(model(**b).last_hidden_state, b["attention_mask"], normalise=True)

        total = self.epochs * -(-len(pairs) // self.batch_size)
        for _ in range(self.epochs):
            rng.shuffle(pairs)
            for batch in _batches(pairs, self.batch_size):
                loss = loss_fn.compute_loss_from_embeddings([embed([a for a, _ in batch]), embed([b for _, b in batch])], None)
                opt.zero_grad()
                loss.backward()
                opt.step()
                steps += 1
                losses.append(loss.item())
                (progress or no_progress)("train", steps, total)
        model.eval()
        self.model_, self.tokenizer_ = model, tok
        k = max(1, len(losses) // 10)
        self.training_ = {"pairs": len(pairs), "steps": steps, "epochs": self.epochs, "train_seconds": round(time.perf_counter() - started, 1),
                          "loss_first": float(np.mean(losses[:k])) if losses else None, "loss_last": float(np.mean(losses[-k:])) if losses else None}
        return self

    def _fit_private(self, pairs: list[tuple[str, str]], users: list[str] | None, negatives: list[str] | None) -> "BiEncoder":
        from ..models.private import check_dp
        from .adapter import fit_adapter

        if users is None or len(users) != len(pairs) or negatives is None:
            raise InvalidInputError(explain(f"users={'None' if users is None else len(users)}, negatives={len(negatives or [])}",
                                            "private fine-tuning needs the user of every pair and shared negative texts",
                                            "pass users=[...] (one per pair) and negatives=[...] (e.g. the global index's texts)"))
        dp = check_dp(self.dp_epsilon, self.dp_delta, len(set(users)))
        rng = self._start(pairs)
        if len(set(negatives)) < MIN_NEGATIVES:
            return self._off_the_shelf(f"not fine-tuned: {len(set(negatives))} shared negative texts, fewer than {MIN_NEGATIVES} "
                                       "(under DP the global index stays small until many users share requests)")
        rows = list(dict.fromkeys(zip(users, pairs)))  # a user's repeated pair counts once
        rng.shuffle(rows)
        if self.max_pairs is not None:
            rows = rows[: self.max_pairs]
        started = time.perf_counter()
        model, tok = build_encoder(pretrained=True, attn_implementation="eager"), load_tokenizer()
        texts = sorted({t for _, pr in rows for t in pr} | set(negatives))
        vec = dict(zip(texts, _pooled(model, tok, texts)))
        self.model_, self.privacy_, losses = fit_adapter(
            model, np.stack([vec[a] for _, (a, _) in rows]), np.stack([vec[b] for _, (_, b) in rows]), [u for u, _ in rows],
            np.stack([vec[t] for t in sorted(set(negatives))]), dp, rank=self.dp_rank, epochs=self.dp_epochs, scale=self.scale, lr=1e-2,
            seed=self.random_state)
        self.tokenizer_ = tok
        k = max(1, len(losses) // 10)
        self.training_ = {"pairs": len(rows), "steps": len(losses), "epochs": self.dp_epochs, "adapter_rank": self.dp_rank,
                          "train_seconds": round(time.perf_counter() - started, 1), "loss_first": float(np.mean(losses[:k])),
                          "loss_last": float(np.mean(losses[-k:]))}
        return self

    def _off_the_shelf(self, why: str) -> "BiEncoder":
        """The pretrained encoder as it is: it learned nothing from the pairs (no budget spent)."""
        self.model_, self.tokenizer_ = build_encoder(pretrained=True, attn_implementation="eager"), load_tokenizer()
        self.model_.eval()
        self.training_ = {"pairs": 0, "steps": 0, "epochs": 0, "train_seconds": 0.0, "loss_first": None, "loss_last": None, "note": why}
        return self

    def encode(self, texts: list[str], *, batch_size: int = 256) -> np.ndarray:
        """float32 (n, 384), unit rows."""
        self._check_fitted()
        return SentenceEncoder(self.model_, self.tokenizer_, threads=self.threads).encode(texts, batch_size=batch_size)

    def _learned(self) -> dict:
        return {"training_": self.training_, "pooling": "mean+l2", "max_tokens": MAX_TOKENS}

    def _save_weights(self, directory: Path) -> None:
        save_module(directory, self.model_, self.tokenizer_)

    def _restore(self, directory: Path, learned: dict) -> None:
        self.training_ = learned["training_"]
        self.tokenizer_ = load_tokenizer(directory / "tokenizer")
        model = build_encoder(pretrained=False, attn_implementation="eager")
        if self.training_.get("adapter_rank"):
            from .adapter import AdaptedEncoder

            model = AdaptedEncoder(model, self.training_["adapter_rank"])
        self.model_ = load_module(directory, model)


def _pooled(model, tok, texts: list[str], batch_size: int = 256) -> np.ndarray:
    """Mean-pooled (not normalised) vectors of the frozen ``model``."""
    import torch

    out = []
    with torch.inference_mode():
        for i in range(0, len(texts), batch_size):
            b = tok(texts[i : i + batch_size], padding=True, truncation=True, max_length=MAX_TOKENS, return_tensors="pt")
            out.append(mean_pool(model(**b).last_hidden_state, b["attention_mask"]).numpy())
    return np.concatenate(out) if out else np.zeros((0, 384), np.float32)


class OnnxEncoder:
    """Serving encoder: ONNX Runtime on one thread, same tokenizer, pooling and truncation."""

    def __init__(self, onnx_file: str | Path, tokenizer_dir: str | Path | None = None, *, threads: int = 1):
        import onnxruntime as ort
        from transformers import AutoTokenizer

        if not Path(onnx_file).is_file():
            raise InvalidInputError(explain(str(onnx_file), "must be an ONNX file", "train the model directory with `selflearn online train`"))
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(onnx_file), opts, providers=["CPUExecutionProvider"])
        self.tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir or encoder_path()))

    def encode(self, texts: list[str], *, batch_size: int = 256) -> np.ndarray:
        out = []
        for i in range(0, len(texts), batch_size):
            enc = self.tokenizer(texts[i : i + batch_size], padding=True, truncation=True, max_length=MAX_TOKENS, return_tensors="np")
            feed = {k: enc[k].astype(np.int64) for k in ONNX_INPUTS}
            out.append(pool_numpy(self.session.run(None, feed)[0], enc["attention_mask"]))
        return np.concatenate(out) if out else np.zeros((0, 384), np.float32)


def _batches(pairs: list[tuple[str, str]], size: int):
    """Batches of up to ``size`` pairs in which no positive repeats (a repeat waits for a later
    batch); pairs left that all share one positive are dropped."""
    pending = list(pairs)
    while pending:
        batch, seen, rest = [], set(), []
        for pair in pending:
            if len(batch) < size and pair[1] not in seen:
                batch.append(pair)
                seen.add(pair[1])
            else:
                rest.append(pair)
        if len(batch) < 2:
            return
        yield batch
        pending = rest


def export_onnx(encoder: BiEncoder, out_file: Path, *, quantize: bool = True) -> Path:
    """Export the encoder's transformer to ONNX (opset 17, dynamic batch and length); with
    ``quantize``, dynamic int8 with per-channel weights (cosine to torch ≈ 0.99, ~3× faster)."""
    import torch

    class _Hidden(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.m(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).last_hidden_state

    out_file = Path(out_file)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    encoder._check_fitted()
    sample = encoder.tokenizer_(["turn on the lights"], return_tensors="pt")
    fp32 = out_file.with_suffix(".fp32.onnx") if quantize else out_file
    axes = {k: {0: "batch", 1: "tokens"} for k in (*ONNX_INPUTS, "last_hidden_state")}
    encoder.model_.eval()
    with warnings.catch_warnings():  # the tracer's notes on shapes it fixes; the agreement test checks the result
        warnings.simplefilter("ignore")
        _export(torch, _Hidden(encoder.model_), sample, fp32, axes)
    encoder.model_.eval()  # the exporter can leave the module in training mode
    if quantize:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)  # the quantizer logs pre-processing advice as a warning
        try:
            quantize_dynamic(str(fp32), str(out_file), weight_type=QuantType.QInt8, per_channel=True)
        finally:
            root.setLevel(level)
        fp32.unlink()
    return out_file


def _export(torch, module, sample, fp32: Path, axes: dict) -> None:
    torch.onnx.export(module, tuple(sample[k] for k in ONNX_INPUTS), str(fp32), input_names=list(ONNX_INPUTS),
                      output_names=["last_hidden_state"], dynamic_axes=axes, opset_version=17, dynamo=False)


def agreement(a, b, texts: list[str]) -> dict:
    """How closely two encoders agree: mean and minimum cosine of their vectors for the same
    texts, and the share of texts whose nearest other text is the same under both."""
    va, vb = a.encode(texts), b.encode(texts)
    cos = (va * vb).sum(1)
    na, nb = va @ va.T, vb @ vb.T
    np.fill_diagonal(na, -2)
    np.fill_diagonal(nb, -2)
    return {"mean_cosine": float(cos.mean()), "min_cosine": float(cos.min()), "same_nearest": float((na.argmax(1) == nb.argmax(1)).mean())}
