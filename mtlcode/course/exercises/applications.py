"""Checks for the exercises of chapter 6 (applications)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from mtlcode.course.exercises._checking import (
    Params,
    _call,
    _diagnose,
    _failure,
    _mismatch,
    _params_mismatch,
    _passed,
    _seeded,
    _uniform,
)
from mtlcode.learners.rl import GaussianPolicy, discounted_returns, log_prob, reinforce_loss

__all__ = ["check_discounted_returns", "check_policy_gradients"]


def check_discounted_returns(returns_to_go: Callable[[Tensor, float], Tensor]) -> None:
    """Check ``returns_to_go(rewards, gamma)``: the discounted reward-to-go at every step.

    ``rewards`` has time as its last dimension; the answer has the same shape, with
    ``sum_{k >= t} gamma^(k - t) r_k`` at step ``t``. Reference:
    :func:`mtlcode.learners.rl.discounted_returns`.
    """
    exercise, cases = "returns_to_go", []
    generator = torch.Generator().manual_seed(4)
    steps = int(torch.randint(5, 10, (), generator=generator))
    drawn = _uniform(generator, 0.8, 0.99)  # so that no discount can be written into the answer
    for case, rewards, gamma in (
        ("rewards [1, 2, 3], gamma 0.5", torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64), 0.5),
        ("rewards [1, 2, 3], gamma 1", torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64), 1.0),
        (f"2 tasks x 3 episodes x {steps} steps, gamma {drawn:.4f}",
         torch.randn(2, 3, steps, generator=generator, dtype=torch.float64), drawn),
    ):
        expected = discounted_returns(rewards, gamma)
        got = _call(exercise, case, returns_to_go, rewards.clone(), gamma)
        problem = _mismatch(expected, got)
        if problem:
            steps = torch.arange(rewards.shape[-1], dtype=torch.float64)
            hint = _diagnose(got, [
                (discounted_returns(rewards, 1.0), "the rewards are not discounted: multiply by gamma at every step"),
                (discounted_returns(rewards.flip(-1), gamma).flip(-1),
                 "this sums the rewards up to step t: the return at t sums those from t on"),
                (gamma**steps * expected, "the discount counts from the start of the episode: gamma^(k - t), "
                                          "not gamma^k"),
            ], "go backwards in time: G_t = r_t + gamma * G_(t+1), with G after the last step = 0")
            raise _failure(exercise, case, *problem, hint)
        cases.append(case)
    _passed(exercise, cases)



_NAMES = ("weight", "bias", "log_std")


def _surrogate_gradients(states: Tensor, actions: Tensor, weight: Tensor, bias: Tensor, log_std: Tensor,
                         advantages: Tensor) -> Params:
    """The reference: autograd through :func:`mtlcode.learners.rl.reinforce_loss` of a linear Gaussian policy."""
    with _seeded(0):  # the policy's own initial weights are replaced: keep the caller's RNG as it is
        policy = GaussianPolicy(obs_dim=weight.shape[1], act_dim=weight.shape[0], hidden=()).double()
    params = {"mean.head.weight": weight.clone().requires_grad_(), "mean.head.bias": bias.clone().requires_grad_(),
              "log_std": log_std.clone().requires_grad_()}
    loss = reinforce_loss(log_prob(policy, params, states, actions), advantages)
    grads = torch.autograd.grad(loss, list(params.values()))
    return dict(zip(_NAMES, grads))


def _as_gradients(exercise: str, case: str, got: Any) -> Any:
    """``got`` as ``{"weight": ..., "bias": ..., "log_std": ...}``, or feedback on what it is."""
    if isinstance(got, dict):
        return got
    if not isinstance(got, tuple | list) or len(got) != 3:
        what = type(got).__name__ + (f" of length {len(got)}" if isinstance(got, tuple | list) else "")
        raise _failure(exercise, case, "three tensors (grad_weight, grad_bias, grad_log_std)", what,
                       "return the three gradients: return grad_weight, grad_bias, grad_log_std")
    return dict(zip(_NAMES, got))


def _policy_gradient_hint(inputs: tuple[Tensor, ...], expected: Params, got: Any) -> str:
    """Name the slip behind wrong policy gradients, when it is one of the usual ones."""
    states, actions, weight, bias, log_std, advantages = inputs
    std = log_std.exp()
    z = (actions - states @ weight.T - bias) / std  # [N, da]
    weighted = advantages[:, None] / len(states)

    def gradients(mean_term: Tensor, std_term: Tensor, scale: float = 1.0) -> Params:
        """The gradients for ``dL/dmean = mean_term`` ``[N, da]`` and ``dL/dlog_std = std_term``."""
        return {"weight": scale * mean_term.T @ states, "bias": scale * mean_term.sum(0),
                "log_std": scale * std_term.sum(0)}

    right_mean, right_std = -weighted * z / std, -weighted * (z**2 - 1)
    return _diagnose(got, [
        ({k: -v for k, v in expected.items()},
         "every sign is flipped: this is the gradient of the advantage-weighted log-likelihood; the "
         "surrogate *loss* is minus it"),
        (gradients(-weighted * z, right_std),
         "the mean's gradient lacks a 1/sigma: d log pi / d mu = (a - mu) / sigma^2 = z / sigma"),
        (gradients(right_mean, -weighted * z**2),
         "the log-std gradient misses the normaliser: d log pi / d log sigma = z^2 - 1 (the "
         "-log sigma term of the log-density gives the -1)"),
        (gradients(right_mean, right_std / std),
         "this is the gradient with respect to sigma: with respect to log sigma, multiply it by sigma "
         "(d sigma / d log sigma = sigma)"),
        (gradients(right_mean, right_std, scale=len(states)),
         "this sums over the N samples: the surrogate is their mean, so divide by N"),
        ({**expected, "weight": expected["weight"].T},
         f"weight is [actions, states] = {tuple(weight.shape)}: grad_weight[j, i] = "
         "sum_n dL/dmu[n, j] * states[n, i]"),
    ], "with z = (a - mu) / sigma: dL/dmu[n] = -A[n] z[n] / (N sigma); grad_weight = (dL/dmu).T @ states, "
       "grad_bias = its sum over n; grad_log_std = -(1/N) sum_n A[n] (z[n]^2 - 1)")


def check_policy_gradients(policy_gradients: Callable[..., tuple[Tensor, Tensor, Tensor]]) -> None:
    """Check ``policy_gradients(states, actions, weight, bias, log_std, advantages)``, by hand.

    The policy is the linear Gaussian ``pi(a | s) = N(weight @ s + bias, diag(exp(log_std))^2)``;
    ``states`` is ``[N, ds]``, ``actions`` ``[N, da]``, ``weight`` ``[da, ds]``, ``bias`` and
    ``log_std`` ``[da]``, ``advantages`` ``[N]``. The answer is the triple of gradients
    ``(grad_weight, grad_bias, grad_log_std)``, shaped like the parameters, of the surrogate loss
    ``-(1/N) sum_n advantages[n] * log pi(actions[n] | states[n])`` (the log-density summed over
    the action's coordinates), written out by hand: no ``torch.autograd``. Reference: autograd
    through :func:`mtlcode.learners.rl.log_prob` and :func:`mtlcode.learners.rl.reinforce_loss`.
    """
    exercise, cases = "policy_gradients", []
    generator = torch.Generator().manual_seed(16)

    def draw(*shape: int, scale: float = 1.0) -> Tensor:
        return scale * torch.randn(*shape, generator=generator, dtype=torch.float64)

    for n, ds, da, std_range in ((6, 2, 2, (0.3, 0.8)), (11, 3, 1, (0.8, 1.5)), (25, 4, 3, (0.2, 2.0))):
        states, weight, bias, advantages = draw(n, ds), draw(da, ds, scale=0.5), draw(da, scale=0.2), draw(n)
        std = torch.tensor([_uniform(generator, *std_range) for _ in range(da)], dtype=torch.float64)
        log_std = std.log()
        actions = states @ weight.T + bias + std * draw(n, da)
        case = f"{n} samples, {ds}-d states, {da}-d actions, sigma in [{std.min():.3f}, {std.max():.3f}]"
        inputs = (states, actions, weight, bias, log_std, advantages)
        got = _call(exercise, case, policy_gradients, *(x.clone() for x in inputs))
        got = _as_gradients(exercise, case, got)
        expected = _surrogate_gradients(*inputs)
        problem = _params_mismatch(expected, got)
        if problem:
            raise _failure(exercise, case, *problem, _policy_gradient_hint(inputs, expected, got))
        cases.append(case)
    _passed(exercise, cases)
