"""Policy gradients: returns-to-go, the linear baseline, advantages, the REINFORCE surrogate,
and :func:`adapt`, one policy-gradient step per task (the MAML inner loop).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.func import grad, vmap

from mtlcode.learners.maml import gradient_step
from mtlcode.learners.rl.environment import Params, Trajectories, log_prob


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
