"""Meta-RL on 2D navigation: the environment, the policy gradient, adaptation and a short MAML run."""

from __future__ import annotations

import math

import pytest
import torch

from mtlcode.learners.rl import (
    GaussianPolicy,
    PointNavigation,
    adapt,
    advantages,
    discounted_returns,
    evaluate_navigation,
    linear_baseline,
    log_prob,
    meta_train_navigation,
    reinforce_loss,
    rollout,
)


def test_step_clips_actions_and_rewards_minus_distance():
    env = PointNavigation(torch.tensor([[0.3, 0.4], [-0.5, 0.0]]))
    positions = env.reset(episodes=3)
    assert positions.shape == (2, 3, 2) and not positions.any()
    actions = torch.tensor([[5.0, -0.05]]).expand(2, 3, 2)
    positions, rewards = env.step(positions, actions)
    torch.testing.assert_close(positions, torch.tensor([0.1, -0.05]).expand(2, 3, 2))
    expected = torch.tensor([-math.hypot(0.2, 0.45), -math.hypot(0.6, 0.05)])
    torch.testing.assert_close(rewards, expected[:, None].expand(2, 3))


def test_goals_lie_in_the_square_and_bad_arguments_fail():
    goals = PointNavigation.sample_goals(1000, torch.Generator().manual_seed(0))
    assert goals.shape == (1000, 2) and goals.min() >= -0.5 and goals.max() <= 0.5
    with pytest.raises(ValueError, match="goals"):
        PointNavigation(torch.zeros(3))
    with pytest.raises(ValueError, match="horizon"):
        PointNavigation(torch.zeros(3, 2), horizon=0)


def test_rollout_shapes_and_determinism():
    torch.manual_seed(0)
    policy = GaussianPolicy(hidden=(8,))
    env = PointNavigation(PointNavigation.sample_goals(4, torch.Generator().manual_seed(1)), horizon=7)
    first = rollout(policy, env, 5, generator=torch.Generator().manual_seed(2))
    assert first.positions.shape == (4, 5, 8, 2)
    assert first.observations.shape == first.actions.shape == (4, 5, 7, 2)
    assert first.rewards.shape == (4, 5, 7) and first.returns().shape == (4, 5)
    again = rollout(policy, env, 5, generator=torch.Generator().manual_seed(2))
    other = rollout(policy, env, 5, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(first.positions, again.positions, rtol=0, atol=0)
    assert not torch.equal(first.positions, other.positions)
    # The positions follow the clipped actions.
    step = (first.positions[..., 1:, :] - first.positions[..., :-1, :])
    torch.testing.assert_close(step, first.actions.clamp(-0.1, 0.1))
    # Deterministic rollouts take the mean action: the same in every episode.
    mean = rollout(policy, env, 3, deterministic=True)
    torch.testing.assert_close(mean.positions[:, 0], mean.positions[:, 2])


def test_reinforce_gradient_matches_hand_computation():
    """Linear-Gaussian policy: d/d theta of -mean(A log N(a; W s + b, sigma^2)) by hand."""
    torch.manual_seed(0)
    policy = GaussianPolicy(hidden=(), init_std=0.7).double()
    params = dict(policy.named_parameters())
    obs, actions, adv = torch.randn(6, 2).double(), torch.randn(6, 2).double(), torch.randn(6).double()
    loss = reinforce_loss(log_prob(policy, params, obs, actions), adv)
    grads = dict(zip(params, torch.autograd.grad(loss, list(params.values()))))

    weight, bias, log_std = params["mean.head.weight"], params["mean.head.bias"], params["log_std"]
    with torch.no_grad():
        sigma = log_std.exp()
        z = (actions - (obs @ weight.T + bias)) / sigma  # [6, 2]
        dlogp_dmean = z / sigma
        n = len(adv)
        expected = {
            "mean.head.bias": -(adv[:, None] * dlogp_dmean).sum(0) / n,
            "mean.head.weight": -(adv[:, None] * dlogp_dmean).T @ obs / n,
            "log_std": -(adv[:, None] * (z**2 - 1)).sum(0) / n,
        }
    for name, value in expected.items():
        torch.testing.assert_close(grads[name], value)
    # The advantages are constants of the surrogate: no gradient flows into them.
    adv.requires_grad_(True)
    loss = reinforce_loss(log_prob(policy, params, obs, actions), adv)
    assert torch.autograd.grad(loss, adv, allow_unused=True) == (None,)


def test_discounted_returns_and_linear_baseline():
    rewards = torch.tensor([[1.0, 2.0, 3.0]])
    torch.testing.assert_close(discounted_returns(rewards, 0.5), torch.tensor([[2.75, 3.5, 3.0]]))
    # Targets that are a linear function of the features are fitted exactly.
    obs = torch.randn(2, 3, 5, 2, generator=torch.Generator().manual_seed(0))
    t = torch.arange(5) / 100
    targets = 1.5 * obs[..., 0] - obs[..., 1] ** 2 + 3 * t**2 + 0.2
    torch.testing.assert_close(linear_baseline(obs, targets, ridge=1e-12), targets, rtol=1e-4, atol=1e-4)


def test_adapt_is_a_policy_gradient_step_per_task():
    torch.manual_seed(0)
    policy = GaussianPolicy(hidden=(8,)).double()
    env = PointNavigation(PointNavigation.sample_goals(3, torch.Generator().manual_seed(1)).double(), horizon=5)
    params = dict(policy.named_parameters())
    trajectories = rollout(policy, env, 4, generator=torch.Generator().manual_seed(2))
    adapted = adapt(policy, params, trajectories, inner_lr=0.1)
    adv = advantages(trajectories)
    for task in range(3):
        loss = reinforce_loss(log_prob(policy, params, trajectories.observations[task], trajectories.actions[task]),
                              adv[task])
        grads = torch.autograd.grad(loss, list(params.values()))
        for (name, p), g in zip(params.items(), grads):
            torch.testing.assert_close(adapted[name][task], p - 0.1 * g)
    # First order: d theta'/d theta is the identity, so sum(theta') over 3 tasks has gradient 3.
    # Second order adds the Hessian term: the gradient differs.
    def gradient_of_sum(first_order: bool) -> list[torch.Tensor]:
        adapted = adapt(policy, params, trajectories, inner_lr=0.1, first_order=first_order)
        return torch.autograd.grad(sum(v.sum() for v in adapted.values()), list(params.values()))

    first, second = gradient_of_sum(True), gradient_of_sum(False)
    for g, p in zip(first, params.values()):
        torch.testing.assert_close(g, torch.full_like(p, 3.0))
    assert any(not torch.allclose(a, b) for a, b in zip(first, second))


@pytest.fixture
def one_thread():
    """Tiny tensors gain nothing from threads, and a busy machine makes threads spin: use one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_short_meta_training_makes_adaptation_pay_off(one_thread):
    torch.manual_seed(0)
    policy = GaussianPolicy(hidden=(32, 32))
    kwargs = {"episodes": 10, "horizon": 20, "inner_lr": 0.3}
    history = meta_train_navigation(policy, iterations=25, meta_batch=10, meta_lr=5e-3, seed=0, **kwargs)
    assert set(history) == {"step", "loss", "return_before", "return_after"} and len(history["step"]) == 25
    result = evaluate_navigation(policy, goals=20, seed=1, **kwargs)
    assert len(result.returns) == 2 and result.task_returns[0].shape == (20,)
    assert result.after > result.before + 1.0, result.returns  # about 2.2 with this seed


def test_zero_inner_lr_trains_one_policy_for_all_goals(one_thread):
    torch.manual_seed(0)
    policy = GaussianPolicy(hidden=(8,))
    start = {name: p.detach().clone() for name, p in policy.named_parameters()}
    history = meta_train_navigation(policy, iterations=2, meta_batch=3, episodes=2, horizon=5, inner_lr=0.0)
    assert history["return_before"] == history["return_after"]  # no adaptation, one sample per iteration
    assert any(not torch.equal(start[name], p) for name, p in policy.named_parameters())
    with pytest.raises(ValueError, match="inner_lr"):
        meta_train_navigation(policy, iterations=1, inner_lr=-0.1)


def test_meta_rl_runs_in_the_shared_loop_and_resumes_from_its_checkpoint(one_thread, tmp_path):
    """Meta-RL is one more learner of mtlcode.meta_train: checkpoints and resumption come with it."""
    from mtlcode import Learner
    from mtlcode.checkpoints import load_checkpoint
    from mtlcode.learners.rl import NavigationMAML

    assert issubclass(NavigationMAML, Learner)
    kwargs = {"meta_batch": 3, "episodes": 2, "horizon": 5, "inner_lr": 0.1, "meta_lr": 1e-2, "seed": 4}

    def run(iterations, checkpoint=None):
        torch.manual_seed(0)
        policy = GaussianPolicy(hidden=(8,))
        return policy, meta_train_navigation(policy, iterations, checkpoint=checkpoint, **kwargs)

    straight, straight_history = run(6)
    checkpoint = tmp_path / "nav.pt"
    run(4, checkpoint)  # stopped after 4 steps
    assert load_checkpoint(checkpoint)["step"] == 4
    resumed, resumed_history = run(6, checkpoint)
    for a, b in zip(straight.parameters(), resumed.parameters()):
        assert torch.equal(a, b)
    assert resumed_history == straight_history
