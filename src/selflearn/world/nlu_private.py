"""The world NLU's retraining on users' sentences (generated labels) with user-level DP-SGD
(models.private): Opacus ghost clipping over MiniLM's top layers and the intent and slot heads, the
layers below frozen; each step samples users and one sentence of each."""

from __future__ import annotations

import numpy as np

from ..models.private import DpSettings, PrivateSGD, check_dp

__all__ = ["refit_private"]


def refit_private(nlu, examples: list[tuple], users: list[str], lr: float, say) -> dict:
    """Train ``nlu.module_`` on ``examples`` ((words, intent, bio) rows, one user each) under
    ``nlu.dp_epsilon``/``dp_delta``; returns what was spent."""
    import torch

    dp = check_dp(nlu.dp_epsilon, nlu.dp_delta, len(set(users)))
    module = nlu.module_
    for p in module.parameters():
        p.requires_grad = False
    layers = module.encoder.encoder.layer
    trained = [*layers[len(layers) - nlu.dp_train_layers:].parameters(), *module.intent_head.parameters(), *module.slot_head.parameters()]
    for p in trained:
        p.requires_grad = True
    n_users = len(set(users))
    settings = DpSettings(*dp, users_per_step=min(n_users, 256), epochs=nlu.dp_epochs)
    opt = torch.optim.AdamW(trained, lr=lr, weight_decay=0.01)
    private = PrivateSGD(module, opt, users, settings, seed=nlu.random_state)
    n_tags = len(nlu.tags_)

    def rows(model):
        def loss(ix: np.ndarray):
            batch = [examples[i] for i in ix]
            enc, labels = nlu._batch_targets(batch)
            intent_logits, slot_logits = model(enc["input_ids"], enc["attention_mask"])
            intent = torch.nn.functional.cross_entropy(intent_logits, torch.tensor([y for _, y, _ in batch]), reduction="none")
            slot = torch.nn.functional.cross_entropy(slot_logits.reshape(-1, n_tags), labels.reshape(-1), ignore_index=-100, reduction="none")
            slot = slot.reshape(labels.shape).sum(1) / (labels != -100).sum(1).clamp(min=1)
            return intent + slot
        return loss

    module.train()
    model = private.make_private(rows(module))
    for step in range(private.steps):
        private.step(rows(model))
        say("private", step + 1, private.steps)
    for p in module.parameters():
        p.requires_grad = True
    module.eval()
    return private.spent
