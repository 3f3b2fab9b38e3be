"""The per-task loop that learn2learn and higher use, as a reference for tests and benchmarks.

For every task: clone the parameters, take inner steps with ``torch.autograd.grad`` (keeping the
graph for second order), compute the query loss and call ``backward`` on it. Nothing is batched.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.func import functional_call

from mtlcode.tasks import TaskBatch


def loop_meta_step(
    model: nn.Module,
    batch: TaskBatch,
    inner_lr: float,
    inner_steps: int,
    first_order: bool,
    loss: Callable[[Tensor, Tensor], Tensor],
) -> float:
    """Accumulate the MAML meta-gradient of ``batch`` into ``model``'s ``.grad``; return the loss."""
    names = [name for name, _ in model.named_parameters()]
    total = 0.0
    for task in batch:
        params = [p.clone() for p in model.parameters()]
        for _ in range(inner_steps):
            support_loss = loss(functional_call(model, dict(zip(names, params)), (task.support_x,)), task.support_y)
            grads = torch.autograd.grad(support_loss, params, create_graph=not first_order)
            params = [p - inner_lr * g for p, g in zip(params, grads)]
        query_loss = loss(functional_call(model, dict(zip(names, params)), (task.query_x,)), task.query_y)
        (query_loss / len(batch)).backward()
        total += query_loss.item()
    return total / len(batch)
