"""Meta-reinforcement learning with MAML on the 2D navigation task (Finn et al., 2017, section 5.3).

A point agent starts at the origin of the plane and must reach a goal drawn uniformly from
``[-0.5, 0.5]^2``. It observes its position, its action is a velocity clipped to
``[-0.1, 0.1]`` per coordinate, and its reward at every step is minus its distance to the goal.
The goal is the task: the agent never sees it and must infer it from the rewards.

Everything is a tensor shaped ``[tasks, episodes, ...]``: the environment steps all episodes of
all tasks at once, and the policy runs with a different parameter set per task through
``torch.func.vmap`` and ``functional_call``. The pieces:

* :class:`PointNavigation` and :func:`rollout` sample trajectories;
* :class:`GaussianPolicy`: an MLP for the mean action and a learned, state-independent log std;
* :func:`reinforce_loss` (Williams, 1992) with a linear feature baseline (:func:`advantages`);
* :func:`adapt`: one policy-gradient step per task, the MAML inner loop;
* :class:`NavigationMAML`, the learner that :func:`mtlcode.meta_train` trains, like every
  other learner (checkpoints, progress bar and NaN check included), wrapped by
  :func:`meta_train_navigation`; and :func:`evaluate_navigation`.

Sampling actions is not differentiable, so both losses are *surrogates*: ``-mean(log pi(a|s) * A)``
on trajectories whose actions and advantages are constants. The inner step differentiates the
surrogate of trajectories sampled with ``theta``; the outer loss is the surrogate of trajectories
sampled with the adapted ``theta'``, differentiated through ``theta'`` back to ``theta`` (second
order by default). As in the MAML paper, the meta-gradient ignores how ``theta`` changes the
*distribution* of the pre-update trajectories (estimators such as DiCE and ProMP add that term).
The paper's outer optimiser is TRPO; here it is plain Adam on the policy-gradient surrogate.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

from mtlcode.learners.base import Learner
from mtlcode.learners.maml import gradient_step
from mtlcode.models import MLP
from mtlcode.training import History, meta_train

Params = dict[str, Tensor]

__all__ = [
    "GaussianPolicy",
    "NavigationEvaluation",
    "NavigationMAML",
    "NavigationTasks",
    "PointNavigation",
    "Trajectories",
    "adapt",
    "advantages",
    "discounted_returns",
    "evaluate_navigation",
    "linear_baseline",
    "log_prob",
    "meta_train_navigation",
    "reinforce_loss",
    "rollout",
]


# -- the environment ---------------------------------------------------------------------------

class PointNavigation:
    """2D navigation tasks, one goal per task: ``goals`` is ``[tasks, 2]``.

    Stateless and vectorised: :meth:`step` maps positions ``[tasks, episodes, 2]`` and actions
    of the same shape to the next positions and the rewards ``[tasks, episodes]``.
    """

    def __init__(self, goals: Tensor, horizon: int = 100, max_speed: float = 0.1) -> None:
        if goals.dim() != 2 or goals.shape[1] != 2:
            raise ValueError(f"goals must be shaped [tasks, 2], got {tuple(goals.shape)}")
        if not isinstance(horizon, int) or horizon < 1:
            raise ValueError(f"horizon must be an int >= 1, got {horizon!r}")
        if not max_speed > 0:
            raise ValueError(f"max_speed must be positive, got {max_speed}")
        self.goals = goals
        self.horizon = horizon
        self.max_speed = float(max_speed)

    @staticmethod
    def sample_goals(num_tasks: int, generator: torch.Generator | None = None, low: float = -0.5,
                     high: float = 0.5) -> Tensor:
        """``num_tasks`` goals drawn uniformly from the square ``[low, high]^2`` (on the CPU)."""
        return low + (high - low) * torch.rand(num_tasks, 2, generator=generator)

    def __len__(self) -> int:
        return self.goals.shape[0]

    def reset(self, episodes: int) -> Tensor:
        """Start positions: every episode of every task starts at the origin."""
        return self.goals.new_zeros(len(self), episodes, 2)

    def step(self, positions: Tensor, actions: Tensor) -> tuple[Tensor, Tensor]:
        """Move by the clipped actions; the reward is minus the new distance to the task's goal."""
        positions = positions + actions.clamp(-self.max_speed, self.max_speed)
        rewards = -torch.linalg.vector_norm(positions - self.goals[:, None, :], dim=-1)
        return positions, rewards


# -- the policy --------------------------------------------------------------------------------

class GaussianPolicy(nn.Module):
    """``pi(a | s) = Normal(mlp(s), exp(log_std))``: a diagonal Gaussian over actions.

    ``hidden`` gives the sizes of the MLP's hidden layers (the paper uses ``(100, 100)``;
    ``()`` makes the mean linear in the state). ``forward`` returns ``(mean, std)``; call it
    with other parameters through ``torch.func.functional_call``.
    """

    def __init__(self, obs_dim: int = 2, act_dim: int = 2, hidden: Sequence[int] = (100, 100),
                 init_std: float = 1.0) -> None:
        super().__init__()
        if not init_std > 0:
            raise ValueError(f"init_std must be positive, got {init_std}")
        self.mean = MLP([obs_dim, *hidden, act_dim])
        self.log_std = nn.Parameter(torch.full((act_dim,), math.log(init_std)))

    def forward(self, observations: Tensor) -> tuple[Tensor, Tensor]:
        mean = self.mean(observations)
        return mean, self.log_std.exp().expand_as(mean)


def log_prob(policy: nn.Module, params: Params, observations: Tensor, actions: Tensor) -> Tensor:
    """``log pi(a | s)`` under ``params``, summed over action dimensions: shape ``actions.shape[:-1]``."""
    mean, std = functional_call(policy, params, (observations,))
    return torch.distributions.Normal(mean, std).log_prob(actions).sum(-1)


# -- sampling ----------------------------------------------------------------------------------

@dataclass
class Trajectories:
    """Episodes of every task: ``positions`` ``[tasks, episodes, horizon + 1, 2]`` (the start
    included), the sampled (unclipped) ``actions`` and the ``rewards`` ``[tasks, episodes, horizon]``."""

    positions: Tensor
    actions: Tensor
    rewards: Tensor

    @property
    def observations(self) -> Tensor:
        """The states the actions were taken in: every position but the last."""
        return self.positions[..., :-1, :]

    def returns(self) -> Tensor:
        """Undiscounted return of every episode, ``[tasks, episodes]``."""
        return self.rewards.sum(-1)


def rollout(
    policy: nn.Module,
    env: PointNavigation,
    episodes: int,
    params: Params | None = None,
    generator: torch.Generator | None = None,
    deterministic: bool = False,
    per_task: bool = False,
) -> Trajectories:
    """Run ``episodes`` episodes of every task of ``env`` for ``env.horizon`` steps.

    ``params`` are the policy's parameters, shared by all tasks (default: the policy's own), or
    with ``per_task=True`` one set per task stacked on a first dimension (as :func:`adapt`
    returns). Actions are drawn from the Gaussian with noise from ``generator`` (made on the CPU,
    so a seed gives the same episodes on any device), or are the mean with ``deterministic``.
    Nothing here is differentiated: sampling runs under ``torch.no_grad``.
    """
    if not isinstance(episodes, int) or episodes < 1:
        raise ValueError(f"episodes must be an int >= 1, got {episodes!r}")
    params = dict(policy.named_parameters()) if params is None else params
    tasks = len(env)
    if not per_task:
        params = {name: p.expand(tasks, *p.shape) for name, p in params.items()}
    act = vmap(lambda p, obs: functional_call(policy, p, (obs,)))
    position = env.reset(episodes)
    positions, actions, rewards = [position], [], []
    with torch.no_grad():
        for _ in range(env.horizon):
            mean, std = act(params, position)
            action = mean
            if not deterministic:
                noise = torch.randn(mean.shape, generator=generator).to(mean.device, mean.dtype)
                action = mean + std * noise
            position, reward = env.step(position, action)
            positions.append(position)
            actions.append(action)
            rewards.append(reward)
    return Trajectories(torch.stack(positions, 2), torch.stack(actions, 2), torch.stack(rewards, 2))


# -- policy gradient ---------------------------------------------------------------------------

def discounted_returns(rewards: Tensor, gamma: float) -> Tensor:
    """Reward-to-go ``sum_{k >= t} gamma^(k - t) r_k`` at every step (last dimension = time)."""
    out = torch.empty_like(rewards)
    running = torch.zeros_like(rewards[..., 0])
    for t in range(rewards.shape[-1] - 1, -1, -1):
        running = rewards[..., t] + gamma * running
        out[..., t] = running
    return out


def linear_baseline(observations: Tensor, targets: Tensor, ridge: float = 1e-5) -> Tensor:
    """Least-squares fit of the returns-to-go per task on state and time features.

    The features are those of rllab's linear feature baseline (Duan et al., 2016), used by the
    MAML paper: ``s, s^2, t, t^2, t^3, 1`` with ``t = step / 100``. ``observations`` is
    ``[tasks, episodes, T, d]``, ``targets`` ``[tasks, episodes, T]``; returns the fitted values.
    """
    tasks, episodes, steps, _ = observations.shape
    t = (torch.arange(steps, dtype=torch.float64, device=observations.device) / 100).expand(tasks, episodes, steps)
    s = observations.double().clamp(-10, 10)
    features = torch.cat([s, s**2, torch.stack([t, t**2, t**3, torch.ones_like(t)], -1)], -1)
    x = features.reshape(tasks, episodes * steps, -1)
    y = targets.double().reshape(tasks, episodes * steps, 1)
    eye = torch.eye(x.shape[-1], dtype=x.dtype, device=x.device)
    weights = torch.linalg.solve(x.mT @ x + ridge * eye, x.mT @ y)
    return (x @ weights).reshape(targets.shape).to(targets.dtype)


def advantages(trajectories: Trajectories, gamma: float = 0.99, normalize: bool = True) -> Tensor:
    """Returns-to-go minus the linear baseline, standardised per task when ``normalize``."""
    returns = discounted_returns(trajectories.rewards, gamma)
    adv = returns - linear_baseline(trajectories.observations, returns)
    if normalize:
        flat = adv.flatten(1)
        adv = (adv - flat.mean(1).reshape(-1, 1, 1)) / (flat.std(1).reshape(-1, 1, 1) + 1e-8)
    return adv


def reinforce_loss(log_probs: Tensor, advantages: Tensor) -> Tensor:
    """The REINFORCE surrogate ``-mean(log pi(a|s) * A)`` (Williams, 1992).

    Its gradient is the policy-gradient estimate (with a minus sign, for minimisation) when the
    advantages are constants; they are detached here to make sure.
    """
    return -(log_probs * advantages.detach()).mean()


def _task_loss(policy: nn.Module, params: Params, observations: Tensor, actions: Tensor, adv: Tensor) -> Tensor:
    return reinforce_loss(log_prob(policy, params, observations, actions), adv)


def adapt(
    policy: nn.Module,
    params: Params,
    trajectories: Trajectories,
    inner_lr: float,
    gamma: float = 0.99,
    first_order: bool = False,
    per_task: bool = False,
) -> Params:
    """One policy-gradient step per task on its trajectories: the MAML inner loop.

    Returns per-task parameters (first dimension = task). They stay differentiable with respect
    to ``params`` (second order), or only through the identity with ``first_order``.
    ``per_task=True`` when ``params`` already hold one set per task (a further step).
    """
    adv = advantages(trajectories, gamma)

    def one_task(p: Params, obs: Tensor, actions: Tensor, a: Tensor) -> Params:
        grads = grad(lambda q: _task_loss(policy, q, obs, actions, a))(p)
        return gradient_step(p, grads, inner_lr, first_order)

    in_dims = (0 if per_task else None, 0, 0, 0)
    return vmap(one_task, in_dims=in_dims)(params, trajectories.observations, trajectories.actions, adv)


def _detached(params: Params) -> Params:
    return {name: p.detach() for name, p in params.items()}


# -- the learner: MAML on navigation tasks, trained by mtlcode's one loop ------------------------

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
