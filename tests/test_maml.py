"""The MAML meta-gradient against an independent per-task reference and finite differences."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from benchmarks.reference import loop_meta_step
from mtlcode import MAML
from mtlcode.models import MLP, Conv4
from mtlcode.tasks import Sinusoid, TaskBatch


def tiny_problem(tasks: int = 3, dtype: torch.dtype = torch.float64) -> tuple[torch.nn.Module, TaskBatch]:
    torch.manual_seed(0)
    model = MLP([1, 5, 5, 1]).to(dtype)
    batch = Sinusoid().sample(tasks, shots=4, queries=6, generator=torch.Generator().manual_seed(1))
    return model, batch.to("cpu", dtype=dtype)


def reference_gradient(model, batch, steps, first_order, lr=0.05):
    model.zero_grad()
    loss = loop_meta_step(model, batch, lr, steps, first_order, F.mse_loss)
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    return loss, grads


@pytest.mark.parametrize("strategy", ["vmap", "loop"])
@pytest.mark.parametrize("first_order", [False, True])
@pytest.mark.parametrize("steps", [1, 3])
def test_meta_gradient_matches_per_task_reference(steps, first_order, strategy):
    model, batch = tiny_problem()
    maml = MAML(model, inner_lr=0.05, inner_steps=steps, first_order=first_order, loss=F.mse_loss,
                strategy=strategy)
    loss = maml.meta_loss(batch)
    grads = torch.autograd.grad(loss, list(model.parameters()))
    ref_loss, ref_grads = reference_gradient(model, batch, steps, first_order)
    assert loss.item() == pytest.approx(ref_loss, rel=1e-12)
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("steps", [1, 3])
def test_second_order_meta_gradient_passes_gradcheck(steps):
    """Finite differences of the meta-loss as a function of the flat initialisation."""
    model, batch = tiny_problem(tasks=2)
    maml = MAML(model, inner_lr=0.05, inner_steps=steps, loss=F.mse_loss)
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    sizes = [p.numel() for p in model.parameters()]

    def meta_loss_of(flat: torch.Tensor) -> torch.Tensor:
        params = dict(zip(names, [t.reshape(s) for t, s in zip(flat.split(sizes), shapes)]))
        total = 0
        for task in batch:
            adapted = maml.adapt(task.support_x, task.support_y, params=params)
            total = total + F.mse_loss(maml.predict(adapted, task.query_x), task.query_y)
        return total / len(batch)

    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()]).requires_grad_()
    assert torch.autograd.gradcheck(meta_loss_of, (flat,), eps=1e-6, atol=1e-5)
    assert torch.autograd.gradgradcheck(meta_loss_of, (flat,), eps=1e-6, atol=1e-4)


def test_first_order_differs_from_second_order_but_not_without_inner_steps():
    model, batch = tiny_problem()
    grads = {}
    for steps in (0, 1):
        for first_order in (False, True):
            maml = MAML(model, 0.05, inner_steps=steps, first_order=first_order, loss=F.mse_loss)
            grads[steps, first_order] = torch.autograd.grad(maml.meta_loss(batch), list(model.parameters()))
    # With an inner step the Hessian term matters ...
    assert max((a - b).abs().max() for a, b in zip(grads[1, False], grads[1, True])) > 1e-4
    # ... with none there is no inner gradient to drop, so the two coincide.
    for a, b in zip(grads[0, False], grads[0, True]):
        torch.testing.assert_close(a, b)


def test_first_order_gradient_is_query_gradient_at_adapted_parameters():
    model, batch = tiny_problem(tasks=1)
    maml = MAML(model, 0.05, first_order=True, loss=F.mse_loss)
    meta = torch.autograd.grad(maml.meta_loss(batch), list(model.parameters()))
    task = batch[0]
    adapted = {k: v.detach().requires_grad_() for k, v in maml.adapt(task.support_x, task.support_y).items()}
    query_loss = F.mse_loss(functional_call(model, adapted, (task.query_x,)), task.query_y)
    expected = torch.autograd.grad(query_loss, list(adapted.values()))
    for a, b in zip(meta, expected):
        torch.testing.assert_close(a, b)


def conv_problem():
    torch.manual_seed(0)
    model = Conv4(ways=3, hidden=8).double()
    batch = TaskBatch(torch.rand(4, 3, 1, 28, 28, dtype=torch.float64), torch.arange(3).repeat(4, 1),
                      torch.rand(4, 6, 1, 28, 28, dtype=torch.float64), torch.randint(0, 3, (4, 6)))
    return model, batch


def test_loop_matches_reference_on_conv4_second_order():
    model, batch = conv_problem()
    maml = MAML(model, 0.4, inner_steps=2, loss=F.cross_entropy)
    assert maml.resolved_strategy() == "loop"
    grads = torch.autograd.grad(maml.meta_loss(batch), list(model.parameters()))
    model.zero_grad()
    loop_meta_step(model, batch, 0.4, 2, False, F.cross_entropy)
    for g, p in zip(grads, model.parameters()):
        torch.testing.assert_close(g, p.grad, rtol=1e-9, atol=1e-12)


def test_vmap_refuses_second_order_through_torch_batch_norm():
    """torch.nn.BatchNorm2d's double backward is wrong under vmap; mtlcode says so instead."""
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4, track_running_stats=False),
                                torch.nn.Flatten(), torch.nn.LazyLinear(3)).double()
    _, batch = conv_problem()
    model(batch.support_x[0])  # materialise the lazy layer
    with pytest.raises(ValueError, match="TaskBatchNorm2d"):
        MAML(model, 0.4, loss=F.cross_entropy, strategy="vmap").meta_loss(batch)
    assert MAML(model, 0.4, loss=F.cross_entropy).resolved_strategy() == "loop"
    assert MAML(model, 0.4, loss=F.cross_entropy, first_order=True, strategy="vmap").resolved_strategy() == "vmap"


@pytest.mark.parametrize("steps", [1, 2])
def test_vmap_matches_loop_on_conv4_second_order(steps):
    """Conv4's TaskBatchNorm2d makes the vectorised second-order meta-gradient exact."""
    model, batch = conv_problem()
    results = {}
    for strategy in ("vmap", "loop"):
        maml = MAML(model, 0.4, loss=F.cross_entropy, inner_steps=steps, strategy=strategy)
        losses, predictions = maml.task_losses(batch)
        grads = torch.autograd.grad(losses.mean(), list(model.parameters()))
        results[strategy] = (losses, predictions, *grads)
    for a, b in zip(results["vmap"], results["loop"]):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


def test_vmap_and_loop_agree_on_conv4_first_order():
    model, batch = conv_problem()
    results = {}
    for strategy in ("vmap", "loop"):
        maml = MAML(model, 0.4, loss=F.cross_entropy, inner_steps=2, first_order=True, strategy=strategy)
        losses, predictions = maml.task_losses(batch)
        grads = torch.autograd.grad(losses.mean(), list(model.parameters()))
        results[strategy] = (losses, predictions, *grads)
    for a, b in zip(results["vmap"], results["loop"]):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


def test_adapt_leaves_the_model_untouched_and_reduces_support_loss():
    model, batch = tiny_problem(tasks=1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    maml = MAML(model, 0.05, loss=F.mse_loss)
    task = batch[0]
    with torch.no_grad():
        adapted = maml.adapt(task.support_x, task.support_y, steps=5)
        loss_before = F.mse_loss(model(task.support_x), task.support_y)
        loss_after = F.mse_loss(maml.predict(adapted, task.support_x), task.support_y)
    assert loss_after < loss_before
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])
    assert not any(t.requires_grad for t in adapted.values())


def test_auto_strategy_and_bad_arguments():
    assert MAML(MLP([1, 4, 1]), 0.1, loss=F.mse_loss).resolved_strategy() == "vmap"
    assert MAML(Conv4(hidden=4), 0.1, loss=F.cross_entropy).resolved_strategy() == "loop"  # on the CPU
    with pytest.raises(ValueError, match="inner_lr"):
        MAML(MLP([1, 4, 1]), 0.0, loss=F.mse_loss)
    with pytest.raises(ValueError, match="inner_steps"):
        MAML(MLP([1, 4, 1]), 0.1, inner_steps=-1, loss=F.mse_loss)
    with pytest.raises(ValueError, match="strategy"):
        MAML(MLP([1, 4, 1]), 0.1, strategy="fast", loss=F.mse_loss)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_auto_strategy_vectorises_conv4_on_a_gpu_and_matches_the_loop():
    model, batch = conv_problem()
    model, batch = model.cuda(), batch.to("cuda")
    assert MAML(model, 0.4, loss=F.cross_entropy).resolved_strategy() == "vmap"
    grads = {}
    for strategy in ("vmap", "loop"):
        loss = MAML(model, 0.4, loss=F.cross_entropy, strategy=strategy).meta_loss(batch)
        grads[strategy] = torch.autograd.grad(loss, list(model.parameters()))
    for a, b in zip(grads["vmap"], grads["loop"]):
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-9)
