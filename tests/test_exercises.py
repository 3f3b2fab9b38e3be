"""The exercise checks: each passes the book's reference solution and catches typical mistakes.

The reference solutions are read from the book's ``solution`` cells, so the code readers see is
the code tested here. Most wrong answers are that code with one mistake put in (a string
replacement), so each test isolates exactly the slip it names.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from exercise_support import assert_fails, book_checks, case_names, mutated, reference
from torch.func import functional_call

from mtlcode.course import exercises
from mtlcode.tasks import NWayKShot

# Every checked exercise of the book, found in the chapters: a new one is tested here at once.
CHECKS = book_checks()


@pytest.mark.parametrize("check, name", CHECKS, ids=[name for _, name in CHECKS])
def test_reference_solution_passes_and_rng_is_left_alone(check, name, capsys):
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    check(reference(name))
    assert torch.equal(torch.rand(3), expected_next), "a check changed the caller's random numbers"
    assert "cases passed" in capsys.readouterr().out


@pytest.mark.parametrize("check, name", CHECKS, ids=[name for _, name in CHECKS])
def test_unwritten_exercise_raises_not_implemented(check, name):
    def stub(*args):
        raise NotImplementedError("Exercise: not written yet")

    with pytest.raises(NotImplementedError, match="not written yet"):
        check(stub)


@pytest.mark.parametrize("check, name", CHECKS, ids=[name for _, name in CHECKS])
def test_an_answer_memorised_from_one_case_fails(check, name, capsys):
    """The cases differ (seeds, shapes, step sizes): repeating the first right answer is no solution."""
    right, memory = reference(name), []

    def memorised(*args):
        if not memory:
            memory.append(right(*args))
        return memory[0]

    with pytest.raises(AssertionError):
        check(memorised)
    assert "failed" in capsys.readouterr().out


def test_every_check_of_the_package_has_an_exercise_in_the_book():
    used = {check.__name__ for check, _ in CHECKS}
    assert len(CHECKS) == len(used) >= 20, CHECKS
    assert used == set(exercises.__all__), set(exercises.__all__) ^ used


def test_an_error_in_the_students_function_becomes_feedback(capsys):
    def broken(predictions, targets):
        return predictions.no_such_method()

    assert_fails(exercises.check_task_mse, broken, "4 tasks of 6 points", "AttributeError", capsys)


# -- one test per typical mistake ----------------------------------------------------------------

def test_task_mse_mistakes(capsys):
    check, name = exercises.check_task_mse, "task_mse"
    ending = ".flatten(start_dim=1).mean(dim=1)"
    assert_fails(check, mutated(name, (ending, ".mean()")), "4 tasks of 6 points", "one number per task", capsys)
    assert_fails(check, mutated(name, (ending, ".mean(dim=1)")), "4 tasks of 6 points", "shape (4, 1)", capsys)
    # Averaging over the points only is right for one output, wrong for two.
    assert_fails(check, mutated(name, (ending, ".mean(dim=1)[:, 0]")), "1 task of 3 points with 2 outputs",
                 "every dimension except the first", capsys)


def test_sample_task_mistakes(capsys):
    check, name = exercises.check_nway_kshot, "sample_task"
    chosen = "torch.randperm(len(classes), generator=generator)[:ways]"
    assert_fails(check, mutated(name, (chosen, "torch.randint(len(classes), (ways,), generator=generator)")),
                 "rows hold different classes", "without replacement", capsys)
    together = "examples[torch.randperm(len(examples), generator=generator)[: shots + queries]]"
    apart = ("torch.cat([examples[torch.randperm(len(examples), generator=generator)[:shots]], "
             "examples[torch.randperm(len(examples), generator=generator)[:queries]]])")
    assert_fails(check, mutated(name, (together, apart)), "no example twice in a task", "split them", capsys)
    assert_fails(check, mutated(name, (chosen, "torch.arange(ways)")), "every class appears in every row",
                 "random order", capsys)
    assert_fails(check, mutated(name, ("generator=generator", "generator=None")), "same generator seed, same task",
                 "from `generator`", capsys)


def test_sample_task_check_accepts_mtlcode_sampler():
    class Examples:  # the smallest dataset NWayKShot accepts
        def __init__(self, targets):
            self.targets = targets

        def __len__(self):
            return len(self.targets)

        def __getitem__(self, i):
            return torch.zeros(1), int(self.targets[i])

    def by_mtlcode(targets, ways, shots, queries, generator):
        return NWayKShot(Examples(targets), ways, shots, queries).sample_indices(generator)

    exercises.check_nway_kshot(by_mtlcode)


def test_inner_loop_mistakes(capsys):
    check, name = exercises.check_inner_loop, "inner_loop"
    assert_fails(check, mutated(name, (", create_graph=True", "")), "meta-gradient through two steps",
                 "create_graph=True", capsys)
    at_theta = mutated(name, ("    for _ in range(steps):", "    theta = params\n    for _ in range(steps):"),
                       ("functional_call(model, params, (support_x,))", "functional_call(model, theta, (support_x,))"),
                       ("list(params.values())", "list(theta.values())"))
    assert_fails(check, at_theta, "three steps", "previous step", capsys)
    assert_fails(check, mutated(name, ("range(steps)", "range(1)")), "three steps", "repeat the update", capsys)

    def in_place(model, params, support_x, support_y, alpha, steps):
        for _ in range(steps):
            loss = F.mse_loss(functional_call(model, params, (support_x,)), support_y)
            grads = torch.autograd.grad(loss, list(params.values()))
            with torch.no_grad():
                for p, g in zip(params.values(), grads):
                    p -= alpha * g
        return params

    assert_fails(check, in_place, "theta is left unchanged", "in place", capsys)


def test_first_order_meta_gradient_mistakes(capsys):
    check, name = exercises.check_first_order_meta_gradient, "fomaml_gradient"
    inner = "torch.autograd.grad(support_loss, list(theta.values()))"
    assert_fails(check, mutated(name, (inner, inner[:-1] + ", create_graph=True)")), "one task",
                 "second-order meta-gradient", capsys)
    assert_fails(check, mutated(name, ("torch.stack(query_losses).mean()", "torch.stack(query_losses).sum()")),
                 "four tasks", "sum over the tasks", capsys)
    assert_fails(check, mutated(name, ("functional_call(model, adapted, (task.query_x,))",
                                       "functional_call(model, theta, (task.query_x,))")),
                 "one task", "query gradient at theta", capsys)


def test_meta_gradient_mistakes(capsys):
    check, name = exercises.check_meta_gradient, "meta_gradient"
    step = "(q[name] - alpha * hq[name]) / len(batch)"
    assert_fails(check, mutated(name, (step, "q[name] / len(batch)")), "one task", "first-order meta-gradient",
                 capsys)
    assert_fails(check, mutated(name, (step, "(q[name] + alpha * hq[name]) / len(batch)")), "one task",
                 "sign of the Hessian term", capsys)
    assert_fails(check, mutated(name, (step, "q[name] - alpha * hq[name]")), "four tasks", "sum over the tasks",
                 capsys)


def test_finetune_head_mistakes(capsys):
    check, name = exercises.check_finetune_head, "finetune_head"
    assert_fails(check, mutated(name, ("        optimizer.zero_grad()\n", "")), "five steps", "zero them", capsys)
    assert_fails(check, mutated(name, ("copy.deepcopy(model)", "model")), "the pre-trained model is left unchanged",
                 "copy.deepcopy", capsys)
    assert_fails(check, mutated(name, ("    for _ in range(steps):", "    model.body.requires_grad_(False)\n"
                                                                      "    for _ in range(steps):")),
                 "the pre-trained model is left unchanged", "freeze model.body", capsys)

    def whole_network(model, head, support_x, support_y, steps, lr):
        import copy

        tuned = copy.deepcopy(model)
        tuned.head = head
        optimizer = torch.optim.SGD(tuned.parameters(), lr=lr)  # the body trains too
        for _ in range(steps):
            loss = F.cross_entropy(tuned(support_x), support_y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        return tuned

    assert_fails(check, whole_network, "one step", "freeze the body", capsys)


def test_returns_to_go_mistakes(capsys):
    check, name = exercises.check_discounted_returns, "returns_to_go"
    discount = "gamma ** offsets.clamp(min=0)"
    first_case = "rewards [1, 2, 3], gamma 0.5"
    assert_fails(check, mutated(name, (discount, "torch.ones_like(offsets)")), first_case, "not discounted", capsys)
    assert_fails(check, mutated(name, ("offsets >= 0", "offsets <= 0"), (discount, "gamma ** (-offsets).clamp(min=0)")),
                 first_case, "up to step t", capsys)
    assert_fails(check, mutated(name, (discount, "gamma ** steps.expand_as(offsets)")), first_case,
                 "start of the episode", capsys)


def test_batched_inner_step_mistakes(capsys):
    check, name = exercises.check_batched_inner_step, "batched_inner_step"
    update = "params[name] - alpha * grads[name]"
    assert_fails(check, mutated(name, (update, "params[name] + alpha * grads[name]")), "5 tasks", "uphill", capsys)
    assert_fails(check, mutated(name, (update, "grads[name]")), "5 tasks", "these are the gradients", capsys)
    pooled = mutated(name, ("return vmap(one_task)(support_x, support_y)",
                            "step = one_task(support_x.flatten(0, 1), support_y.flatten(0, 1))\n"
                            "    return {n: p.expand(len(support_x), *p.shape) for n, p in step.items()}"))
    assert_fails(check, pooled, "5 tasks", "pooled", capsys)


def test_prototype_logits_mistakes(capsys):
    check, name = exercises.check_prototype_logits, "prototype_logits"
    first_case = case_names(check, name, capsys)[0]
    logits = "query @ weights.T + biases - (query**2).sum(-1, keepdim=True)"
    assert_fails(check, mutated(name, (logits, f"-(-({logits})).clamp(min=0).sqrt()")), first_case,
                 "plain distance", capsys)
    assert_fails(check, mutated(name, (logits, f"-({logits})")), first_case, "sign is flipped", capsys)
    assert_fails(check, mutated(name, ("(one_hot.T @ support) / one_hot.sum(0)[:, None]", "one_hot.T @ support")),
                 first_case, "divide by the number of shots", capsys)
    assert_fails(check, mutated(name, (logits, f"({logits}).T")), first_case, "one row per query", capsys)

    def first_example(support, support_y, query):
        centres = torch.stack([support[support_y == k][0] for k in range(int(support_y.max()) + 1)])
        return -((query[:, None] - centres[None]) ** 2).sum(-1)

    assert_fails(check, first_example, first_case, "one support example", capsys)


def test_reptile_gradient_mistakes(capsys):
    check, name = exercises.check_reptile_update, "reptile_gradient"
    first_case = case_names(check, name, capsys)[0]
    support_only = mutated(name, ("torch.cat([task.support_x, task.query_x])", "task.support_x"),
                           ("torch.cat([task.support_y, task.query_y])", "task.support_y"))
    assert_fails(check, support_only, first_case, "support set only", capsys)
    direction = "p - mean_phi[name]"
    assert_fails(check, mutated(name, (direction, "(p - torch.stack([phi[name] for phi in phis])).sum(0)")),
                 first_case, "sum over the tasks", capsys)
    assert_fails(check, mutated(name, ("for phi in phis]).mean(0)", "for phi in phis]).sum(0)")), first_case,
                 "the sum of the phi_i", capsys)
    assert_fails(check, mutated(name, (direction, "mean_phi[name] - p")),
                 first_case, "sign is flipped", capsys)
    one_phi = mutated(name, ("        phi = theta  # every task starts from theta\n", ""),
                      ("    phis = []\n", "    phis = []\n    phi = theta\n"))
    assert_fails(check, one_phi, first_case, "start every task from theta", capsys)
    assert_fails(check, mutated(name, ("range(inner_steps)", "range(1)")), first_case, "take `inner_steps` steps",
                 capsys)
    two_losses = mutated(name, ("g = grad(loss)(phi, x, y)",
                                "g = grad(lambda q: loss(q, task.support_x, task.support_y)"
                                " + loss(q, task.query_x, task.query_y))(phi)"))
    assert_fails(check, two_losses, first_case, "sum of two losses", capsys)

    right = reference(name)

    def with_a_step(model, batch, inner_lr, inner_steps):
        direction = right(model, batch, inner_lr, inner_steps)
        with torch.no_grad():
            for n, p in model.named_parameters():
                p -= direction[n]
        return direction

    assert_fails(check, with_a_step, f"{first_case}: theta is left unchanged", "do not change", capsys)


def test_anil_adapt_mistakes(capsys):
    check, name = exercises.check_anil_inner_loop, "anil_adapt"
    first_case, first_gradient, second_case, _ = case_names(check, name, capsys)
    assert first_gradient == f"{first_case}: meta-gradient through the steps"
    # MAML's inner loop (exercise 2) has the same contract, but adapts the body too.
    assert_fails(check, reference("inner_loop"), first_case, "that is MAML's inner loop", capsys)
    assert_fails(check, mutated(name, (", create_graph=True", "")), first_gradient,
                 "first-order meta-gradient", capsys)
    assert_fails(check, mutated(name, ("range(steps)", "range(1)")), first_case, "repeat the update", capsys)
    assert_fails(check, mutated(name, ("functional_call(model.body, body, (support_x,))", "model.body(support_x)")),
                 second_case, "model's own parameters", capsys)
    assert_fails(check, mutated(name, ("functional_call(model.body, body, (support_x,))",
                                       "functional_call(model.body, body, (support_x,)).detach()")),
                 first_gradient, "do not detach the body's features", capsys)

    def in_place(model, params, support_x, support_y, alpha, steps):
        head = [n for n in params if n.startswith("head.")]
        for _ in range(steps):
            loss = F.mse_loss(functional_call(model, params, (support_x,)), support_y)
            grads = torch.autograd.grad(loss, [params[n] for n in head])
            with torch.no_grad():
                for n, g in zip(head, grads):
                    params[n] -= alpha * g
        return params

    assert_fails(check, in_place, f"{first_case}: params is left unchanged", "in place", capsys)


def test_metasgd_step_mistakes(capsys):
    check, name = exercises.check_metasgd_step, "metasgd_step"
    first_case, first_gradient, second_case, _ = case_names(check, name, capsys)
    assert first_gradient == f"{first_case}: meta-gradient of params and step sizes"
    update = "params[name] - step_sizes[name] * g"
    assert_fails(check, mutated(name, (update, "params[name] - step_sizes[name].mean() * g")), first_case,
                 "the same step size", capsys)
    overall = mutated(name, (update, "params[name] - torch.cat([s.flatten() for s in step_sizes.values()]).mean() * g"))
    assert_fails(check, overall, first_case, "one scalar step size", capsys)
    assert_fails(check, mutated(name, (update, "params[name] + step_sizes[name] * g")), first_case, "uphill", capsys)
    assert_fails(check, mutated(name, (", create_graph=True", "")),
                 first_gradient, "second-order term", capsys)
    assert_fails(check, mutated(name, (update, "params[name] - step_sizes[name].detach() * g")),
                 first_gradient, "no gradient reaches the step sizes", capsys)
    at_theta = mutated(name, ("functional_call(model, params, (support_x,))", "model(support_x)"),
                       ("list(params.values())", "list(model.parameters())"))
    assert_fails(check, at_theta, second_case, "taken at the model's own parameters", capsys)

    def in_place(model, params, step_sizes, support_x, support_y):
        loss = F.mse_loss(functional_call(model, params, (support_x,)), support_y)
        grads = torch.autograd.grad(loss, list(params.values()))
        with torch.no_grad():
            for (n, p), g in zip(params.items(), grads):
                p -= step_sizes[n] * g
        return params

    assert_fails(check, in_place, f"{first_case}: params is left unchanged", "in place", capsys)
