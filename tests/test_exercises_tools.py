"""Chapter 7's checks: every task's inner step at once, and one gradient per example, with ``torch.func``.

The reference solutions are the book's solution cells (read by the helpers of ``test_exercises``);
each wrong answer is that code with one typical mistake put in. The generic tests (the reference
passes, an unwritten exercise raises NotImplementedError, a memorised answer fails) run over every
checked exercise in ``test_exercises``; the mistakes of ``batched_inner_step`` that were named
before its step size varied are tested there too.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from exercise_support import assert_fails, case_names, mutated, reference
from torch.func import functional_call, grad

from mtlcode.course import exercises
from mtlcode.models import MLP

# -- per_example_gradients -------------------------------------------------------------------------

PER_EXAMPLE = exercises.check_per_example_gradients, "per_example_gradients"
LOSS = "F.mse_loss(functional_call(model, p, (xi[None],)), yi[None])"
RETURN = "return vmap(grad(example_loss), in_dims=(None, 0, 0))(params, x, y)"
MEAN_LOSS_GRAD = "grad(lambda p: F.mse_loss(functional_call(model, p, (x,)), y))(params)"


def test_the_mean_of_the_per_example_gradients_is_the_gradient_of_the_mean_loss():
    torch.manual_seed(0)
    model = MLP([3, 5, 2]).double()
    params = {name: p.detach() for name, p in model.named_parameters()}
    x, y = torch.randn(6, 3, dtype=torch.float64), torch.randn(6, 2, dtype=torch.float64)
    per_example = reference(PER_EXAMPLE[1])(model, params, x, y)
    mean_loss = grad(lambda p: F.mse_loss(functional_call(model, p, (x,)), y))(params)
    assert set(per_example) == set(params)
    for name, g in per_example.items():
        assert g.shape == (6, *params[name].shape)
        assert torch.allclose(g.mean(0), mean_loss[name])


def test_per_example_cases_differ_in_sizes_and_outputs(capsys):
    names = case_names(*PER_EXAMPLE, capsys)
    assert len(names) == 3 == len(set(names)), names
    examples = [int(name.split(" examples")[0]) for name in names]
    outputs = [int(name.split("-")[-1].split(" ")[0]) for name in names]
    assert len(set(examples)) == 3 and 1 in outputs and max(outputs) > 1, (examples, outputs)


@pytest.mark.parametrize("replacements, case, hint", [
    (((RETURN, f"g = {MEAN_LOSS_GRAD}\n    return {{n: t.expand(len(x), *t.shape) for n, t in g.items()}}"),),
     0, "the mean loss of all examples"),
    (((RETURN, f"return {MEAN_LOSS_GRAD}"),), 0, "gradient of the mean loss, one tensor per parameter"),
    (((RETURN, "return grad(lambda p: F.mse_loss(functional_call(model, p, (x,)), y, reduction='sum'))(params)"),),
     0, "gradient of the summed loss"),
    (((LOSS, f"{LOSS} / len(x)"),), 0, "divided by the number of examples"),
    (((LOSS, "((functional_call(model, p, (xi[None],)) - yi[None]) ** 2).sum()"),), 1,
     "sums its squared errors over the outputs"),
    ((("grad(example_loss)", "grad(example_loss, argnums=1)"),), 0, "with respect to the inputs x"),
], ids=["mean loss for every example", "mean loss", "summed loss", "divided by n", "summed over outputs",
        "gradient of the inputs"])
def test_typical_per_example_mistakes_are_named(replacements, case, hint, capsys):
    name = case_names(*PER_EXAMPLE, capsys)[case]
    assert_fails(PER_EXAMPLE[0], mutated(PER_EXAMPLE[1], *replacements), name, hint, capsys)


def test_a_loss_summed_over_outputs_passes_only_the_one_output_case(capsys):
    names = case_names(*PER_EXAMPLE, capsys)
    summed = mutated(PER_EXAMPLE[1], (LOSS, "((functional_call(model, p, (xi[None],)) - yi[None]) ** 2).sum()"))
    with pytest.raises(AssertionError):
        PER_EXAMPLE[0](summed)
    out = capsys.readouterr().out
    assert f"✗ per_example_gradients: case '{names[1]}' failed" in out, out


def test_a_memorised_per_example_answer_fails(capsys):
    right, memory = reference(PER_EXAMPLE[1]), []

    def memorised(*args):
        if not memory:
            memory.append(right(*args))
        return memory[0]

    second = case_names(*PER_EXAMPLE, capsys)[1]
    assert_fails(PER_EXAMPLE[0], memorised, second, "", capsys)


# -- batched_inner_step: the step size changes from case to case -----------------------------------

BATCHED = exercises.check_batched_inner_step, "batched_inner_step"
UPDATE = "params[name] - alpha * grads[name]"


def test_batched_inner_step_gets_a_new_step_size_per_case(capsys):
    right, calls = reference(BATCHED[1]), []

    def recording(model, params, support_x, support_y, alpha):
        calls.append((alpha, tuple(support_x.shape)))
        return right(model, params, support_x, support_y, alpha)

    BATCHED[0](recording)
    assert "all 3 cases passed" in capsys.readouterr().out
    alphas, shapes = zip(*calls)
    assert len(set(alphas)) == len(alphas) == 3 and 0.05 not in alphas, alphas
    assert all(isinstance(a, float) and 0.02 <= a < 0.3 for a in alphas), alphas
    assert len(set(shapes)) == 3, shapes


@pytest.mark.parametrize("fixed", [0.05, 0.1])
def test_a_hard_coded_step_size_is_named(fixed, capsys):
    hard_coded = mutated(BATCHED[1], (UPDATE, f"params[name] - {fixed} * grads[name]"))
    assert_fails(BATCHED[0], hard_coded, "5 tasks", "use the argument alpha", capsys)


def test_a_slice_of_the_first_answer_fails_on_the_one_task_case(capsys):
    """The one task is the first of the five, but with a step size of its own."""
    right, memory = reference(BATCHED[1]), []

    def memorised(model, params, support_x, support_y, alpha):
        if not memory:
            memory.append(right(model, params, support_x, support_y, alpha))
        return {name: t[:len(support_x)] for name, t in memory[0].items()}

    assert_fails(BATCHED[0], memorised, "1 task", "use the argument alpha", capsys)
