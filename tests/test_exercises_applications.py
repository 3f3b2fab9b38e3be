"""The checks of chapter 6's coding exercises pass the book's solution and catch the usual mistakes.

The reference solutions are read from the chapter's ``solution`` cells, so the code readers see is
the code tested here; most wrong answers are that code with one slip put in.
"""

from __future__ import annotations

import pytest
import torch
from exercise_support import assert_fails, case_names, define, mutated, solution_source

from mtlcode.course import exercises


def test_returns_to_go_with_a_hard_coded_discount_fails(capsys):
    """The last case's discount is drawn at random: only the gamma passed in gives its answer."""
    right = define(solution_source("returns_to_go"), "returns_to_go")
    cases = case_names(exercises.check_discounted_returns, "returns_to_go", capsys)
    drawn = float(cases[-1].rsplit("gamma ", 1)[1])
    assert 0.8 <= drawn < 0.99 and drawn not in (0.5, 0.9, 1.0)

    def nine_tenths(rewards, gamma):
        return right(rewards, 0.9 if gamma not in (0.5, 1.0) else gamma)

    assert_fails(exercises.check_discounted_returns, nine_tenths, cases[-1], "hint", capsys)


def test_policy_gradients_mistakes(capsys):
    check, name = exercises.check_policy_gradients, "policy_gradients"
    first = case_names(check, name, capsys)[0]
    scale = "advantages[:, None] / len(states)"
    assert_fails(check, mutated(name, (scale, f"-{scale}")), first, "every sign is flipped", capsys)
    assert_fails(check, mutated(name, ("-weights * z / std", "-weights * z")), first, "lacks a 1/sigma",
                 capsys)
    assert_fails(check, mutated(name, ("(z**2 - 1)", "z**2")), first, "misses the normaliser", capsys)
    assert_fails(check, mutated(name, ("(z**2 - 1)).sum(0)", "(z**2 - 1)).sum(0) / std")), first,
                 "with respect to sigma", capsys)
    assert_fails(check, mutated(name, (scale, "advantages[:, None]")), first, "sums over the N samples",
                 capsys)
    assert_fails(check, mutated(name, ("grad_mean.T @ states", "states.T @ grad_mean")), first,
                 "weight is [actions, states]", capsys)

    def with_autograd_on_one_action_dimension(states, actions, weight, bias, log_std, advantages):
        """Right for one action coordinate only: the log-density is not summed over coordinates."""
        params = [t.clone().requires_grad_() for t in (weight, bias, log_std)]
        mean = states @ params[0].T + params[1]
        log_pi = torch.distributions.Normal(mean[:, :1], params[2].exp()[:1]).log_prob(actions[:, :1])
        loss = -(advantages * log_pi.sum(-1)).mean()
        return torch.autograd.grad(loss, params, allow_unused=True, materialize_grads=True)

    with pytest.raises(AssertionError):
        check(with_autograd_on_one_action_dimension)
    assert "failed" in capsys.readouterr().out


def test_policy_gradients_accepts_a_dict_and_reports_a_wrong_type(capsys):
    check, name = exercises.check_policy_gradients, "policy_gradients"
    right = define(solution_source(name), name)

    def as_dict(*args):
        return dict(zip(("weight", "bias", "log_std"), right(*args)))

    check(as_dict)
    first = case_names(check, name, capsys)[0]
    assert_fails(check, lambda *args: right(*args)[:2], first, "return the three gradients", capsys)
