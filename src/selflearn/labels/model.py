"""The label model as an estimator: ``fit(dialogues)`` (self-supervised pretraining on the
dialogues' structure, then multi-task fine-tuning on whatever labels they carry), ``predict``
(per-turn label probabilities), ``save``/``load`` as a model directory."""

from __future__ import annotations

import math
import random
import time
from pathlib import Path


from ..errors import InvalidInputError, explain
from ..models.backbone import load_tokenizer
from ..models.base import Estimator, Progress, no_progress
from ..models.directory import load_module, save_module
from .batches import CORRUPTIONS, IGNORE, Vocab, collate, corrupt, drop_feedback, encode_dialogues
from .dialogues import Dialogue
from .goals import carry_goal_intents
from .net import NetConfig, build_net

__all__ = ["LabelModel", "TASKS"]

TASKS = ("defect", "same_goal", "goal_success", "intent", "slots", "satisfaction", "dialogue_label")
SLOT_VALUE_MIN = 85.0  # rapidfuzz ratio for a tagged span to take a known value's canonical form


class LabelModel(Estimator):
    """Contextual label model. Parameters are stored as given; learned state ends in ``_``."""

    component = "label-model"
    format_version = 2  # 2: the shared model directory
    fitted_attr = "net_"
    fix = "train it with `selflearn labels train`"

    def __init__(self, *, text_layers: int = 6, d_model: int = 256, dialogue_layers: int = 2, context: bool = True,
                 pretrain_epochs: int = 1, corruptions: tuple[str, ...] = CORRUPTIONS, epochs: int = 2, batch_size: int = 32,
                 lr: float = 5e-5, head_lr: float = 1e-3, feedback_dropout: float = 0.2, random_state: int = 0, threads: int = 1):
        self.text_layers = text_layers
        self.d_model = d_model
        self.dialogue_layers = dialogue_layers
        self.context = context
        self.pretrain_epochs = pretrain_epochs
        self.corruptions = tuple(corruptions)
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.head_lr = head_lr
        self.feedback_dropout = feedback_dropout
        self.random_state = random_state
        self.threads = threads

    def _check_params(self) -> None:
        bad = set(self.corruptions) - set(CORRUPTIONS)
        if bad or not 1 <= self.text_layers <= 6 or self.epochs < 0 or self.pretrain_epochs < 0 or self.batch_size < 1:
            raise InvalidInputError(explain(f"corruptions={list(self.corruptions)}, text_layers={self.text_layers}, epochs={self.epochs}, "
                                            f"pretrain_epochs={self.pretrain_epochs}, batch_size={self.batch_size}",
                                            f"corruptions must be among {list(CORRUPTIONS)}, text_layers 1-6, epochs >= 0, batch_size >= 1",
                                            "use the defaults"))

    # -- training --------------------------------------------------------------------
    def fit(self, dialogues: list[Dialogue], *, progress: Progress | None = None) -> "LabelModel":
        self._check_params()
        if not dialogues or not any(e.labels for d in dialogues for e in d.exchanges):
            raise InvalidInputError(explain(f"{len(dialogues)} dialogues", "training needs dialogues with at least one labelled turn",
                                            "label turns (docs/dialogue-format.md) or build weak labels from a store"))
        rng = self._start(dialogues)
        say = progress or no_progress
        self.vocab_ = Vocab.fit(dialogues)
        self.tokenizer_ = load_tokenizer()
        v = self.vocab_
        self.net_config_ = NetConfig(self.text_layers, self.d_model, self.dialogue_layers, context=self.context,
                                     categories=tuple(len(x) for x in v.categories.values()), n_intents=max(len(v.intents), 1),
                                     n_tags=len(v.tags), n_satisfaction=len(v.satisfaction), n_dialogue_labels=len(v.dialogue_labels))
        self.net_ = build_net(self.net_config_, pretrained=True)
        data = encode_dialogues(dialogues, self.tokenizer_, v)
        started = time.perf_counter()
        self.history_ = {"pretrain": [], "finetune": []}
        if self.pretrain_epochs and self.corruptions:
            self._run(data, self.pretrain_epochs, rng, pretrain=True, say=say)
        self._run(data, self.epochs, rng, pretrain=False, say=say)
        self.net_.eval()
        self.train_seconds_ = round(time.perf_counter() - started, 1)
        self.n_dialogues_ = len(dialogues)
        return self

    def _run(self, data, epochs: int, rng: random.Random, *, pretrain: bool, say) -> None:
        import torch

        body = [p for n, p in self.net_.named_parameters() if n.startswith("text.")]
        rest = [p for n, p in self.net_.named_parameters() if not n.startswith("text.")]
        opt = torch.optim.AdamW([{"params": body, "lr": self.lr}, {"params": rest, "lr": self.head_lr}], weight_decay=0.01)
        per_epoch = math.ceil(len(data) / self.batch_size)
        steps = max(1, epochs * per_epoch)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: min(1.0, (k + 1) / max(1, steps // 10)) * max(0.0, 1 - k / steps))
        stage = "pretrain" if pretrain else "finetune"
        self.net_.train()
        step = 0
        for _ in range(epochs):
            order = list(range(len(data)))
            rng.shuffle(order)
            for b in range(0, len(order), self.batch_size):
                batch = [data[i] for i in order[b : b + self.batch_size]]
                batch = drop_feedback(batch, rng, self.feedback_dropout)
                if pretrain:
                    batch = corrupt(batch, self.corruptions, rng)
                t = collate(batch, self.tokenizer_.pad_token_id)
                out = self.net_(t)
                loss = _pretrain_loss(out, t) if pretrain else _task_loss(out, t)
                if loss is None:
                    continue
                opt.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.net_.parameters(), 1.0)
                opt.step()
                sched.step()
                step += 1
                self.history_[stage].append(round(loss.item(), 4))
                say(stage, step, steps)

    # -- inference -------------------------------------------------------------------
    def predict(self, dialogues: list[Dialogue], *, batch_size: int = 64) -> list[list[dict]]:
        """Per dialogue, per exchange: each task's prediction and confidence (``None`` where the
        task has no label space); ``dialogue_label`` sits on the first exchange."""
        import torch
        from rapidfuzz import fuzz, process

        self._check_fitted()
        self._threads()
        v = self.vocab_
        data = encode_dialogues(dialogues, self.tokenizer_, v)
        out: list[list[dict]] = []
        with torch.inference_mode():
            for b in range(0, len(data), batch_size):
                batch, dias = data[b : b + batch_size], dialogues[b : b + batch_size]
                r = self.net_(collate(batch, self.tokenizer_.pad_token_id))
                p_def, p_gs, p_same = (torch.sigmoid(r[k]).numpy() for k in ("defect", "goal_success", "same_goal"))
                p_int, p_sat, p_dl = (torch.softmax(r[k], -1).numpy() for k in ("intent", "satisfaction", "dialogue_label"))
                p_tag = torch.softmax(r["slots"], -1).numpy()
                k = 0
                for n, (enc, dia) in enumerate(zip(batch, dias)):
                    rows = []
                    for t, (e, ex) in enumerate(zip(enc, dia.exchanges)):
                        words = ex.user.split()
                        word_p = {w: p_tag[k, j] for j, w in enumerate(e.word_of_token) if w >= 0}
                        tags = [(v.tags[int(word_p[w].argmax())], float(word_p[w].max())) if w in word_p else ("O", 1.0) for w in range(len(words))]
                        slots = []
                        for name, a, z in _spans([t_ for t_, _ in tags]):
                            span = " ".join(words[a:z])
                            known = v.slot_values.get(name) or []
                            m = process.extractOne(span, known, scorer=fuzz.ratio, score_cutoff=SLOT_VALUE_MIN) if known else None
                            slots.append({"name": name, "value": m[0] if m else span, "heard": span,
                                          "confidence": round(min(c for _, c in tags[a:z]), 4)})
                        row = {"defect": float(p_def[k]), "goal_success": float(p_gs[k]),
                               "same_goal": float(p_same[k]) if t > 0 else None,
                               "intent": (v.intents[int(p_int[k].argmax())], float(p_int[k].max())) if v.intents else None,
                               "slots": slots if len(v.tags) > 1 else None,
                               "slots_confidence": float(min((c for _, c in tags), default=1.0)) if len(v.tags) > 1 else None,
                               "satisfaction": (v.satisfaction[int(p_sat[k].argmax())], float(p_sat[k].max())) if v.satisfaction else None}
                        if t == 0:
                            row["dialogue_label"] = ((v.dialogue_labels[int(p_dl[n].argmax())], float(p_dl[n].max()))
                                                     if v.dialogue_labels else None)
                        rows.append(row)
                        k += 1
                    out.append(carry_goal_intents(rows))
        return out

    # -- persistence -----------------------------------------------------------------
    def save(self, directory: Path, *, calibration: dict | None = None) -> Path:
        """The model directory; ``calibration`` (per-task thresholds) is kept with it."""
        if calibration is not None:
            self.calibration_ = calibration
        return super().save(directory)

    def _learned(self) -> dict:
        return {"net": self.net_config_.to_dict(), "vocab": self.vocab_.to_dict(), "train_seconds": self.train_seconds_,
                "n_dialogues": self.n_dialogues_, "history": self.history_, "calibration": getattr(self, "calibration_", None)}

    def _save_weights(self, directory: Path) -> None:
        save_module(directory, self.net_, self.tokenizer_)

    def _restore(self, directory: Path, learned: dict) -> None:
        net = learned["net"]
        self.net_config_ = NetConfig(**{**net, "categories": tuple(net["categories"])})
        self.vocab_ = Vocab(**learned["vocab"])
        self.train_seconds_, self.n_dialogues_, self.history_ = learned["train_seconds"], learned["n_dialogues"], learned["history"]
        self.calibration_ = learned.get("calibration")
        self.tokenizer_ = load_tokenizer(directory / "tokenizer")
        self.net_ = load_module(directory, build_net(self.net_config_, pretrained=False))


def _spans(tags: list[str]) -> list[tuple[str, int, int]]:
    """BIO tags → (name, start, end) word spans; a stray I- starts a span."""
    out: list[list] = []
    prev = "O"
    for j, t in enumerate(tags):
        if t == "O":
            prev = "O"
            continue
        name = t[2:]
        if t.startswith("I-") and prev != "O" and prev[2:] == name:
            out[-1][2] = j + 1
        else:
            out.append([name, j, j + 1])
        prev = t
    return [tuple(x) for x in out]


def _bce(logits, y):
    import torch

    m = ~torch.isnan(y)
    if not m.any():
        return None
    return torch.nn.functional.binary_cross_entropy_with_logits(logits[m], y[m])


def _ce(logits, y):
    import torch

    if not (y != IGNORE).any():
        return None
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), ignore_index=IGNORE)


def _pretrain_loss(out: dict, t: dict):
    return _bce(out["corrupted"], t["y_corrupted"])


def _task_loss(out: dict, t: dict):
    parts = [_bce(out["defect"], t["y_defect"]), _bce(out["goal_success"], t["y_goal_success"]), _bce(out["same_goal"], t["y_same_goal"]),
             _ce(out["intent"], t["y_intent"]), _ce(out["slots"], t["y_slots"]), _ce(out["satisfaction"], t["y_satisfaction"]),
             _ce(out["dialogue_label"], t["y_dialogue_label"])]
    parts = [p for p in parts if p is not None]
    return sum(parts) if parts else None
