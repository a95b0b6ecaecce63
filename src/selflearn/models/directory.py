"""The model directory, one layout for every model: ``config.json`` (component, format version,
parameters, training-data fingerprint, privacy metadata, learned state, selflearn's version),
``model.safetensors`` and ``tokenizer/`` for torch models, and one sub-directory per part of a
composite model. A directory is written beside its final place and moved there in one rename, so
a reader never sees half a model."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from ..errors import InvalidInputError, StoreVersionError, UnreadableInputError, explain

__all__ = ["write_config", "read_config", "describe", "read_older_config", "replace_dir", "save_module", "load_module", "CONFIG"]

CONFIG = "config.json"


def write_config(directory: Path, config: dict) -> None:
    from .. import __version__

    stamped = {**config, "selflearn_version": __version__, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    (directory / CONFIG).write_text(json.dumps(stamped, indent=2) + "\n")


def read_older_config(directory: Path, *, component: str, format_version: int) -> dict | None:
    """``config.json`` of ``directory`` when it names ``component`` at the older ``format_version``
    (for a model's ``_upgrade``), else None: read it as today's format, with today's checks."""
    try:
        config = json.loads((directory / CONFIG).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(config, dict) or config.get("format_version") != format_version or config.get("component") != component:
        return None
    return config


def read_config(directory: Path, *, component: str, format_version: int, fix: str) -> dict:
    """``config.json`` of a saved ``component``, checked for its component and format version."""
    try:
        config = json.loads((directory / CONFIG).read_text())
    except FileNotFoundError as exc:
        raise UnreadableInputError(explain(str(directory), f"must be a model directory saved by selflearn ({component}: {CONFIG} and weights)", fix)) from exc
    except (OSError, ValueError) as exc:
        raise UnreadableInputError(explain(str(directory / CONFIG), f"must be readable JSON ({exc})", fix)) from exc
    if not isinstance(config, dict) or config.get("component") != component:
        got = config.get("component") if isinstance(config, dict) else type(config).__name__
        raise InvalidInputError(explain(f"component={got!r} in {directory}", f"must be {component!r}", f"pass a {component} model directory; {fix}"))
    if config.get("format_version") != format_version:
        raise StoreVersionError(explain(f"format_version={config.get('format_version')!r} in {directory}",
                                        f"this selflearn reads {component} format {format_version}", fix))
    return config


def describe(directory: Path) -> dict:
    """Any saved model's identity and privacy record: component, format version, data fingerprint,
    privacy (the DP budget spent, the pseudonym key), without loading its weights."""
    try:
        config = json.loads((Path(directory) / CONFIG).read_text())
    except (OSError, ValueError) as exc:
        raise UnreadableInputError(explain(str(directory), f"must be a model directory saved by selflearn ({CONFIG}: {exc})",
                                           "pass a directory a `selflearn ... train` command wrote")) from exc
    if not isinstance(config, dict) or "component" not in config:
        raise InvalidInputError(explain(str(directory / CONFIG), "names no component", "pass a directory a `selflearn ... train` command wrote"))
    return {"model": str(directory), "component": config["component"], "format_version": config.get("format_version"),
            "data_fingerprint": config.get("data_fingerprint"), "privacy": config.get("privacy")}


@contextmanager
def replace_dir(target: Path):
    """Yield an empty directory next to ``target``; on success it becomes ``target`` (an old one is
    moved aside and removed only after the swap); on error it is removed and ``target`` is untouched."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if target.exists():
        old = target.parent / f".{target.name}.{os.getpid()}.old"
        shutil.rmtree(old, ignore_errors=True)
        os.replace(target, old)
    os.replace(tmp, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def save_module(directory: Path, module, tokenizer=None) -> None:
    """A torch module's weights as ``model.safetensors`` (and its tokenizer as ``tokenizer/``)."""
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in module.state_dict().items()}, str(directory / "model.safetensors"))
    if tokenizer is not None:
        tokenizer.save_pretrained(str(directory / "tokenizer"))


def load_module(directory: Path, module):
    """Load ``model.safetensors`` into ``module`` (built from config, not pretrained); eval mode."""
    from safetensors.torch import load_file

    module.load_state_dict(load_file(str(directory / "model.safetensors")))
    module.eval()
    return module
