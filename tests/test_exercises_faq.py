"""The checks of chapter 9 (FAQ): the book's solutions pass, the typical mistakes are named.

As in ``test_exercises.py``, the reference solutions are read from the book's ``solution``
cells, and most wrong answers are that code with one slip put in (a string replacement).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from exercise_support import assert_fails, case_names, mutated, reference
from torch.func import functional_call

from mtlcode.course import exercises
from mtlcode.models import Conv4

BOOK = Path(__file__).resolve().parents[1] / "book"


# -- second_order_term ---------------------------------------------------------------------------

def test_second_order_term_mistakes(capsys):
    check, name = exercises.check_second_order_term, "second_order_term"
    one_task, three_tasks = case_names(check, name, capsys)
    update = "term[name] - alpha * hg / len(batch)"
    assert_fails(check, mutated(name, (update, "term[name] + alpha * hg / len(batch)")), one_task,
                 "sign is flipped", capsys)
    assert_fails(check, mutated(name, (update, "term[name] - hg / len(batch)")), one_task, "alpha is missing",
                 capsys)
    assert_fails(check, mutated(name, (update, "term[name] + hg / len(batch)")), one_task, "this is H g",
                 capsys)
    assert_fails(check, mutated(name, (update, "term[name] - alpha * hg")), three_tasks, "sum over the tasks",
                 capsys)
    query_hessian = mutated(name, ("dot = sum((a * b).sum() for a, b in zip(inner, g))",
                                   "query_at_theta = F.mse_loss(functional_call(model, theta, (task.query_x,)), "
                                   "task.query_y)\n"
                                   "        q = torch.autograd.grad(query_at_theta, list(theta.values()), "
                                   "create_graph=True)\n"
                                   "        dot = sum((a * b).sum() for a, b in zip(q, g))"))
    assert_fails(check, query_hessian, one_task, "Hessian of the *query* loss", capsys)
    at_theta = mutated(name, ("prediction = functional_call(model, adapted, (task.query_x,))",
                              "prediction = functional_call(model, theta, (task.query_x,))"),
                       ("g = torch.autograd.grad(query_loss, list(adapted.values()))",
                        "g = torch.autograd.grad(query_loss, list(theta.values()), retain_graph=True)"))
    assert_fails(check, at_theta, one_task, "query gradient at theta", capsys)

    def hessian_at_adapted(model, batch, alpha):
        theta = dict(model.named_parameters())
        term = {n: torch.zeros_like(p) for n, p in theta.items()}
        for task in batch:
            support = F.mse_loss(functional_call(model, theta, (task.support_x,)), task.support_y)
            inner = torch.autograd.grad(support, list(theta.values()))
            adapted = {n: (p - alpha * g).detach().requires_grad_() for (n, p), g in zip(theta.items(), inner)}
            query = F.mse_loss(functional_call(model, adapted, (task.query_x,)), task.query_y)
            g = torch.autograd.grad(query, list(adapted.values()))
            support = F.mse_loss(functional_call(model, adapted, (task.support_x,)), task.support_y)
            at = torch.autograd.grad(support, list(adapted.values()), create_graph=True)
            hg = torch.autograd.grad(sum((a * b).sum() for a, b in zip(at, g)), list(adapted.values()))
            for n, h in zip(theta, hg):
                term[n] = term[n] - alpha * h / len(batch)
        return term

    assert_fails(check, hessian_at_adapted, one_task, "taken at theta'", capsys)

    def whole(model, batch, alpha):
        from mtlcode import MAML

        maml = MAML(model, inner_lr=alpha, loss=F.mse_loss, strategy="loop")
        params = maml.params()
        return dict(zip(params, torch.autograd.grad(maml.meta_loss(batch), list(params.values()))))

    assert_fails(check, whole, one_task, "whole exact meta-gradient", capsys)

    right = reference(name)

    def with_a_step(model, batch, alpha):
        term = right(model, batch, alpha)
        with torch.no_grad():
            for n, p in model.named_parameters():
                p -= term[n]
        return term

    assert_fails(check, with_a_step, f"{one_task}: theta is left unchanged", "do not take an optimiser step",
                 capsys)


# -- batch_norm ---------------------------------------------------------------------------------

def test_batch_norm_with_its_own_statistics_is_conv4s_layer():
    layer = Conv4(ways=3, hidden=4).double().body[0][1]  # the first block's batch norm
    with torch.no_grad():
        layer.weight.uniform_(0.5, 1.5)
        layer.bias.uniform_(-1, 1)
    x = torch.randn(6, 4, 7, 7, dtype=torch.float64)
    ours = reference("batch_norm")(x, x, layer.weight.detach(), layer.bias.detach(), layer.eps)
    torch.testing.assert_close(ours, layer(x).detach())


def test_batch_norm_mistakes(capsys):
    check, name = exercises.check_batch_norm, "batch_norm"
    own, other, one_image = case_names(check, name, capsys)
    assert_fails(check, mutated(name, ("correction=0", "correction=1")), own, "(number of values - 1)", capsys)
    assert_fails(check, mutated(name, ("dims = (0, 2, 3)", "dims = (0, 1, 2, 3)")), own, "pool all channels",
                 capsys)
    assert_fails(check, mutated(name, ("dims = (0, 2, 3)", "dims = (2, 3)")), own, "instance norm", capsys)
    assert_fails(check, mutated(name, ("dims = (0, 2, 3)", "dims = (1, 2, 3)")), own, "layer norm", capsys)
    assert_fails(check, mutated(name, ("torch.sqrt(variance + eps)", "(torch.sqrt(variance) + eps)")), own,
                 "added to the standard deviation", capsys)
    assert_fails(check, mutated(name, ("return weight.view(1, -1, 1, 1) * normalised + bias.view(1, -1, 1, 1)",
                                       "return normalised")), own, "not applied", capsys)
    assert_fails(check, mutated(name, ("return weight.view(1, -1, 1, 1) * normalised + bias.view(1, -1, 1, 1)",
                                       "return bias.view(1, -1, 1, 1) * normalised + weight.view(1, -1, 1, 1)")),
                 own, "swapped", capsys)
    # Right with the batch's own statistics, wrong with another batch's.
    xs_own = mutated(name, ("reference.mean(dim=dims", "x.mean(dim=dims"), ("reference.var(", "x.var("))
    assert_fails(check, xs_own, other, "x's own statistics", capsys)
    assert one_image != other
