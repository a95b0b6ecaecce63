"""The label model as an estimator: ``fit(dialogues, valid=...)`` (self-supervised pretraining on
the dialogues' structure, then multi-task fine-tuning on whatever labels they carry, with the
checkpoint chosen on a validation set), ``predict`` (per-turn label probabilities),
``save``/``load`` as a model directory.

Training fits the data it is given: batches of about ``batch_turns`` exchanges (memory bounded by
the batch; with a frozen encoder the sentence vectors wait on disk), as many epochs as give about
:data:`~.feeding.TARGET_STEPS` steps unless ``epochs`` is set, a linear warm-up and decay, balanced
class weights for the rating tasks (satisfaction, dialogue label: skewed ordinal scales), and the
weights of the evaluation with the best mean macro-F1 on the validation set (early stopping after
``patience`` evaluations without a gain)."""

from __future__ import annotations

import random
import time
from contextlib import ExitStack
from pathlib import Path


from ..errors import InvalidInputError, explain
from ..models.backbone import SentenceEncoder, load_tokenizer
from ..models.base import Estimator, Progress, no_progress
from ..models.directory import load_module, read_older_config, save_module
from .batches import CORRUPTIONS, IGNORE, MODES, Vocab, collate, corrupt, drop_feedback, encode_dialogues
from .dialogues import Dialogue
from ..models.private import DpSettings, PrivateSGD, check_dp, user_passes
from .feeding import Feed, VectorCache, class_weights, plan_batches, sentence_vectors, training_schedule
from .goals import carry_goal_intents
from .net import NetConfig, build_net

__all__ = ["LabelModel", "TASKS", "ENCODERS"]

TASKS = ("defect", "same_goal", "goal_success", "intent", "slots", "satisfaction", "dialogue_label")
ENCODERS = ("auto", "finetune", "frozen")
SLOT_VALUE_MIN = 85.0  # rapidfuzz ratio for a tagged span to take a known value's canonical form
#: the heads' learning rate when none is given: on frozen vectors the heads are all that learns and
#: 1e-3 overshoots (CCPE validation); beside a fine-tuned encoder, the rate the world's figures used
HEAD_LR = {"frozen": 3e-4, "finetune": 1e-3}


class LabelModel(Estimator):
    """Contextual label model. Parameters are stored as given; learned state ends in ``_``.

    ``mode``: ``offline`` (label a finished dialogue; later turns are read) or ``online`` (estimate at
    turn t from turns up to t, as a live assistant must). ``encoder``: ``finetune`` MiniLM's first
    ``text_layers`` layers, use it ``frozen`` (sentence vectors computed once: fast, no slot
    tagging), or ``auto`` (frozen unless the data has slot labels). ``epochs=None``: chosen from the
    data size; ``head_lr=None``: :data:`HEAD_LR` for the encoder."""

    component = "label-model"
    format_version = 3  # 3: modes, frozen encoder, batches by turns, class weights, validation (2 loads through _upgrade)
    fitted_attr = "net_"
    fix = "train it with `selflearn labels train`"

    def __init__(self, *, mode: str = "offline", encoder: str = "auto", text_layers: int = 6, d_model: int = 256, dialogue_layers: int = 2,
                 context: bool = True, pretrain_epochs: int = 1, corruptions: tuple[str, ...] = CORRUPTIONS, epochs: int | None = None,
                 batch_turns: int = 80, lr: float = 5e-5, head_lr: float | None = None, class_weight: str | None = "balanced", patience: int = 5,
                 feedback_dropout: float = 0.2, dp_epsilon: float | None = None, dp_delta: float | None = None,
                 dp_max_grad_norm: float | None = None, dp_dialogues_per_user: int = 4, random_state: int = 0, threads: int = 1):
        self.mode = mode
        self.encoder = encoder
        self.text_layers = text_layers
        self.d_model = d_model
        self.dialogue_layers = dialogue_layers
        self.context = context
        self.pretrain_epochs = pretrain_epochs
        self.corruptions = tuple(corruptions)
        self.epochs = epochs
        self.batch_turns = batch_turns
        self.lr = lr
        self.head_lr = head_lr
        self.class_weight = class_weight
        self.patience = patience
        self.feedback_dropout = feedback_dropout
        self.dp_epsilon = dp_epsilon  # user-level differential privacy (models.private); None: off
        self.dp_delta = dp_delta
        self.dp_max_grad_norm = dp_max_grad_norm
        self.dp_dialogues_per_user = dp_dialogues_per_user  # a sampled user's dialogues in a private step (their mean gradient)
        self.random_state = random_state
        self.threads = threads

    def _check_params(self) -> None:
        bad = set(self.corruptions) - set(CORRUPTIONS)
        if (bad or self.mode not in MODES or self.encoder not in ENCODERS or self.class_weight not in ("balanced", None)
                or not 1 <= self.text_layers <= 6 or (self.epochs is not None and self.epochs < 0) or self.pretrain_epochs < 0
                or self.batch_turns < 1 or self.patience < 1):
            raise InvalidInputError(explain(
                f"mode={self.mode!r}, encoder={self.encoder!r}, class_weight={self.class_weight!r}, corruptions={list(self.corruptions)}, "
                f"text_layers={self.text_layers}, epochs={self.epochs}, pretrain_epochs={self.pretrain_epochs}, batch_turns={self.batch_turns}, "
                f"patience={self.patience}",
                f"mode is one of {list(MODES)}, encoder one of {list(ENCODERS)}, class_weight 'balanced' or None, corruptions among "
                f"{list(CORRUPTIONS)}, text_layers 1-6, epochs >= 0 or None (auto), batch_turns >= 1, patience >= 1", "use the defaults"))

    # -- training --------------------------------------------------------------------
    def fit(self, dialogues: list[Dialogue], *, valid: list[Dialogue] | None = None, progress: Progress | None = None) -> "LabelModel":
        """Train on ``dialogues``; with ``valid`` (labelled dialogues not trained on) keep the weights
        of the evaluation with the best mean macro-F1 there, and stop once ``patience`` evaluations
        bring no gain."""
        self._check_params()
        if not dialogues or not any(e.labels for d in dialogues for e in d.exchanges):
            raise InvalidInputError(explain(f"{len(dialogues)} dialogues", "training needs dialogues with at least one labelled turn",
                                            "label turns (docs/dialogue-format.md) or build weak labels from a store"))
        dp = check_dp(self.dp_epsilon, self.dp_delta, len({d.user or d.dialogue_id for d in dialogues}))
        rng = self._start(dialogues)
        say = progress or no_progress
        started = time.perf_counter()
        try:
            self.vocab_ = Vocab.fit(dialogues)
        except ValueError as exc:
            raise InvalidInputError(str(exc)) from exc
        has_slots = any("slots" in e.labels for d in dialogues for e in d.exchanges)
        encoder = self.encoder if self.encoder != "auto" else ("finetune" if has_slots else "frozen")
        if encoder == "frozen" and has_slots:
            raise InvalidInputError(explain("encoder='frozen'", "cannot learn slot tagging (it needs the tokens)",
                                            "use encoder='finetune' (or 'auto'), or drop the slot labels"))
        self.tokenizer_ = load_tokenizer()
        v = self.vocab_
        self.net_config_ = NetConfig(self.text_layers, self.d_model, self.dialogue_layers, context=self.context, causal=self.mode == "online",
                                     encoder=encoder, categories=tuple(len(x) for x in v.categories.values()), n_intents=max(len(v.intents), 1),
                                     n_tags=len(v.tags) if encoder == "finetune" else 1, n_satisfaction=len(v.satisfaction),
                                     n_dialogue_labels=len(v.dialogue_labels))
        self.net_ = build_net(self.net_config_, pretrained=True)
        self.class_weights_ = class_weights(dialogues, v) if self.class_weight == "balanced" else {}
        self.history_ = {"pretrain": [], "finetune": [], "valid": []}
        self.best_step_ = None
        with ExitStack() as files:  # the frozen encoder's vector files go away with the run

            def cached(ds, **kw):
                return files.enter_context(VectorCache(ds, self.mode, self._sentence_encoder(), **kw)) if encoder == "frozen" else None

            train = Feed(dialogues, cached(dialogues, progress=say))
            held = Feed(valid, cached(valid)) if valid else None
            if dp is not None:  # no pretraining and no checkpoint choice: every use of the data goes through DP-SGD
                self._run_private(train, dp, rng, say)
            else:
                if self.pretrain_epochs and self.corruptions:
                    self._run(train, None, self.pretrain_epochs, rng, pretrain=True, say=say)
                self._run(train, held, self.epochs, rng, pretrain=False, say=say)
        self.net_.eval()
        self.train_seconds_ = round(time.perf_counter() - started, 1)
        self.n_dialogues_ = len(dialogues)
        return self

    def _run(self, feed: "Feed", held: "Feed | None", epochs: int | None, rng: random.Random, *, pretrain: bool, say) -> None:
        import torch

        body = [p for n, p in self.net_.named_parameters() if n.startswith("text.")]
        rest = [p for n, p in self.net_.named_parameters() if not n.startswith("text.")]
        head_lr = self.head_lr if self.head_lr is not None else HEAD_LR[self.net_config_.encoder]
        groups = ([{"params": body, "lr": self.lr}] if body else []) + [{"params": rest, "lr": head_lr}]
        opt = torch.optim.AdamW(groups, weight_decay=0.01)
        per_epoch = len(plan_batches(feed.lengths, self.batch_turns, None))
        epochs, every = training_schedule(per_epoch, self.net_config_.encoder, epochs)
        steps = max(1, epochs * per_epoch)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: min(1.0, (k + 1) / max(1, steps // 10)) * max(0.0, 1 - k / steps))
        stage = "pretrain" if pretrain else "finetune"
        if not pretrain:
            self.schedule_ = {"epochs": epochs, "steps_per_epoch": per_epoch, "evaluate_every": every}
        weights = {t: torch.tensor(w, dtype=torch.float32) for t, w in self.class_weights_.items()}
        best, best_state, stale, step, stop = -1.0, None, 0, 0, False
        for _ in range(epochs):
            self.net_.train()
            for idx in plan_batches(feed.lengths, self.batch_turns, rng):
                step += 1
                batch = drop_feedback(self._encode(feed, idx), rng, self.feedback_dropout)
                if pretrain:
                    batch = corrupt(batch, self.corruptions, rng)
                t = collate(batch, self.tokenizer_.pad_token_id)
                out = self.net_(t)
                loss = _pretrain_loss(out, t) if pretrain else _task_loss(out, t, weights)
                if loss is not None:
                    opt.zero_grad()
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(self.net_.parameters(), 1.0)
                    opt.step()
                    self.history_[stage].append(round(loss.item(), 4))
                sched.step()
                say(stage, step, steps)
                if held is None or pretrain or not (step % every == 0 or step == steps):
                    continue
                score = self._score(held)
                self.history_["valid"].append({"step": step, "mean_macro_f1": round(score, 4)})
                if score > best:
                    best, stale = score, 0
                    best_state = {k: x.detach().clone() for k, x in self.net_.state_dict().items()}
                    self.best_step_ = step
                else:
                    stale += 1
                stop = stale >= self.patience
                if stop:
                    break
            if stop:
                break
        if best_state is not None:
            self.net_.load_state_dict(best_state)

    def _run_private(self, feed: "Feed", dp: tuple[float, float], rng: random.Random, say) -> None:
        """User-level DP-SGD (models.private): each step samples users; a sampled user's mean gradient
        over up to ``dp_dialogues_per_user`` of their dialogues is clipped as one, user by user (the
        dialogue Transformer's rows are whole dialogues); as many dialogue visits as the plain
        schedule; the spent budget goes to ``privacy_``."""
        import torch

        users = [d.user or d.dialogue_id for d in feed.dialogues]
        n_users = len(set(users))
        per_epoch = len(plan_batches(feed.lengths, self.batch_turns, None))
        epochs, _ = training_schedule(per_epoch, self.net_config_.encoder, self.epochs)
        per_step, k = min(n_users, 256), self.dp_dialogues_per_user
        settings = DpSettings(*dp, users_per_step=per_step, epochs=user_passes(users, k, epochs),  # as many dialogue visits as the plain run
                              max_grad_norm=self.dp_max_grad_norm, clipping="microbatch", examples_per_user=k)
        head_lr = self.head_lr if self.head_lr is not None else HEAD_LR[self.net_config_.encoder]
        groups = [{"params": [p for n, p in self.net_.named_parameters() if n.startswith("text.")], "lr": self.lr},
                  {"params": [p for n, p in self.net_.named_parameters() if not n.startswith("text.")], "lr": 10 * head_lr}]
        opt = torch.optim.AdamW([g for g in groups if g["params"]], weight_decay=0.01)
        private = PrivateSGD(self.net_, opt, users, settings, seed=self.random_state)
        weights = {t: torch.tensor(w, dtype=torch.float32) for t, w in self.class_weights_.items()}

        def loss_of(ix):
            batch = drop_feedback(self._encode(feed, [int(i) for i in ix]), rng, self.feedback_dropout)
            t = collate(batch, self.tokenizer_.pad_token_id)
            return _task_loss(self.net_(t), t, weights)

        self.net_.train()
        private.make_private(loss_of)
        self.schedule_ = {"epochs": epochs, "private_steps": private.steps, "users_per_step": per_step}
        for step in range(private.steps):
            self.history_["finetune"].append(round(private.step(loss_of), 4))
            say("private", step + 1, private.steps)
        self.privacy_ = private.spent

    def _score(self, held: "Feed") -> float:
        """Mean macro-F1 over the turn-level tasks the validation dialogues label (the checkpoint
        criterion; the dialogue label counts only where no turn is labelled: one per dialogue is
        too few to choose on)."""
        from .evaluate import evaluate_predictions, reference_targets

        m = evaluate_predictions(self._predict_feed(held), reference_targets(held.dialogues), curves=False)
        scores = {t: x["macro_f1"] for t, x in m.items() if isinstance(x, dict) and "macro_f1" in x and t != "goal_intent"}
        turn = [v for t, v in scores.items() if t != "dialogue_label"]
        chosen = turn or list(scores.values())
        return sum(chosen) / len(chosen) if chosen else 0.0

    def _encode(self, feed: "Feed", idx: list[int]):
        dias = [feed.dialogues[i] for i in idx]
        vectors = None
        if self.net_config_.encoder == "frozen":
            vectors = feed.cache.get(idx) if feed.cache is not None else sentence_vectors(self._sentence_encoder(), dias, self.mode)
        return encode_dialogues(dias, self.tokenizer_, self.vocab_, mode=self.mode, vectors=vectors)

    def _sentence_encoder(self) -> SentenceEncoder:
        """The frozen MiniLM sentence encoder (loaded once per model object)."""
        if getattr(self, "_sentences", None) is None:
            self._sentences = SentenceEncoder(threads=self.threads)
        return self._sentences

    # -- inference -------------------------------------------------------------------
    def predict(self, dialogues: list[Dialogue]) -> list[list[dict]]:
        """Per dialogue, per exchange: each task's prediction and confidence (``None`` where the
        task has no label space); ``dialogue_label`` sits on the first exchange. In ``online`` mode
        turn t's labels depend on turns up to t only."""
        self._check_fitted()
        self._threads()
        return self._predict_feed(Feed(dialogues, None))

    def _predict_feed(self, feed: "Feed") -> list[list[dict]]:
        import torch

        was_training = self.net_.training
        self.net_.eval()
        out: list[list[dict]] = [None] * len(feed.dialogues)  # type: ignore[list-item]
        with torch.inference_mode():
            for idx in plan_batches(feed.lengths, 4 * self.batch_turns, None):
                batch = self._encode(feed, idx)
                r = self.net_(collate(batch, self.tokenizer_.pad_token_id))
                for i, rows in zip(idx, self._rows(r, batch, [feed.dialogues[i] for i in idx])):
                    out[i] = rows
        self.net_.train(was_training)
        return out

    def _rows(self, r: dict, batch, dias) -> list[list[dict]]:
        import torch
        from rapidfuzz import fuzz, process

        v = self.vocab_
        p_def, p_gs, p_same = (torch.sigmoid(r[k]).numpy() for k in ("defect", "goal_success", "same_goal"))
        p_int, p_sat, p_dl = (torch.softmax(r[k], -1).numpy() for k in ("intent", "satisfaction", "dialogue_label"))
        p_tag = torch.softmax(r["slots"], -1).numpy() if r["slots"] is not None else None
        tagging = p_tag is not None and len(v.tags) > 1
        out, k = [], 0
        for n, (enc, dia) in enumerate(zip(batch, dias)):
            rows = []
            for t, (e, ex) in enumerate(zip(enc, dia.exchanges)):
                slots, tags = None, []
                if tagging:
                    words = ex.user.split()
                    word_p = {w: p_tag[k, j] for j, w in enumerate(e.word_of_token) if w >= 0}
                    tags = [(v.tags[int(word_p[w].argmax())], float(word_p[w].max())) if w in word_p else ("O", 1.0) for w in range(len(words))]
                    slots = []
                    for name, a, z in _spans([t_ for t_, _ in tags]):
                        span = " ".join(words[a:z])
                        known = v.slot_values.get(name) or []
                        m = process.extractOne(span, known, scorer=fuzz.ratio, score_cutoff=SLOT_VALUE_MIN) if known else None
                        slots.append({"name": name, "value": m[0] if m else span, "heard": span, "confidence": round(min(c for _, c in tags[a:z]), 4)})
                row = {"defect": float(p_def[k]), "goal_success": float(p_gs[k]),
                       "same_goal": float(p_same[k]) if t > 0 else None,
                       "intent": (v.intents[int(p_int[k].argmax())], float(p_int[k].max())) if v.intents else None,
                       "slots": slots, "slots_confidence": float(min((c for _, c in tags), default=1.0)) if tagging else None,
                       "satisfaction": (v.satisfaction[int(p_sat[k].argmax())], float(p_sat[k].max())) if v.satisfaction else None}
                if v.satisfaction:
                    row["satisfaction_probabilities"] = {str(c): round(float(p), 4) for c, p in zip(v.satisfaction, p_sat[k])}
                if t == 0:
                    row["dialogue_label"] = ((v.dialogue_labels[int(p_dl[n].argmax())], float(p_dl[n].max())) if v.dialogue_labels else None)
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

    @classmethod
    def _upgrade(cls, directory: Path) -> dict | None:
        """Label models saved at format 2 (offline, fine-tuned encoder, batches of dialogues) load as they were trained."""
        old = read_older_config(directory, component=cls.component, format_version=2)
        if old is None:
            return None
        params = dict(old["params"])
        params["batch_turns"] = 4 * params.pop("batch_size", 32)
        params.update(mode="offline", encoder="finetune")
        learned = dict(old.get("learned") or {})
        learned["net"] = {**learned["net"], "causal": False, "encoder": "finetune"}
        return {**old, "format_version": cls.format_version, "params": params, "learned": learned}

    def _learned(self) -> dict:
        return {"net": self.net_config_.to_dict(), "vocab": self.vocab_.to_dict(), "train_seconds": self.train_seconds_,
                "n_dialogues": self.n_dialogues_, "history": self.history_, "calibration": getattr(self, "calibration_", None),
                "class_weights": self.class_weights_, "schedule": getattr(self, "schedule_", None), "best_step": getattr(self, "best_step_", None)}

    def _save_weights(self, directory: Path) -> None:
        save_module(directory, self.net_, self.tokenizer_)

    def _restore(self, directory: Path, learned: dict) -> None:
        net = learned["net"]
        self.net_config_ = NetConfig(**{**net, "categories": tuple(net["categories"])})
        self.vocab_ = Vocab(**learned["vocab"])
        self.train_seconds_, self.n_dialogues_, self.history_ = learned["train_seconds"], learned["n_dialogues"], learned["history"]
        self.calibration_ = learned.get("calibration")
        self.class_weights_ = learned.get("class_weights") or {}
        self.schedule_, self.best_step_ = learned.get("schedule"), learned.get("best_step")
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


def _ce(logits, y, weight=None):
    import torch

    if logits is None or not (y != IGNORE).any():
        return None
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), weight=weight, ignore_index=IGNORE)


def _pretrain_loss(out: dict, t: dict):
    return _bce(out["corrupted"], t["y_corrupted"])


def _task_loss(out: dict, t: dict, weights: dict | None = None):
    w = weights or {}
    parts = [_bce(out["defect"], t["y_defect"]), _bce(out["goal_success"], t["y_goal_success"]), _bce(out["same_goal"], t["y_same_goal"]),
             _ce(out["intent"], t["y_intent"]), _ce(out["slots"], t["y_slots"]), _ce(out["satisfaction"], t["y_satisfaction"], w.get("satisfaction")),
             _ce(out["dialogue_label"], t["y_dialogue_label"], w.get("dialogue_label"))]
    parts = [p for p in parts if p is not None]
    return sum(parts) if parts else None
