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

__all__ = ["DpSettings", "check_dp", "UserSampler", "PrivateSGD", "private_median", "CLIP_SHARE"]

CLIP_SHARE = 0.02  # share of epsilon spent on choosing the clipping norm
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
    # "microbatch": one backward per sampled user (any torch model, e.g. one whose rows are whole dialogues)


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

        params = [p for p in self.module.parameters() if p.requires_grad]
        take = self.rng.permutation(self.sampler.n_users)[:512]
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
        if s.clipping == "microbatch":
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
        ix = self.sampler.batch()
        self.accountant.step(noise_multiplier=self.noise_multiplier, sample_rate=self.sampler.q)
        self.done += 1
        if len(ix) == 0:  # an empty Poisson batch releases nothing; the step still counts
            return 0.0
        if self.settings.clipping == "microbatch":
            return self._microbatch_step(ix, per_example_loss, started)
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

    def _microbatch_step(self, ix: np.ndarray, per_example_loss, started: float) -> float:
        """Each sampled user's gradient on its own, clipped to C, summed, Gaussian noise of standard
        deviation sigma*C added, divided by the expected batch (what Opacus' DPOptimizer does)."""
        import torch

        params = [p for p in self.module.parameters() if p.requires_grad]
        total = [torch.zeros_like(p) for p in params]
        losses = []
        for i in ix:
            loss = per_example_loss(np.array([i]))
            if loss is None:
                continue
            loss = loss.sum()
            grads = torch.autograd.grad(loss, params, allow_unused=True)
            norm = torch.sqrt(sum((g.detach() ** 2).sum() for g in grads if g is not None))
            factor = min(1.0, self.max_grad_norm / (float(norm) + 1e-6))
            for t, g in zip(total, grads):
                if g is not None:
                    t.add_(g.detach(), alpha=factor)
            losses.append(float(loss.detach()))
        std = self.noise_multiplier * self.max_grad_norm
        for p, t in zip(params, total):
            p.grad = (t + torch.normal(0.0, std, size=t.shape)) / self.expected
        self.optimizer.step()
        self.optimizer.zero_grad()
        self.seconds += time.perf_counter() - started
        return sum(losses) / max(len(losses), 1)

    @property
    def spent(self) -> dict:
        """What the training spent (recorded in the model directory as ``privacy``)."""
        eps = self.accountant.get_epsilon(delta=self.settings.delta) if self.done else 0.0
        return {"unit": "user", "epsilon": round(eps + self.clip_epsilon, 4), "delta": self.settings.delta,
                "epsilon_target": self.settings.epsilon, "epsilon_training": round(eps, 4), "epsilon_clip_choice": round(self.clip_epsilon, 4),
                "accountant": self.settings.accountant, "noise_multiplier": round(float(self.noise_multiplier), 4),
                "sample_rate": round(self.sampler.q, 6), "users": self.sampler.n_users, "steps": self.done,
                "max_grad_norm": round(float(self.max_grad_norm), 6), "clipping": self.settings.clipping,
                "mechanism": "DP-SGD (Opacus), Poisson user sampling, one example per sampled user",
                "settings": {k: v for k, v in asdict(self.settings).items() if k not in ("epsilon", "delta")}}
