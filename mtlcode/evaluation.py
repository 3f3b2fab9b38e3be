"""Scoring learners on test tasks: the per-task metric, and its mean with a 95% interval.

Every learner (see :mod:`mtlcode.learner`) and every fine-tuning baseline is scored the same way:
adapt on each test task's support set, predict its query set, compute one number per task
(accuracy for classification, mean squared error for regression), and report the mean over tasks
with the half-width of its 95% confidence interval.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import Tensor
from tqdm import tqdm

from mtlcode.learner import Learner
from mtlcode.tasks import TaskBatch

__all__ = ["Evaluation", "evaluate", "task_metric"]

TaskSource = Callable[[torch.Generator], TaskBatch]
AdaptAndPredict = Callable[[Tensor, Tensor, Tensor], Tensor]


def _is_classification(predictions: Tensor, targets: Tensor) -> bool:
    return not torch.is_floating_point(targets) and predictions.dim() == targets.dim() + 1


def task_metric(predictions: Tensor, targets: Tensor) -> Tensor:
    """Per-task accuracy (classification) or mean squared error (regression).

    Both tensors are shaped ``[tasks, queries, ...]``; the result is ``[tasks]``.
    """
    if _is_classification(predictions, targets):
        return (predictions.argmax(-1) == targets).float().mean(dim=1)
    if predictions.shape != targets.shape:
        raise ValueError(f"predictions {tuple(predictions.shape)} and regression targets {tuple(targets.shape)} "
                         "must have the same shape (targets [tasks, queries, outputs])")
    return ((predictions - targets) ** 2).flatten(1).mean(dim=1)


@dataclass(frozen=True)
class Evaluation:
    """Mean of a per-task metric with the half-width of its 95% confidence interval."""

    mean: float
    ci95: float
    values: list[float]

    def __str__(self) -> str:
        return f"{self.mean:.4f} ± {self.ci95:.4f} (95% CI, {len(self.values)} tasks)"


def _task_batches(tasks: TaskBatch | Iterable[TaskBatch] | TaskSource, num_tasks: int | None,
                  seed: int) -> Iterable[TaskBatch]:
    if isinstance(tasks, TaskBatch):
        yield tasks
    elif callable(tasks):
        if num_tasks is None:
            raise ValueError("num_tasks is needed when tasks is a sampling function")
        generator = torch.Generator().manual_seed(seed)
        drawn = 0
        while drawn < num_tasks:
            batch = tasks(generator)
            batch = batch[: num_tasks - drawn]
            drawn += len(batch)
            yield batch
    else:
        yield from tasks


def _steps(steps: int | None) -> int | None:
    if steps is None:
        return None
    if isinstance(steps, bool):
        raise TypeError(f"steps must be an int >= 0 or None, got {steps!r}")
    steps = operator.index(steps)
    if steps < 0:
        raise ValueError(f"steps must be an int >= 0 or None, got {steps}")
    return steps


def evaluate(
    method: Learner | AdaptAndPredict,
    tasks: TaskBatch | Iterable[TaskBatch] | TaskSource,
    num_tasks: int | None = None,
    steps: int | None = None,
    seed: int = 0,
    device: torch.device | str | None = None,
    progress: bool = False,
) -> Evaluation:
    """Score ``method`` on test tasks: mean and 95% confidence interval over tasks.

    ``method`` is a :class:`~mtlcode.learner.Learner` (adapted with ``steps`` inner steps,
    default its own) or any ``adapt_and_predict(support_x, support_y, query_x) -> predictions``
    function for one task, such as a fine-tuning baseline. ``tasks`` is a batch, an iterable of
    batches, or a sampling function ``generator -> TaskBatch`` called (with a generator seeded by
    ``seed``) until ``num_tasks`` tasks are drawn. The metric is query accuracy for
    classification and MSE for regression.
    """
    steps = _steps(steps)
    if num_tasks is not None and (isinstance(num_tasks, bool) or operator.index(num_tasks) < 1):
        raise ValueError(f"num_tasks must be an int >= 1, got {num_tasks!r}")
    values: list[Tensor] = []
    for batch in tqdm(_task_batches(tasks, num_tasks, seed), desc="evaluate", disable=not progress):
        if device is not None:
            batch = batch.to(device)
        if isinstance(method, Learner):
            _, metrics = method.evaluate_batch(batch, steps=steps)
        else:
            if steps is not None:
                raise ValueError("steps applies to learners; a fine-tuning function sets its own steps")
            predictions = torch.stack([method(t.support_x, t.support_y, t.query_x).detach() for t in batch])
            metrics = task_metric(predictions, batch.query_y)
        values.append(metrics.cpu())
    if not values:
        raise ValueError("no tasks to evaluate on")
    scores = torch.cat(values).double()
    n = len(scores)
    half_width = 1.96 * scores.std().item() / math.sqrt(n) if n > 1 else float("nan")
    return Evaluation(scores.mean().item(), half_width, scores.tolist())
