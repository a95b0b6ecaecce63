"""User-level differentially private training (DP-SGD with Opacus), written once for every model.

The unit of privacy is the USER. Each step samples users, not rows: every user joins the step
independently with probability ``q`` (Poisson sampling) and, if sampled, contributes exactly one
of their examples, drawn at random. A user then changes at most one row of any step, so clipping
each row's gradient to ``C`` (Opacus' per-sample clipping, with ghost clipping where the layers
allow it) bounds the user's influence on the step to ``C``, and the accountant for the subsampled
Gaussian mechanism at rate ``q`` over the steps gives a user-level (epsilon, delta). A user with
10,000 turns and a user with 3 count the same.

Efficient mode (in the spirit of eDP-SGD): the models train small heads over a frozen MiniLM
backbone (its sentence vectors computed once), large logical batches (hundreds of users a step),
and the clipping norm chosen automatically: a differentially private median of per-user gradient
norms at the start (the exponential mechanism over a log grid, spending 2% of epsilon; the rest
goes to the training, and the two add up).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import numpy as np

from ..errors import InvalidInputError, explain

__all__ = ["DpSettings", "RowLoss", "check_dp", "UserSampler", "PrivateSGD", "private_median", "user_passes", "CLIP_SHARE"]

CLIP_SHARE = 0.02  # share of epsilon spent on choosing the clipping norm
_MECHANISM = {"ghost": "DP-SGD (Opacus ghost clipping), Poisson user sampling, one example per sampled user",
              "per-sample": "DP-SGD (Opacus), Poisson user sampling, one example per sampled user",
              "microbatch": "DP-SGD, Poisson user sampling, each sampled user's mean gradient over up to {k} examples clipped",
              "user": "DP-SGD, Poisson user sampling, each sampled user's mean gradient over up to {k} examples clipped (torch.func)"}
_GRID = np.geomspace(1e-3, 1e3, 61)  # candidate clipping norms


def check_dp(epsilon: float | None, delta: float | None, n_users: int) -> tuple[float, float] | None:
    """Validated (epsilon, delta), or None when ``epsilon`` is None (no DP). ``delta`` defaults to
    1 / (10 n): well below 1/n, the value at which one user's data could be released outright."""
    if epsilon is None:
        if delta is not None:
            raise InvalidInputError(explain(f"dp_delta={delta}", "needs dp_epsilon", "pass --dp-epsilon too, or drop --dp-delta"))
        return None
    if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float)) or not math.isfinite(epsilon) or epsilon <= 0:
        raise InvalidInputError(explain(f"dp_epsilon={epsilon!r}", "must be a number > 0 (smaller is more private)",
                                        "use e.g. 8 (a common industry budget), 3 or 1; leave it unset to train without DP"))
    if n_users < 2:
        raise InvalidInputError(explain(f"{n_users} user(s)", "differentially private training needs data from at least 2 users",
                                        "train on more users' logs, or without --dp-epsilon"))
    if delta is None:
        delta = 1.0 / (10 * n_users)
    if not isinstance(delta, (int, float)) or not 0 < delta < 1.0 / n_users:
        raise InvalidInputError(explain(f"dp_delta={delta!r}", f"must be in (0, 1/n) = (0, {1.0 / n_users:.3g}) for n = {n_users} users",
                                        f"leave it unset (1/(10 n) = {1.0 / (10 * n_users):.3g}) or pass a smaller value"))
    return float(epsilon), float(delta)


@dataclass
class DpSettings:
    epsilon: float
    delta: float
    users_per_step: int = 256  # expected users in a step (the logical batch)
    epochs: float = 10.0  # expected passes over the users
    max_grad_norm: float | None = None  # None: chosen privately (the median per-user gradient norm)
    accountant: str = "prv"  # Opacus' PRV accountant (or "rdp")
    clipping: str = "ghost"  # "ghost": Opacus ghost clipping (one batched pass; layers Opacus supports);
    # "microbatch": one backward per sampled user (any torch model, e.g. one whose rows are whole dialogues);
    # "user": every sampled user's mean gradient over up to ``examples_per_user`` of their examples, all
    # users at once (torch.func vmap), clipped as one
    examples_per_user: int = 1  # examples a sampled user contributes to a step ("user" and "microbatch")


@dataclass
class RowLoss:
    """A loss over rows, in the form the "user" clipping mode vectorises: ``tensors(ix)`` gathers the
    rows' tensors (first dimension ``len(ix)``); ``loss(call, *tensors)`` returns their per-example
    losses, running the model as ``call(*inputs)``."""

    tensors: Callable[[np.ndarray], tuple]
    loss: Callable[..., "object"]

    def __call__(self, module) -> Callable[[np.ndarray], "object"]:
        """The per-example loss of rows ``ix`` under ``module`` (for the other clipping modes)."""
        return lambda ix: self.loss(module, *self.tensors(ix))


class UserSampler:
    """Poisson sampling of users, one random example of each sampled user per step."""

    def __init__(self, users: Sequence[str], users_per_step: int, rng: np.random.Generator):
        groups: dict[str, list[int]] = {}
        for i, u in enumerate(users):
            groups.setdefault(u, []).append(i)
        self.groups = [np.asarray(g) for g in groups.values()]
        self.n_users = len(self.groups)
        self.q = min(1.0, users_per_step / self.n_users)
        self.rng = rng

    def batch(self) -> np.ndarray:
        chosen = np.flatnonzero(self.rng.random(self.n_users) < self.q)
        return np.array([self.groups[u][self.rng.integers(len(self.groups[u]))] for u in chosen], np.int64)

    def user_batch(self, k: int, chosen: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The sampled users' rows, ``k`` per user: (rows (users, k), weights (users, k)). A user with
        fewer than ``k`` examples repeats one at weight 0; each user's weights sum to 1 (their mean)."""
        if chosen is None:
            chosen = np.flatnonzero(self.rng.random(self.n_users) < self.q)
        rows = np.zeros((len(chosen), k), np.int64)
        weights = np.zeros((len(chosen), k), np.float32)
        for r, u in enumerate(chosen):
            g = self.groups[u]
            take = g[self.rng.permutation(len(g))[:k]] if len(g) > k else g
            rows[r, : len(take)], rows[r, len(take):] = take, take[0]
            weights[r, : len(take)] = 1.0 / len(take)
        return rows, weights


def user_passes(users: Sequence[str], k: int, example_passes: float) -> float:
    """Passes over the users (``DpSettings.epochs``) that visit as many examples as
    ``example_passes`` passes over the rows, when each sampled user gives up to ``k`` of theirs."""
    per_user = np.unique(np.asarray(users), return_counts=True)[1]
    return example_passes * len(users) / float(np.minimum(per_user, k).sum())


def private_median(norms: np.ndarray, epsilon: float, rng: np.random.Generator) -> float:
    """The exponential mechanism's median of ``norms`` (one per user) over a log-spaced grid:
    utility -|#(norms <= c) - n/2|, sensitivity 1, so epsilon-DP."""
    below = np.searchsorted(np.sort(norms), _GRID, side="right")
    utility = -np.abs(below - len(norms) / 2)
    logits = epsilon * utility / 2
    p = np.exp(logits - logits.max())
    return float(rng.choice(_GRID, p=p / p.sum()))


class PrivateSGD:
    """DP-SGD over ``module`` with Opacus: ``step(loss_fn(ix))`` per sampled batch; ``spent``
    says what was spent. ``loss_fn(ix)`` returns the per-example losses (reduction none) of rows ``ix``."""

    def __init__(self, module, optimizer, users: Sequence[str], settings: DpSettings, *, seed: int):
        self.settings = settings
        self.rng = np.random.default_rng(seed)
        self.sampler = UserSampler(users, settings.users_per_step, self.rng)
        self.steps = max(1, int(round(settings.epochs / self.sampler.q)))
        self.module, self.optimizer = module, optimizer
        self.clip_epsilon = 0.0 if settings.max_grad_norm is not None else CLIP_SHARE * settings.epsilon
        self.train_epsilon = settings.epsilon - self.clip_epsilon
        self.noise_multiplier = None
        self.done = 0
        self.seconds = 0.0

    def choose_clip(self, per_example_loss: Callable[[np.ndarray], "object"]) -> float:
        """The clipping norm: given, or the private median of per-user gradient norms at the start
        (one random example of each of up to 512 sampled users)."""
        if self.settings.max_grad_norm is not None:
            return float(self.settings.max_grad_norm)
        import torch

        take = self.rng.permutation(self.sampler.n_users)[:512]
        if self.settings.clipping == "user":
            rows, weights = self.sampler.user_batch(self.settings.examples_per_user, take)
            return private_median(self._user_grads(per_example_loss, rows, weights)[1], self.clip_epsilon, self.rng)
        params = [p for p in self.module.parameters() if p.requires_grad]
        norms = []
        for u in take:
            g = self.sampler.groups[u]
            i = np.array([g[self.rng.integers(len(g))]])
            loss = per_example_loss(i).sum()
            grads = torch.autograd.grad(loss, params, allow_unused=True)
            norms.append(float(torch.sqrt(sum((x.detach() ** 2).sum() for x in grads if x is not None))))
        return private_median(np.asarray(norms), self.clip_epsilon, self.rng)

    def make_private(self, per_example_loss: Callable[[np.ndarray], "object"]):
        """Wrap the module and optimizer (Opacus); returns the module to call in ``loss_fn``."""
        from opacus.accountants import create_accountant
        from opacus.accountants.utils import get_noise_multiplier

        s = self.settings
        self.max_grad_norm = self.choose_clip(per_example_loss)
        self.noise_multiplier = get_noise_multiplier(target_epsilon=self.train_epsilon, target_delta=s.delta, sample_rate=self.sampler.q,
                                                     steps=self.steps, accountant=s.accountant)
        self.accountant = create_accountant(s.accountant)
        expected = max(1, int(round(self.sampler.q * self.sampler.n_users)))
        self.expected = expected
        if s.clipping in ("microbatch", "user"):
            return self.module
        if s.clipping == "ghost":
            from opacus.grad_sample import GradSampleModuleFastGradientClipping
            from opacus.optimizers import DPOptimizerFastGradientClipping

            self.module = GradSampleModuleFastGradientClipping(self.module, max_grad_norm=self.max_grad_norm, use_ghost_clipping=True,
                                                               loss_reduction="mean")
            self.optimizer = DPOptimizerFastGradientClipping(self.optimizer, noise_multiplier=self.noise_multiplier,
                                                             max_grad_norm=self.max_grad_norm, expected_batch_size=expected, loss_reduction="mean")
        else:  # "per-sample": Opacus hooks
            from opacus import GradSampleModule
            from opacus.optimizers import DPOptimizer

            self.module = GradSampleModule(self.module, loss_reduction="mean")
            self.optimizer = DPOptimizer(self.optimizer, noise_multiplier=self.noise_multiplier, max_grad_norm=self.max_grad_norm,
                                         expected_batch_size=expected, loss_reduction="mean")
        return self.module

    def step(self, per_example_loss: Callable[[np.ndarray], "object"]) -> float:
        """One private step on a fresh Poisson batch of users; returns the batch's mean loss."""
        started = time.perf_counter()
        self.accountant.step(noise_multiplier=self.noise_multiplier, sample_rate=self.sampler.q)
        self.done += 1
        if self.settings.clipping in ("microbatch", "user"):
            rows, weights = self.sampler.user_batch(self.settings.examples_per_user)
            if len(rows) == 0:  # an empty Poisson batch releases nothing; the step still counts
                return 0.0
            if self.settings.clipping == "user":
                return self._user_step(rows, weights, per_example_loss, started)
            return self._microbatch_step(rows, weights, per_example_loss, started)
        ix = self.sampler.batch()
        if len(ix) == 0:
            return 0.0
        self.optimizer.zero_grad()
        losses = per_example_loss(ix)
        if self.settings.clipping == "ghost":
            from opacus.utils.fast_gradient_clipping_utils import DPTensorFastGradientClipping  # noqa: I001

            loss = DPTensorFastGradientClipping(self.module, self.optimizer, losses, "mean")
            loss.backward()
            value = float(losses.mean().detach())
        else:
            loss = losses.mean()
            loss.backward()
            value = float(loss.detach())
        self.optimizer.step()
        self.seconds += time.perf_counter() - started
        return value

    def _microbatch_step(self, rows: np.ndarray, weights: np.ndarray, per_example_loss, started: float) -> float:
        """Each sampled user's gradient on its own (the mean over their rows: ``per_example_loss``
        returns per-row losses, or one scalar that is already their mean), clipped to C, summed,
        Gaussian noise of standard deviation sigma*C added, divided by the expected batch (what
        Opacus' DPOptimizer does)."""
        import torch

        params = [p for p in self.module.parameters() if p.requires_grad]
        total = [torch.zeros_like(p) for p in params]
        losses = []
        for r, w in zip(rows, weights):
            keep = w > 0
            loss = per_example_loss(r[keep])
            if loss is None:
                continue
            loss = (loss * torch.from_numpy(w[keep])).sum()
            grads = torch.autograd.grad(loss, params, allow_unused=True)
            norm = torch.sqrt(sum((g.detach() ** 2).sum() for g in grads if g is not None))
            factor = min(1.0, self.max_grad_norm / (float(norm) + 1e-6))
            for t, g in zip(total, grads):
                if g is not None:
                    t.add_(g.detach(), alpha=factor)
            losses.append(float(loss.detach()))
        self._noisy_update(params, total)
        self.seconds += time.perf_counter() - started
        return sum(losses) / max(len(losses), 1)

    def _user_grads(self, row_loss: "RowLoss", rows: np.ndarray, weights: np.ndarray, chunk: int = 64):
        """Per-user mean gradients (vmap over users of the gradient of their weighted loss), in
        chunks of ``chunk`` users: the clipped sum per parameter (once the clip is chosen), the
        per-user norms and the mean loss."""
        import torch
        from torch.func import functional_call, grad, vmap

        names = [n for n, p in self.module.named_parameters() if p.requires_grad]
        params = {n: p.detach() for n, p in self.module.named_parameters() if p.requires_grad}
        fixed = {n: p.detach() for n, p in self.module.named_parameters() if not p.requires_grad}
        fixed.update(dict(self.module.named_buffers()))

        def user_loss(p, w, *t):
            losses = row_loss.loss(lambda *a: functional_call(self.module, {**p, **fixed}, a), *t)
            value = (losses * w).sum()
            return value, value.detach()

        clip = getattr(self, "max_grad_norm", None)
        total = {n: torch.zeros_like(params[n]) for n in names}
        norms, loss_sum = [], 0.0
        for b in range(0, len(rows), chunk):
            r, w = rows[b : b + chunk], torch.from_numpy(weights[b : b + chunk])
            t = row_loss.tensors(r.reshape(-1))
            t = tuple(x.reshape(len(r), r.shape[1], *x.shape[1:]) for x in t)
            fn = vmap(grad(user_loss, has_aux=True), in_dims=(None, 0) + (0,) * len(t), randomness="different")
            g, values = fn(params, w, *t)
            norm = torch.sqrt(sum((g[n].reshape(len(r), -1) ** 2).sum(1) for n in names))
            norms.append(norm.numpy())
            loss_sum += float(values.sum())
            if clip is not None:
                factor = torch.clamp(clip / (norm + 1e-6), max=1.0)
                for n in names:
                    total[n] += torch.einsum("u,u...->...", factor, g[n])
        return [total[n] for n in names], np.concatenate(norms) if norms else np.zeros(0), loss_sum / max(len(rows), 1)

    def _user_step(self, rows: np.ndarray, weights: np.ndarray, row_loss: "RowLoss", started: float) -> float:
        """All sampled users' mean gradients at once (torch.func), each clipped to C; then as above."""
        total, _, loss = self._user_grads(row_loss, rows, weights)
        self._noisy_update([p for p in self.module.parameters() if p.requires_grad], total)
        self.seconds += time.perf_counter() - started
        return loss

    def _noisy_update(self, params, total) -> None:
        import torch

        std = self.noise_multiplier * self.max_grad_norm
        for p, t in zip(params, total):
            p.grad = (t + torch.normal(0.0, std, size=t.shape)) / self.expected
        self.optimizer.step()
        self.optimizer.zero_grad()

    @property
    def spent(self) -> dict:
        """What the training spent (recorded in the model directory as ``privacy``)."""
        eps = float(self.accountant.get_epsilon(delta=self.settings.delta)) if self.done else 0.0  # a plain float: records are JSON and msgpack
        return {"unit": "user", "epsilon": round(eps + self.clip_epsilon, 4), "delta": self.settings.delta,
                "epsilon_target": self.settings.epsilon, "epsilon_training": round(eps, 4), "epsilon_clip_choice": round(self.clip_epsilon, 4),
                "accountant": self.settings.accountant, "noise_multiplier": round(float(self.noise_multiplier), 4),
                "sample_rate": round(self.sampler.q, 6), "users": self.sampler.n_users, "steps": self.done,
                "max_grad_norm": round(float(self.max_grad_norm), 6), "clipping": self.settings.clipping,
                "mechanism": _MECHANISM[self.settings.clipping].format(k=self.settings.examples_per_user),
                "settings": {k: v for k, v in asdict(self.settings).items() if k not in ("epsilon", "delta")}}
