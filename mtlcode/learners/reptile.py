"""Reptile (Nichol, Achiam & Schulman, 2018): fine-tune on each task, then step towards the result.

For each task ``i`` Reptile runs ``k`` plain SGD steps from the shared initialisation ``theta``
on the task's data (support and query examples together), reaching ``phi_i``. The outer update
moves ``theta`` towards the mean of the ``phi_i``: ``theta - mean_i phi_i`` is used as the
gradient, so any optimiser (here the loop's Adam) takes the step. No second derivatives, no
query/support split in training: Reptile is fine-tuning plus a move of the starting point. With
one inner step, ``theta - phi_i = alpha * grad L_i(theta)``: joint training on the pooled tasks;
with more steps, Nichol et al. show that the update approximates first-order MAML.
At test time Reptile adapts on the support set like MAML.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.func import vmap

from mtlcode.learners.base import Stats
from mtlcode.learners.maml import MAML, Params, Strategy
from mtlcode.tasks import TaskBatch

__all__ = ["Reptile"]


class Reptile(MAML):
    """Reptile around ``model``: ``meta_gradient(batch) = {name: theta - mean_i phi_i}``.

    Args:
        inner_lr: the SGD step size of the inner steps (training and test time).
        inner_steps: SGD steps per task, on its support and query examples together.
        loss: ``loss(predictions, targets)``.
    """

    def __init__(self, model: nn.Module, inner_lr: float, *, inner_steps: int,
                 loss: Callable[[Tensor, Tensor], Tensor], strategy: Strategy = "auto",
                 chunk_size: int | None = None) -> None:
        if isinstance(inner_steps, bool) or not isinstance(inner_steps, int) or inner_steps < 1:
            raise ValueError(f"Reptile needs inner_steps >= 1 (with 0 it would not move), got {inner_steps!r}")
        # First order: phi_i is a point to move towards, never differentiated.
        super().__init__(model, inner_lr, loss=loss, inner_steps=inner_steps, first_order=True,
                         strategy=strategy, chunk_size=chunk_size)

    def _fine_tuned(self, batch: TaskBatch) -> Params:
        """``phi_i`` of every task, stacked: ``inner_steps`` SGD steps on support + query."""
        theta = {name: p.detach() for name, p in self.params().items()}
        x = torch.cat([batch.support_x, batch.query_x], dim=1)
        y = torch.cat([batch.support_y, batch.query_y], dim=1)
        if self.resolved_strategy() == "vmap":
            return vmap(lambda xi, yi: self.adapt(xi, yi, params=theta, vectorised=True),
                        chunk_size=self.chunk_size)(x, y)
        tasks = [self.adapt(xi, yi, params=theta) for xi, yi in zip(x, y)]
        return {name: torch.stack([task[name] for task in tasks]) for name in theta}

    def meta_gradient(self, batch: TaskBatch) -> Params:
        """``{name: theta - mean_i phi_i}``: the direction the outer optimiser steps against."""
        self.check(batch)
        with torch.no_grad():
            phi = self._fine_tuned(batch)
            return {name: p.detach() - phi[name].mean(0) for name, p in self.params().items()}

    def meta_backward(self, batch: TaskBatch) -> Stats:
        """Add :meth:`meta_gradient` to ``.grad``; the statistics are those after support adaptation."""
        for name, g in self.meta_gradient(batch).items():
            p = self.model.get_parameter(name)
            if p.requires_grad:
                p.grad = g.clone() if p.grad is None else p.grad + g
        losses, metrics = self.evaluate_batch(batch)
        return {"loss": losses, "metric": metrics}
