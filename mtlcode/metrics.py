"""The per-task score: accuracy for classification, mean squared error for regression.

A module of its own because both sides use it: every learner scores its predictions with it
(:mod:`mtlcode.learners.base`), and so does the evaluation that scores the learners
(:mod:`mtlcode.evaluation`).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["task_metric"]


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
