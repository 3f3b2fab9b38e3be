"""The learner: MAML on navigation tasks (:class:`NavigationMAML`), trained by mtlcode's one loop
(:func:`meta_train_navigation`) and evaluated after 0, 1, ... adaptation steps (:func:`evaluate_navigation`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.func import vmap

from mtlcode.learners.base import Learner
from mtlcode.learners.rl.environment import GaussianPolicy, PointNavigation, rollout
from mtlcode.learners.rl.policy_gradient import _detached, _task_loss, adapt, advantages
from mtlcode.training import History, meta_train


@dataclass
class NavigationTasks:
    """A meta-batch of navigation tasks: their goals ``[tasks, 2]``, and the generator that draws
    their episodes' action noise (sampling trajectories is part of the task in RL)."""

    goals: Tensor
    generator: torch.Generator | None = None

    @classmethod
    def sample(cls, num_tasks: int, generator: torch.Generator | None = None) -> NavigationTasks:
        """``num_tasks`` goals from :meth:`PointNavigation.sample_goals`; episodes drawn with ``generator``."""
        return cls(PointNavigation.sample_goals(num_tasks, generator), generator)

    def to(self, device: torch.device | str) -> NavigationTasks:
        return NavigationTasks(self.goals.to(device), self.generator)

    def __len__(self) -> int:
        return self.goals.shape[0]


class NavigationMAML(Learner):
    """MAML for 2D navigation: one policy-gradient step per task inside, Adam outside.

    Each meta-batch samples ``episodes`` episodes per goal with the current policy, adapts with
    one policy-gradient step (:func:`adapt`), samples as many episodes with the adapted policies,
    and back-propagates their mean surrogate loss through the adaptation. Its statistics are the
    ``loss``, the mean return after adaptation (``metric``) and before it (``return_before``).
    ``inner_lr=0`` skips adaptation: plain policy gradient on the pooled goals, which trains one
    policy for all of them (the MAML paper's "pretrained" baseline); a step then samples once.
    """

    def __init__(self, policy: GaussianPolicy, inner_lr: float, *, episodes: int = 20, horizon: int = 100,
                 gamma: float = 0.99, first_order: bool = False) -> None:
        if isinstance(inner_lr, bool) or not isinstance(inner_lr, (int, float)) or not inner_lr >= 0:
            raise ValueError(f"inner_lr must be a number >= 0, got {inner_lr!r}")
        for name, value in (("episodes", episodes), ("horizon", horizon)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        self.model = policy
        self.inner_lr = float(inner_lr)
        self.episodes, self.horizon, self.gamma, self.first_order = episodes, horizon, gamma, bool(first_order)

    def check(self, batch: NavigationTasks) -> None:
        if not isinstance(batch, NavigationTasks):
            raise TypeError(f"NavigationMAML needs NavigationTasks, got {type(batch).__name__}")
        device = next(self.model.parameters()).device
        if batch.goals.device != device:
            raise ValueError(f"the goals are on {batch.goals.device} but the policy on {device}: use batch.to(device)")

    def meta_backward(self, batch: NavigationTasks) -> dict[str, Tensor]:
        self.check(batch)
        policy = self.model
        env = PointNavigation(batch.goals, horizon=self.horizon)
        params = dict(policy.named_parameters())
        before = rollout(policy, env, self.episodes, _detached(params), batch.generator)
        if self.inner_lr > 0:
            adapted = adapt(policy, params, before, self.inner_lr, self.gamma, self.first_order)
            after = rollout(policy, env, self.episodes, _detached(adapted), batch.generator, per_task=True)
            in_dims: tuple[int | None, ...] = (0, 0, 0, 0)
        else:
            adapted, after, in_dims = params, before, (None, 0, 0, 0)
        losses = vmap(lambda p, o, a, v: _task_loss(policy, p, o, a, v), in_dims=in_dims)(
            adapted, after.observations, after.actions, advantages(after, self.gamma))
        losses.mean().backward()
        return {"loss": losses.detach(), "metric": after.returns().mean(1),
                "return_before": before.returns().mean(1)}

    def evaluate_batch(self, batch: NavigationTasks, steps: int | None = None) -> tuple[Tensor, Tensor]:
        """Per-task mean return before adaptation and after ``steps`` (default 1) steps."""
        self.check(batch)
        returns = _returns_per_step(self.model, batch, self.episodes, self.horizon, self.inner_lr,
                                    1 if steps is None else steps, self.gamma)
        return returns[0], returns[-1]


def _returns_per_step(policy: nn.Module, batch: NavigationTasks, episodes: int, horizon: int, inner_lr: float,
                      steps: int, gamma: float) -> list[Tensor]:
    env = PointNavigation(batch.goals, horizon=horizon)
    params = _detached(dict(policy.named_parameters()))
    per_task, task_returns = False, []
    for k in range(steps + 1):
        trajectories = rollout(policy, env, episodes, params, batch.generator, per_task=per_task)
        task_returns.append(trajectories.returns().mean(1))
        if k < steps:
            params = _detached(adapt(policy, params, trajectories, inner_lr, gamma, first_order=True,
                                     per_task=per_task))
            per_task = True
    return task_returns


def meta_train_navigation(
    policy: GaussianPolicy,
    iterations: int,
    meta_batch: int = 20,
    episodes: int = 20,
    horizon: int = 100,
    inner_lr: float = 0.1,
    meta_lr: float = 1e-3,
    gamma: float = 0.99,
    first_order: bool = False,
    seed: int = 0,
    *,
    checkpoint: str | os.PathLike[str] | None = None,
    progress: bool = False,
) -> History:
    """Meta-train ``policy`` with :class:`NavigationMAML` in :func:`mtlcode.meta_train`; the history.

    The history holds ``step``, ``loss``, and the mean undiscounted episode return before
    (``return_before``) and after (``return_after``, also ``metric``) adaptation. ``checkpoint``
    makes the run resumable, as for every learner.
    """
    learner = NavigationMAML(policy, inner_lr, episodes=episodes, horizon=horizon, gamma=gamma,
                             first_order=first_order)
    history = meta_train(learner, lambda generator: NavigationTasks.sample(meta_batch, generator), iterations,
                         meta_lr, seed=seed, checkpoint=checkpoint, progress=progress)
    return {"step": history["step"], "loss": history["loss"], "return_before": history["return_before"],
            "return_after": history["metric"]}


@dataclass(frozen=True)
class NavigationEvaluation:
    """Mean episode return on test goals after 0, 1, ... adaptation steps.

    ``task_returns[k]`` holds each task's mean return after ``k`` steps (a ``[tasks]`` tensor).
    """

    task_returns: list[Tensor]

    @property
    def returns(self) -> list[float]:
        return [r.mean().item() for r in self.task_returns]

    @property
    def before(self) -> float:
        return self.returns[0]

    @property
    def after(self) -> float:
        return self.returns[-1]


def evaluate_navigation(
    policy: GaussianPolicy,
    goals: Tensor | int = 40,
    episodes: int = 20,
    horizon: int = 100,
    inner_lr: float = 0.1,
    steps: int = 1,
    gamma: float = 0.99,
    seed: int = 0,
) -> NavigationEvaluation:
    """Adapt to test goals with ``steps`` policy-gradient steps and measure the return after each.

    ``goals`` is a ``[tasks, 2]`` tensor or a number of goals to draw (with ``seed``). Each step
    samples ``episodes`` fresh episodes with the current per-task policy, as in the MAML paper's
    evaluation; the returns are those of these samples.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be an int >= 0, got {steps!r}")
    device = next(policy.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    if isinstance(goals, int):
        goals = PointNavigation.sample_goals(goals, generator)
    batch = NavigationTasks(goals.to(device), generator)
    returns = _returns_per_step(policy, batch, episodes, horizon, inner_lr, steps, gamma)
    return NavigationEvaluation([r.cpu() for r in returns])
