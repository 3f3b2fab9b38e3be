"""Prototypical Networks (Snell, Swersky & Zemel, 2017): classify by the nearest class mean.

A network ``f`` (the *body*: no classification head) embeds every image. A task's *prototype*
of class ``k`` is the mean embedding of its support examples, ``c_k``; a query ``x`` gets the
logits ``-|f(x) - c_k|^2`` and the loss is their cross-entropy. Nothing is adapted by gradient
steps: a new task needs only a forward pass of its support set. Since
``-|f - c_k|^2 = 2 c_k . f - |c_k|^2 - |f|^2`` and the last term is the same for every class,
this is a linear classifier on the features, with weights ``2 c_k`` and biases ``-|c_k|^2``:
a linear probe whose weights are computed, not trained.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import vmap

from mtlcode.learners.base import Learner, check_inputs, check_model, measured_strategy
from mtlcode.tasks import TaskBatch

__all__ = ["ProtoNet", "prototype_logits", "prototypes"]


def prototypes(embeddings: Tensor, labels: Tensor, classes: int) -> Tensor:
    """Mean embedding of each class: ``[classes, dim]`` from ``embeddings [n, dim]`` and ``labels [n]``."""
    one_hot = F.one_hot(labels, classes).to(embeddings.dtype)  # [n, classes]
    return (one_hot.T @ embeddings) / one_hot.sum(0).unsqueeze(1)


def prototype_logits(queries: Tensor, centres: Tensor) -> Tensor:
    """Minus the squared Euclidean distance of each query ``[q, dim]`` to each prototype ``[k, dim]``."""
    return -((queries.unsqueeze(1) - centres.unsqueeze(0)) ** 2).sum(-1)


class ProtoNet(Learner):
    """Prototypical Networks on an embedding network ``body`` (e.g. ``Conv4(...).body``).

    The number of classes of a batch is ``support_y.max() + 1``; every class needs at least one
    support example. ``meta_loss(batch)`` is the mean over tasks of the query cross-entropy.
    """

    def __init__(self, body: nn.Module, *, strategy: str = "auto") -> None:
        if strategy not in ("auto", "vmap", "loop"):
            raise ValueError(f"strategy must be 'auto', 'vmap' or 'loop', got {strategy!r}")
        check_model(body, vectorised=strategy == "vmap")
        if not any(True for _ in body.parameters()):
            raise ValueError(f"{type(body).__name__} has no parameters: there is nothing to meta-learn")
        self.model = body
        self.strategy = strategy
        self._fitting_inputs: tuple | None = None  # the input signature whose trial forward pass worked

    def resolved_strategy(self) -> str:
        """As for MAML: vmap for fully connected bodies and on CUDA, the loop for convolutions on a CPU."""
        if self.strategy != "auto":
            return self.strategy
        return measured_strategy(self.model)

    def check(self, batch: TaskBatch) -> None:
        if not isinstance(batch, TaskBatch) or not batch.batched:
            raise TypeError(f"ProtoNet needs a batch of tasks (TaskBatch), got {type(batch).__name__}")
        if batch.support_y.is_floating_point():
            raise ValueError("ProtoNet classifies: batch.support_y must hold integer class labels, not floats")
        batch.check_finite()
        # The trial forward pass once per input shape, type and device, not on every training step.
        signature = (tuple(batch.support_x.shape[2:]), batch.support_x.dtype, batch.support_x.device)
        check_inputs(self.model, batch, None if signature == self._fitting_inputs else self.model)
        self._fitting_inputs = signature
        classes = int(batch.support_y.max()) + 1
        counts = torch.stack([torch.bincount(y, minlength=classes) for y in batch.support_y])
        if int(counts.min()) == 0 or int(batch.support_y.min()) < 0:
            raise ValueError(f"every class 0..{classes - 1} needs a support example in every task (a prototype is "
                             "the mean of the class's support embeddings)")
        if int(batch.query_y.min()) < 0 or int(batch.query_y.max()) >= classes:
            raise ValueError(f"query labels must lie in 0..{classes - 1}, the classes of the support set")

    def task_losses(self, batch: TaskBatch, steps: int | None = None) -> tuple[Tensor, Tensor]:
        """Query cross-entropy of every task and the query logits ``[tasks, queries, classes]``."""
        if steps is not None:
            raise ValueError("ProtoNet adapts without gradient steps: steps does not apply")
        self.check(batch)
        classes = int(batch.support_y.max()) + 1

        def one_task(sx: Tensor, sy: Tensor, qx: Tensor, qy: Tensor) -> tuple[Tensor, Tensor]:
            logits = prototype_logits(self.model(qx), prototypes(self.model(sx), sy, classes))
            return F.cross_entropy(logits, qy), logits

        data = (batch.support_x, batch.support_y, batch.query_x, batch.query_y)
        if self.resolved_strategy() == "vmap":
            return vmap(one_task)(*data)
        losses, logits = zip(*(one_task(*task) for task in zip(*data)))
        return torch.stack(losses), torch.stack(logits)

    def meta_loss(self, batch: TaskBatch) -> Tensor:
        """Mean over tasks of the query cross-entropy."""
        return self.task_losses(batch)[0].mean()
