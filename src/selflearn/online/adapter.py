"""The retrieval encoder's private fine-tune: a low-rank residual adapter over the frozen MiniLM,
trained with user-level DP-SGD (models.private).

``h -> h + (h U) V`` on every token's hidden state (rank ``r``, ``V`` starts at zero: the adapter
starts as the identity). Mean pooling is linear, so the adapter acts on the pooled vector the same
way: the backbone runs ONCE per training text (its mean-pooled vector cached) and each private step
costs only the adapter (2 x 384 x r parameters: little noise to add). Served as part of the
encoder (:class:`AdaptedEncoder` wraps the transformer; the ONNX export includes it).

The loss: each of a user's (failing request, request that worked) pairs against shared negatives
(texts of the global index, an artefact every user's requests are served from, k-anonymous),
softmax over the positive and the negatives. Unlike in-batch negatives, no other user's pair enters
a user's loss, so each user's gradient depends on their own pairs only and clipping it bounds
their influence (the user-level guarantee covers the pairs; the negatives are the shared index's).
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from ..models.private import DpSettings, PrivateSGD, RowLoss, user_passes

__all__ = ["AdaptedEncoder", "fit_adapter"]


def _adapted_class():
    import torch

    class AdaptedEncoder(torch.nn.Module):
        """A transformer whose ``last_hidden_state`` passes through ``h + (h U) V``."""

        def __init__(self, encoder, rank: int, dim: int = 384):
            super().__init__()
            self.encoder = encoder
            self.down = torch.nn.Linear(dim, rank, bias=False)
            self.up = torch.nn.Linear(rank, dim, bias=False)
            torch.nn.init.zeros_(self.up.weight)

        def adapt(self, h):
            return h + self.up(self.down(h))

        def forward(self, *args, **kwargs):
            return SimpleNamespace(last_hidden_state=self.adapt(self.encoder(*args, **kwargs).last_hidden_state))

    return AdaptedEncoder


def AdaptedEncoder(encoder, rank: int):  # noqa: N802 (a class built on first use: torch imports lazily)
    return _adapted_class()(encoder, rank)


def _adapter_loss(scale: float, negatives):
    import torch

    def loss(call, q, p):
        zq = torch.nn.functional.normalize(call(q), dim=-1)
        zp = torch.nn.functional.normalize(call(p), dim=-1)
        zn = torch.nn.functional.normalize(call(negatives), dim=-1)
        logits = scale * torch.cat([(zq * zp).sum(-1, keepdim=True), zq @ zn.T], -1)
        return torch.nn.functional.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long), reduction="none")

    return loss


def fit_adapter(model, pooled_q: np.ndarray, pooled_p: np.ndarray, users: list[str], negatives: np.ndarray, dp: tuple[float, float], *,
                rank: int, epochs: float, scale: float, lr: float, n_negatives: int = 128, seed: int = 0) -> tuple[object, dict, list[float]]:
    """Train an adapter of ``rank`` on cached mean-pooled vectors (queries, positives, shared
    negatives) with user-level DP-SGD; returns (the AdaptedEncoder over ``model``, privacy, losses)."""
    import torch

    torch.manual_seed(seed)
    wrapped = AdaptedEncoder(model, rank)
    for p in wrapped.encoder.parameters():
        p.requires_grad = False
    head = torch.nn.Sequential(wrapped.down, wrapped.up)  # the trained part, sharing the wrapper's weights

    class Residual(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.head = head

        def forward(self, x):
            return x + self.head(x)

    adapter = Residual()
    q, p, neg = (torch.from_numpy(np.asarray(a, np.float32)) for a in (pooled_q, pooled_p, negatives))
    rng = np.random.default_rng(seed)
    n_users = len(set(users))
    k = 8
    settings = DpSettings(*dp, users_per_step=min(n_users, 256), epochs=user_passes(users, k, epochs), clipping="user", examples_per_user=k)
    opt = torch.optim.Adam([x for x in adapter.parameters() if x.requires_grad], lr=lr)
    private = PrivateSGD(adapter, opt, users, settings, seed=seed)

    def rows():
        shared = neg[torch.from_numpy(rng.choice(len(neg), min(n_negatives, len(neg)), replace=False))]
        return RowLoss(lambda ix: (q[torch.from_numpy(ix)], p[torch.from_numpy(ix)]), _adapter_loss(scale, shared))

    private.make_private(rows())
    losses = [private.step(rows()) for _ in range(private.steps)]
    wrapped.eval()
    return wrapped, private.spent, losses
