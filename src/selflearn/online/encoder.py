"""The retrieval encoder: MiniLM, mean-pooled and L2-normalised, fine-tuned DPR-style with
in-batch negatives, exported to ONNX (int8) for serving.

Two implementations of one interface (``encode(texts) -> float32 (n, 384)``, unit rows):
:class:`TorchEncoder` (training, reference) and :class:`OnnxEncoder` (serving). The ONNX
export is checked against the torch model (``agreement``)."""

from __future__ import annotations

import logging
import random
import time
import warnings
from pathlib import Path

import numpy as np

from ..errors import InvalidInputError, explain
from ..modeldir import encoder_path, load_model_dir, read_model_config, save_model_dir

__all__ = ["TorchEncoder", "OnnxEncoder", "fit_biencoder", "export_onnx", "agreement", "FORMAT_VERSION"]

FORMAT_VERSION = 1
MAX_TOKENS = 32  # assistant requests are short; longer input is truncated
ONNX_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def _pool(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean over real tokens, then unit length (what all-MiniLM-L6-v2 was trained with)."""
    v = (hidden * mask[..., None]).sum(1) / np.maximum(mask.sum(1, keepdims=True), 1)
    return (v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)).astype(np.float32)


class TorchEncoder:
    """A MiniLM bi-encoder in torch: the off-the-shelf model (``path=None``) or a saved fine-tune."""

    def __init__(self, path: str | Path | None = None, *, threads: int = 1):
        import torch
        from transformers import AutoConfig, AutoModel, AutoTokenizer

        torch.set_num_threads(threads)
        if path is None:
            self.tokenizer = AutoTokenizer.from_pretrained(encoder_path())
            self.model = AutoModel.from_pretrained(encoder_path(), attn_implementation="eager").eval()
        else:
            read_model_config(Path(path), format_version=FORMAT_VERSION, what="retrieval encoder", fix="train it with `selflearn train online`")
            module = AutoModel.from_config(AutoConfig.from_pretrained(encoder_path()), attn_implementation="eager")
            self.model, self.tokenizer = load_model_dir(Path(path), module)

    def encode(self, texts: list[str], *, batch_size: int = 256) -> np.ndarray:
        import torch

        out = []
        with torch.no_grad():
            for i in range(0, len(texts), batch_size):
                enc = self.tokenizer(texts[i : i + batch_size], padding=True, truncation=True, max_length=MAX_TOKENS, return_tensors="pt")
                out.append(_pool(self.model(**enc).last_hidden_state.numpy(), enc["attention_mask"].numpy()))
        return np.concatenate(out) if out else np.zeros((0, 384), np.float32)

    def save(self, directory: Path, meta: dict | None = None) -> None:
        save_model_dir(Path(directory), self.model, self.tokenizer,
                       {"format_version": FORMAT_VERSION, "component": "retrieval_encoder", "pooling": "mean+l2",
                        "max_tokens": MAX_TOKENS, **(meta or {})})


class OnnxEncoder:
    """Serving encoder: ONNX Runtime on one thread, same tokenizer, pooling and truncation."""

    def __init__(self, onnx_file: str | Path, tokenizer_dir: str | Path | None = None, *, threads: int = 1):
        import onnxruntime as ort
        from transformers import AutoTokenizer

        if not Path(onnx_file).is_file():
            raise InvalidInputError(explain(str(onnx_file), "must be an ONNX file", "train the model directory with `selflearn train online`"))
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
            out.append(_pool(self.session.run(None, feed)[0], enc["attention_mask"]))
        return np.concatenate(out) if out else np.zeros((0, 384), np.float32)


def fit_biencoder(pairs: list[tuple[str, str]], *, epochs: int = 1, batch_size: int = 64, lr: float = 3e-5, scale: float = 20.0,
                  seed: int = 0, threads: int = 1, max_pairs: int | None = None) -> tuple[TorchEncoder, dict]:
    """Fine-tune MiniLM so a failing request lands next to the request that worked for the same
    goal: in-batch negatives (multiple-negatives ranking loss, as in DPR), similarity ×``scale``.
    A batch never holds the same positive twice (it would be a false negative)."""
    import torch

    if not pairs:
        raise InvalidInputError(explain("0 pairs", "fine-tuning needs (query, positive) pairs", "mine rephrases first (`selflearn mine`)"))
    if batch_size < 2:
        raise InvalidInputError(explain(f"batch_size={batch_size}", "in-batch negatives need >= 2", "use e.g. 64"))
    torch.manual_seed(seed)
    rng = random.Random(seed)
    pairs = list(dict.fromkeys(pairs))
    rng.shuffle(pairs)
    if max_pairs is not None:
        pairs = pairs[:max_pairs]
    enc = TorchEncoder(threads=threads)
    model, tok = enc.model, enc.tokenizer
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    started, steps, losses = time.perf_counter(), 0, []

    def embed(texts):
        b = tok(texts, padding=True, truncation=True, max_length=MAX_TOKENS, return_tensors="pt")
        h = model(**b).last_hidden_state
        m = b["attention_mask"].unsqueeze(-1).float()
        v = (h * m).sum(1) / m.sum(1).clamp(min=1)
        return torch.nn.functional.normalize(v, dim=-1)

    for _ in range(epochs):
        rng.shuffle(pairs)
        for batch in _batches(pairs, batch_size):
            q, p = embed([a for a, _ in batch]), embed([b for _, b in batch])
            loss = torch.nn.functional.cross_entropy(scale * q @ p.T, torch.arange(len(batch)))
            opt.zero_grad()
            loss.backward()
            opt.step()
            steps += 1
            losses.append(loss.item())
    model.eval()
    k = max(1, len(losses) // 10)
    return enc, {"pairs": len(pairs), "steps": steps, "epochs": epochs, "train_seconds": round(time.perf_counter() - started, 1),
                 "loss_first": float(np.mean(losses[:k])), "loss_last": float(np.mean(losses[-k:]))}


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


def export_onnx(encoder: TorchEncoder, out_file: Path, *, quantize: bool = True) -> Path:
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
    sample = encoder.tokenizer(["turn on the lights"], return_tensors="pt")
    fp32 = out_file.with_suffix(".fp32.onnx") if quantize else out_file
    axes = {k: {0: "batch", 1: "tokens"} for k in (*ONNX_INPUTS, "last_hidden_state")}
    encoder.model.eval()
    with warnings.catch_warnings():  # the tracer's notes on shapes it fixes; the agreement test checks the result
        warnings.simplefilter("ignore")
        _export(torch, _Hidden(encoder.model), sample, fp32, axes)
    encoder.model.eval()  # the exporter can leave the module in training mode
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
