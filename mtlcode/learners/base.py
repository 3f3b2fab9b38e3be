"""The interface every learner implements, and that the loop, evaluation and command line use.

A *learner* holds a network (``model``) whose parameters are meta-learned, and knows how to adapt
it to a task. The training loop (:func:`mtlcode.meta_train`), the evaluation
(:func:`mtlcode.evaluate`), the benchmarks and ``python -m mtlcode`` rely on these methods only:

* ``meta_backward(batch)``: add the meta-gradient of the batch to ``.grad`` of
  ``parameters()`` and return per-task statistics (``"loss"`` and ``"metric"``, detached);
* ``evaluate_batch(batch, steps)``: per-task query loss and metric after adaptation, no gradient;
* ``parameters()``: what the outer optimiser updates (the model's parameters, plus any learned
  step sizes);
* ``state_dict()`` / ``load_state_dict()``: what a checkpoint saves;
* ``check(batch)``: a clear error, up front, when a batch does not fit the learner.

Most learners only define ``task_losses(batch, steps)``, the per-task query losses and
predictions after adaptation, differentiable with respect to ``parameters()``, which calls
``check`` first; the defaults below build the rest on it. A learner whose outer update is not
the gradient of a loss (Reptile) overrides ``meta_backward``.
"""

from __future__ import annotations

from abc import ABC
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor, nn

from mtlcode.metrics import task_metric

__all__ = ["Learner", "check_inputs", "check_model", "measured_strategy"]

Stats = dict[str, Tensor]


class Learner(ABC):
    """Base class of mtlcode's meta-learners; subclasses set ``self.model`` and ``task_losses``."""

    model: nn.Module

    def task_losses(self, batch: Any, steps: int | None = None) -> tuple[Tensor, Tensor]:
        """``(losses [tasks], predictions [tasks, queries, ...])`` on the query sets after adaptation.

        Supervised learners define it; a learner without predictions (meta-RL) defines
        ``meta_backward`` and ``evaluate_batch`` instead.
        """
        raise NotImplementedError(f"{type(self).__name__} defines neither task_losses nor meta_backward")

    def metric(self, predictions: Tensor, batch: Any) -> Tensor:
        """The per-task score of ``predictions`` (accuracy or MSE, :func:`mtlcode.metrics.task_metric`)."""
        return task_metric(predictions, batch.query_y)

    def check(self, batch: Any) -> None:  # noqa: B027 (optional to override: accepting is a fine default)
        """Raise a clear error when ``batch`` does not fit this learner (default: accept)."""

    def meta_backward(self, batch: Any) -> Stats:
        """Accumulate the gradient of the mean query loss into ``.grad``; per-task loss and metric."""
        losses, predictions = self.task_losses(batch)
        losses.mean().backward()
        return {"loss": losses.detach(), "metric": self.metric(predictions.detach(), batch)}

    def evaluate_batch(self, batch: Any, steps: int | None = None) -> tuple[Tensor, Tensor]:
        """Per-task query loss and metric after ``steps`` adaptation steps (default: the learner's)."""
        with torch.no_grad():
            losses, predictions = self.task_losses(batch, steps=steps)
        return losses, self.metric(predictions, batch)

    def to(self, device: torch.device | str) -> Learner:
        """Move the learner's tensors (by default the model) to ``device``; returns the learner."""
        self.model.to(device)
        return self

    def parameters(self) -> Iterator[nn.Parameter]:
        """What the outer optimiser trains: by default the model's parameters."""
        return self.model.parameters()

    def state_dict(self) -> dict[str, Any]:
        """Everything a checkpoint must hold to restore the learner (by default the model's state)."""
        return self.model.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned; another learner's state is refused, saying so.

        A learner with more to restore than its model (Meta-SGD's step sizes) overrides both methods.
        """
        own = self.model.state_dict()
        if not isinstance(state, dict) or not set(state) & set(own):
            # Else torch lists every key of the model as missing, without saying whose state it is.
            found = ", ".join(map(repr, sorted(state)[:3])) if isinstance(state, dict) else type(state).__name__
            hint = ("; its 'model' entry fits this model: load state['model'] to start from that initialisation"
                    if isinstance(state, dict) and isinstance(state.get("model"), dict)
                    and set(state["model"]) == set(own) else "")
            raise ValueError(f"this state ({found}) holds none of the keys of {type(self).__name__}'s model (such "
                             f"as {next(iter(own))!r}): it was written by another learner; load it with that "
                             f"learner{hint}")
        self.model.load_state_dict(state)


def measured_strategy(model: nn.Module) -> str:
    """The faster way to run a batch of tasks through ``model``, as ``benchmarks/speed.py`` measured it.

    ``"vmap"`` for networks without convolutions on any device, and for every network on CUDA;
    ``"loop"`` for convolutional networks elsewhere (on a CPU, batching the tasks turns each
    convolution into a slower grouped one).
    """
    has_conv = any(isinstance(m, nn.modules.conv._ConvNd) for m in model.modules())
    on_cuda = any(p.is_cuda for p in model.parameters())
    return "vmap" if on_cuda or not has_conv else "loop"


def check_model(model: nn.Module, *, vectorised: bool) -> None:
    """Refuse networks that break functional adaptation, saying what to change.

    * Batch norm with running statistics: adapting on a task would update statistics shared by
      every task (and ``evaluate`` would change the model). mtlcode's models normalise with each
      batch's own statistics (``track_running_stats=False``).
    * Dropout under ``vmap``: random ops need ``randomness`` settings that MAML's meta-gradient
      does not support; use ``strategy="loop"`` or drop the dropout.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"a learner needs an nn.Module, got {type(model).__name__}")
    for name, module in model.named_modules():
        if isinstance(module, nn.modules.batchnorm._NormBase) and module.track_running_stats:
            raise ValueError(
                f"{name or 'the model'} ({type(module).__name__}) tracks running statistics, which adaptation "
                "would update for every task; build it with track_running_stats=False (or use "
                "mtlcode.models.TaskBatchNorm2d, as Conv4 does)")
        if vectorised and isinstance(module, nn.modules.dropout._DropoutNd) and module.p > 0:
            raise ValueError(f"{name} ({type(module).__name__}, p={module.p}) cannot run under vmap; use "
                             "strategy='loop' or remove the dropout")


def _first_layer(model: nn.Module) -> str:
    """What the model's first layer takes, for an error message."""
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            return f"its first layer ({name}) takes {module.in_features} features per example"
        if isinstance(module, nn.modules.conv._ConvNd):
            size = getattr(model, "feature_dim", None)
            built = (f"; a Conv4 is built for one image size (Conv4(..., image_size=...)), its head taking {size} "
                     "features") if size is not None else ""
            return f"its first convolution ({name}) takes {module.in_channels} channels{built}"
    return "see its first layer"


def check_inputs(model: nn.Module, batch: Any, forward: Callable[[Tensor], Tensor] | None) -> Tensor | None:
    """Refuse inputs the model cannot take, naming the argument and the fix; return ``forward`` of task 0's support set.

    Checked before any training step: the device and the floating-point type of ``support_x`` and
    ``query_x``, then one forward pass (no gradient) of the first task's support examples, whose
    failure (a width, channel count or image size the model was not built for) becomes a
    ``ValueError`` that says what the model takes, instead of torch's matrix-shape message.
    With ``forward=None`` the forward pass is skipped (a caller that has already run it on
    examples of this shape) and None is returned.
    """
    weight = next(model.parameters())
    for name in ("support_x", "query_x"):
        x = getattr(batch, name)
        if x.device != weight.device:
            raise ValueError(f"batch.{name} is on {x.device} but the model on {weight.device}: move the batch "
                             f"with batch.to({str(weight.device)!r}) or the model with model.to(...)")
        if not x.is_floating_point():
            raise ValueError(f"batch.{name} holds {x.dtype} values, but a network computes in floating point: "
                             f"convert the batch, e.g. batch.to(dtype={weight.dtype})")
        if x.dtype != weight.dtype:
            raise ValueError(f"batch.{name} is {x.dtype} but the model's parameters are {weight.dtype}: "
                             f"convert one of them (batch.to(dtype={weight.dtype}) or model.to({x.dtype}))")
    if batch.support_x.shape[2:] != batch.query_x.shape[2:]:
        raise ValueError(f"support and query examples differ in shape ({list(batch.support_x.shape[2:])} and "
                         f"{list(batch.query_x.shape[2:])}): both must be what the model takes")
    if forward is None:
        return None
    try:
        with torch.no_grad():
            return forward(batch.support_x[0])
    except RuntimeError as error:
        message = str(error).splitlines()[0]
        raise ValueError(f"the model cannot take examples shaped {list(batch.support_x.shape[2:])} "
                         f"(batch.support_x is {list(batch.support_x.shape)}): {_first_layer(model)} "
                         f"(torch: {message})") from error
