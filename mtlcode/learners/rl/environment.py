"""The 2D navigation environment, the Gaussian policy, and sampling episodes with it.

:class:`PointNavigation` steps every episode of every task at once; :class:`GaussianPolicy` gives
the action distribution; :func:`rollout` runs the policy in the environment, one parameter set per
task if asked, and returns :class:`Trajectories`. Nothing here is differentiated but
:func:`log_prob`, which the policy-gradient losses are built on.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap

from mtlcode.models import MLP

# A policy's parameters by name, as torch.func.functional_call takes them
Params = dict[str, Tensor]


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
