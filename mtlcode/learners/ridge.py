"""R2-D2 (Bertinetto, Henriques, Torr & Vedaldi, 2019): a ridge-regression head solved in closed form.

A network ``phi`` (the *body*: no classification head) embeds every example. For each task,
the support embeddings, with a column of ones appended, are the rows of ``Phi`` (``n x d``,
``n`` support examples), and ``Y`` (``n x k``) holds their one-hot labels. The head is the
ridge regression of ``Y`` on ``Phi``::

    W = argmin_W |Phi W - Y|^2 + lambda |W|^2 = (Phi^T Phi + lambda I_d)^{-1} Phi^T Y
                                              = Phi^T (Phi Phi^T + lambda I_n)^{-1} Y

The two forms are equal by the Woodbury identity; the second solves an ``n x n`` system,
small in few-shot learning (25 support examples against hundreds or thousands of features),
so it is the one used here. A query ``x`` gets the logits ``alpha * phi~(x) W + beta``
(``phi~``: ``phi`` with the 1 appended) and the loss is their cross-entropy.

Nothing is adapted by gradient steps, yet the head is fitted to the task, not averaged as
ProtoNet's prototypes are: a new task costs one forward pass of its support set and one small
linear solve. The solve is differentiable (``torch.linalg.solve`` has a backward), so the
outer loop trains the body through it, together with three scalars: ``alpha`` and ``beta``
calibrate a regression output (about 0 or 1) as logits, and ``lambda = exp(log_lambda)``, kept
positive by its log, sets how strongly each task's head is shrunk.

Why the column of ones: the one-hot targets are not centred (each column of ``Y`` averages
``1/k`` on a balanced support set), and without an intercept the fit would have to build that
constant out of the features. Its weight, one bias per class, is penalised by ``lambda`` like
the others, as in R2-D2 (a body that wants its bias shrunk less can learn a large constant
feature of its own). ``beta`` is
a different thing, one number added to every logit, which the softmax ignores: under
cross-entropy its gradient is zero up to rounding. In float32 Adam, which divides each
gradient by its own recent size, can blow that rounding up to steps of order ``meta_lr``, so
``beta`` wanders, but no loss or prediction changes with it. It is kept because the paper has it.

:func:`mtlcode.learners.finetune.ridge_solution` solves the same regression for the linear
probe of transfer learning, the twin of R2-D2 without meta-training (Tian et al., 2020,
"Rethinking few-shot image classification": a probe on the frozen features of a pre-trained
network). It is not reused here: it fits one task at a time (it centres with ``mean(0)``,
which on a batch would average over tasks), takes ``ridge`` as a Python number (a learned
``lambda`` is a tensor in the graph), and leaves its bias unpenalised (by centring).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import vmap

from mtlcode.learners.base import Learner, check_model, measured_strategy
from mtlcode.tasks import TaskBatch

__all__ = ["R2D2", "ridge_logits", "ridge_weights", "with_bias"]

SCALARS = ("log_lambda", "alpha", "beta")


def with_bias(features: Tensor) -> Tensor:
    """``features [..., n, d]`` with a column of ones appended: ``[..., n, d + 1]``."""
    return torch.cat([features, features.new_ones(*features.shape[:-1], 1)], dim=-1)


def ridge_weights(features: Tensor, targets: Tensor, lam: Tensor | float) -> Tensor:
    """Ridge regression ``Phi^T (Phi Phi^T + lam I)^{-1} Y`` of ``targets`` on ``features``, batched.

    ``features [..., n, d]``, ``targets [..., n, k]``, ``lam > 0`` (a number or a scalar
    tensor); returns ``W [..., d, k]``. One ``n x n`` solve per task, all tasks in one call.
    """
    points = features.shape[-2]
    eye = torch.eye(points, dtype=features.dtype, device=features.device)
    gram = features @ features.mT  # [..., n, n]: inner products of the support examples
    # solve, not inv: cheaper and more accurate, and its backward is one more solve.
    return features.mT @ torch.linalg.solve(gram + lam * eye, targets)


def ridge_logits(support: Tensor, labels: Tensor, queries: Tensor, classes: int, log_lambda: Tensor,
                 alpha: Tensor | float = 1.0, beta: Tensor | float = 0.0) -> Tensor:
    """R2-D2's query logits ``alpha * [queries, 1] W + beta``, ``W`` the ridge fit of the one-hot labels.

    ``support [..., n, d]`` embeddings with integer ``labels [..., n]`` in ``0..classes-1``,
    ``queries [..., q, d]``; returns ``[..., q, classes]``. Differentiable with respect to the
    embeddings and the three scalars.
    """
    targets = F.one_hot(labels, classes).to(support.dtype)
    weights = ridge_weights(with_bias(support), targets, log_lambda.exp())
    return alpha * (with_bias(queries) @ weights) + beta


def _first_layer(body: nn.Module) -> nn.Module | None:
    """The first layer of a sequential body when it is linear or convolutional, else None.

    Only ``nn.Sequential`` (as ``MLP.body`` and ``Conv4.body`` are) runs its modules in the
    order they are listed; in any other module the first one listed need not run first.
    """
    layer = body
    while isinstance(layer, nn.Sequential) and len(layer):
        layer = layer[0]
    return layer if isinstance(layer, (nn.Linear, nn.modules.conv._ConvNd)) else None


def _is_label_dtype(t: Tensor) -> bool:
    return not (t.is_floating_point() or t.is_complex() or t.dtype == torch.bool)


class R2D2(Learner):
    """R2-D2 on an embedding network ``body`` (e.g. ``Conv4(...).body`` or ``MLP(...).body``).

    The number of classes of a batch is ``support_y.max() + 1``; every class needs a support
    example in every task. ``lam``, ``alpha`` and ``beta`` are the initial values of the learned
    scalars (``lambda`` is stored as ``log_lambda``); they take the dtype and device of the
    body's parameters. ``parameters()`` yields the body's parameters and then the scalars, and
    ``state_dict()`` holds both. ``strategy`` runs the body over the tasks as ProtoNet does
    (``vmap``, or a ``loop`` for convolutions on a CPU); the ridge solves are batched either way.
    """

    def __init__(self, body: nn.Module, *, lam: float = 1.0, alpha: float = 1.0, beta: float = 0.0,
                 strategy: str = "auto") -> None:
        if strategy not in ("auto", "vmap", "loop"):
            raise ValueError(f"strategy must be 'auto', 'vmap' or 'loop', got {strategy!r}")
        check_model(body, vectorised=strategy == "vmap")
        weight = next(body.parameters(), None)
        if weight is None:
            raise ValueError(f"{type(body).__name__} has no parameters: there is nothing to meta-learn")
        for name, value in (("lam", lam), ("alpha", alpha), ("beta", beta)):
            positive = name == "lam"  # its log is stored; at 0 the system is singular when n > d
            if (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
                    or (positive and value <= 0)):
                raise ValueError(f"{name} must be a finite number{' > 0' if positive else ''}, got {value!r}")
        self.model = body
        self.strategy = strategy
        initial = {"log_lambda": math.log(lam), "alpha": alpha, "beta": beta}
        self.scalars = nn.ParameterDict({
            name: nn.Parameter(torch.tensor(float(value), dtype=weight.dtype, device=weight.device))
            for name, value in initial.items()})

    @property
    def lam(self) -> Tensor:
        """The ridge penalty ``exp(log_lambda)``, always positive."""
        return self.scalars["log_lambda"].exp()

    def resolved_strategy(self) -> str:
        """As for ProtoNet: vmap for fully connected bodies and on CUDA, the loop for convolutions on a CPU."""
        return self.strategy if self.strategy != "auto" else measured_strategy(self.model)

    def check(self, batch: TaskBatch) -> None:
        if not isinstance(batch, TaskBatch) or not batch.batched:
            raise TypeError(f"R2D2 needs a batch of tasks (TaskBatch), got {type(batch).__name__}"
                            + (" (a single task: use batch[i:i+1])" if isinstance(batch, TaskBatch) else ""))
        if batch.support_y.shape[1] == 0:
            raise ValueError("the support set is empty: each task needs at least one support example per class")
        for name in ("support_y", "query_y"):
            labels = getattr(batch, name)
            if not _is_label_dtype(labels) or labels.dim() != 2:
                raise ValueError(f"R2D2 classifies: batch.{name} must hold integer class labels shaped [tasks, "
                                 f"examples], got {labels.dtype} {tuple(labels.shape)}; convert with .long()")
        if batch.support_x.shape[2:] != batch.query_x.shape[2:]:
            raise ValueError(f"support_x examples are shaped {tuple(batch.support_x.shape[2:])} but query_x "
                             f"examples {tuple(batch.query_x.shape[2:])}: both sets need the same input width")
        batch.check_finite()
        self._check_fits_body(batch.support_x)
        classes = int(batch.support_y.max()) + 1
        counts = torch.stack([torch.bincount(y.clamp(min=0), minlength=classes) for y in batch.support_y])
        if int(batch.support_y.min()) < 0 or int(counts.min()) == 0:
            raise ValueError(f"every class 0..{classes - 1} needs a support example in every task (the ridge "
                             "regression has no target for a missing class); relabel each task's classes 0..k-1")
        if int(batch.query_y.min()) < 0 or int(batch.query_y.max()) >= classes:
            raise ValueError(f"query labels must lie in 0..{classes - 1}, the classes of the support set")

    def _check_fits_body(self, support_x: Tensor) -> None:
        """Device, dtype and input width of the data against the body's, named before a forward fails."""
        weight = next(self.model.parameters())
        if support_x.device != weight.device:
            raise ValueError(f"the batch is on {support_x.device} but the body on {weight.device}: "
                             "use batch.to(device)")
        if support_x.dtype != weight.dtype:
            raise ValueError(f"the batch is {support_x.dtype} but the body's parameters are {weight.dtype}: "
                             f"use batch.to(dtype={weight.dtype})")
        first = _first_layer(self.model)
        if isinstance(first, nn.Linear) and support_x.shape[-1] != first.in_features:
            raise ValueError(f"examples have {support_x.shape[-1]} features but the body's first layer takes "
                             f"{first.in_features}: build the body for inputs of width {support_x.shape[-1]}")
        if (isinstance(first, nn.modules.conv._ConvNd) and support_x.dim() > 2
                and support_x.shape[2] != first.in_channels):
            raise ValueError(f"images have {support_x.shape[2]} channels but the body's first convolution takes "
                             f"{first.in_channels}: build the body with in_channels={support_x.shape[2]}")

    def embed(self, x: Tensor) -> Tensor:
        """The body's features of every task's examples: ``[tasks, examples, dim]``.

        Each task goes through the body on its own (batch norm then sees one task's statistics).
        """
        if self.resolved_strategy() == "vmap":
            features = vmap(self.model)(x)
        else:
            features = torch.stack([self.model(task) for task in x])
        if features.dim() != 3:
            raise ValueError(f"the body must map each example to a flat feature vector, got features shaped "
                             f"{tuple(features.shape[1:])} per task; end the body with nn.Flatten()")
        return features

    def task_losses(self, batch: TaskBatch, steps: int | None = None) -> tuple[Tensor, Tensor]:
        """Query cross-entropy of every task and the query logits ``[tasks, queries, classes]``.

        ``steps`` is accepted and ignored: the head is solved exactly, there are no steps to count.
        """
        self.check(batch)
        classes = int(batch.support_y.max()) + 1
        logits = ridge_logits(self.embed(batch.support_x), batch.support_y.long(), self.embed(batch.query_x),
                              classes, self.scalars["log_lambda"], self.scalars["alpha"], self.scalars["beta"])
        losses = F.cross_entropy(logits.transpose(1, 2), batch.query_y.long(), reduction="none").mean(1)
        return losses, logits

    def meta_loss(self, batch: TaskBatch) -> Tensor:
        """Mean over tasks of the query cross-entropy."""
        return self.task_losses(batch)[0].mean()

    def parameters(self) -> Iterator[nn.Parameter]:
        yield from self.model.parameters()
        yield from self.scalars.values()

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "scalars": self.scalars.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        # Checked before anything is loaded, so that a refused state leaves the learner as it was.
        if not isinstance(state, dict) or set(state) != {"model", "scalars"}:
            found = ", ".join(map(repr, sorted(state)[:3])) if isinstance(state, dict) else type(state).__name__
            raise ValueError(f"not an R2D2 state (expected the keys 'model' and 'scalars', got {found}): it was "
                             "written by another learner; load it with that learner")
        scalars = state["scalars"]
        if not isinstance(scalars, dict) or set(scalars) != set(SCALARS):
            found = sorted(scalars) if isinstance(scalars, dict) else type(scalars).__name__
            raise ValueError(f"not an R2D2 state: its 'scalars' hold {found}, not {', '.join(SCALARS)}; it was "
                             "written by another learner or edited")
        self.model.load_state_dict(state["model"])
        self.scalars.load_state_dict(state["scalars"])

    def to(self, device: torch.device | str) -> Learner:
        self.model.to(device)
        self.scalars.to(device)
        return self
