"""Model-Agnostic Meta-Learning (Finn, Abbeel & Levine, 2017), written with ``torch.func``.

The whole algorithm fits in two formulas. For each task ``i`` the *inner loop* adapts the shared
initialisation ``theta`` on the task's support set with a few gradient steps,

    theta_i' = theta - alpha * grad L_i^support(theta),

and the *outer loop* moves ``theta`` so that the adapted parameters do well on the query sets,

    theta <- theta - beta * grad_theta  mean_i L_i^query(theta_i').

The outer gradient flows *through* the inner step, which brings in second derivatives (a
Hessian-vector product per task). First-order MAML drops that term by treating the inner
gradient as a constant.

Parameters are plain dicts ``{name: tensor}`` and the model is called with
``torch.func.functional_call``: adaptation never touches the module, and because everything is
a pure function of its inputs, ``torch.func.vmap`` can run all tasks of a batch at once.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

from mtlcode.learners.base import Learner, Stats, check_inputs, check_model, measured_strategy
from mtlcode.models import TaskBatchNorm2d
from mtlcode.tasks import TaskBatch

Params = dict[str, Tensor]
Strategy = Literal["auto", "vmap", "loop"]


def gradient_step(params: Params, grads: Params, lr: float, first_order: bool = False) -> Params:
    """``theta - lr * grad``: one inner-loop update, shared by every MAML variant in mtlcode.

    With ``first_order`` the gradient is treated as a constant, so ``d theta' / d theta`` is the
    identity and the meta-gradient loses its second-order term.
    """
    if first_order:
        grads = {name: g.detach() for name, g in grads.items()}
    return {name: p - lr * grads[name] for name, p in params.items()}


class MAML(Learner):
    """MAML around an ``nn.Module``; the module holds the meta-parameters ``theta``.

    Args:
        model: the network; its parameters are the initialisation that meta-training learns.
        inner_lr: ``alpha``, the step size of the inner (adaptation) loop.
        inner_steps: gradient steps taken on the support set during meta-training.
        first_order: drop the second-order term of the meta-gradient (FOMAML).
        loss: ``loss(predictions, targets)`` averaged over examples, e.g. ``F.mse_loss`` for
            regression or ``F.cross_entropy`` for classification. Required: no default fits both,
            and a wrong one can fail silently (cross-entropy over one output is always 0).
        strategy: how ``meta_loss`` runs the tasks of a batch: ``"vmap"`` all at once,
            ``"loop"`` one after another, ``"auto"`` picks by model and device (see :meth:`resolved_strategy`).
        chunk_size: with ``"vmap"``, how many tasks go through the model together (None: all).

    Every argument after ``inner_lr`` is keyword-only.
    """

    def __init__(
        self,
        model: nn.Module,
        inner_lr: float,
        *,
        loss: Callable[[Tensor, Tensor], Tensor],
        inner_steps: int = 1,
        first_order: bool = False,
        strategy: Strategy = "auto",
        chunk_size: int | None = None,
    ) -> None:
        if isinstance(inner_lr, bool) or not isinstance(inner_lr, (int, float)) or not 0 < inner_lr < math.inf:
            raise ValueError(f"inner_lr must be a positive finite number, got {inner_lr!r}")
        if isinstance(inner_steps, bool) or not isinstance(inner_steps, int) or inner_steps < 0:
            raise ValueError(f"inner_steps must be an int >= 0, got {inner_steps!r}")
        if strategy not in ("auto", "vmap", "loop"):
            raise ValueError(f"strategy must be 'auto', 'vmap' or 'loop', got {strategy!r}")
        if not callable(loss):
            raise TypeError(f"loss must be a function loss(predictions, targets), got {loss!r}")
        check_model(model, vectorised=strategy == "vmap")
        if not any(True for _ in model.parameters()):
            raise ValueError(f"{type(model).__name__} has no parameters: there is nothing to adapt or meta-learn")
        self.model = model
        self.inner_lr = float(inner_lr)
        self.inner_steps = inner_steps
        self.first_order = bool(first_order)
        self.loss = loss
        self.strategy = strategy
        self.chunk_size = chunk_size

    # -- the functional model ------------------------------------------------------------------

    def params(self) -> Params:
        """The meta-parameters ``theta`` as a dict (the live tensors of the model)."""
        return dict(self.model.named_parameters())

    def predict(self, params: Params, x: Tensor) -> Tensor:
        """The model's output on ``x`` with ``params`` in place of its own parameters."""
        buffers = dict(self.model.named_buffers())
        return functional_call(self.model, (params, buffers), (x,))

    def _support_loss(self, params: Params, x: Tensor, y: Tensor) -> Tensor:
        return self.loss(self.predict(params, x), y)

    # -- inner loop ----------------------------------------------------------------------------

    def inner_step(self, params: Params, support_x: Tensor, support_y: Tensor, vectorised: bool = False) -> Params:
        """One gradient step on one task's support set: ``theta - alpha * grad L(theta)``.

        Only the parameters :meth:`adapted_names` lists move (all of them for MAML), each by
        :meth:`update`. Inside ``torch.func.vmap`` (``vectorised=True``) only ``torch.func.grad``
        can take the gradient; elsewhere plain ``torch.autograd.grad`` does the same with less
        overhead.
        """
        names = set(self.adapted_names(params))
        fixed = {name: p for name, p in params.items() if name not in names}
        moving = {name: p for name, p in params.items() if name in names}

        def support_loss(moving: Params) -> Tensor:
            return self._support_loss({**fixed, **moving}, support_x, support_y)

        grads = grad(support_loss)(moving) if vectorised else self._autograd_gradients(support_loss, moving)
        return {**params, **self.update(moving, grads)}

    def adapted_names(self, params: Params) -> list[str]:
        """The parameters the inner loop adapts: every one, for MAML (ANIL: the head only)."""
        return list(params)

    def update(self, params: Params, grads: Params) -> Params:
        """The inner update of the adapted parameters: ``theta - alpha * grad`` (Meta-SGD learns alpha)."""
        return gradient_step(params, grads, self.inner_lr, self.first_order)

    def _autograd_gradients(self, loss_of: Callable[[Params], Tensor], params: Params) -> Params:
        # Keep the graph of the gradient itself (the second-order term) only when the result
        # will be differentiated: grad mode is on and we are not in first-order mode.
        create_graph = torch.is_grad_enabled() and not self.first_order
        with torch.enable_grad():
            tracked = {name: p if p.requires_grad else p.detach().requires_grad_() for name, p in params.items()}
            loss = loss_of(tracked)
            grads = torch.autograd.grad(loss, list(tracked.values()), create_graph=create_graph,
                                        materialize_grads=True)
        return dict(zip(tracked, grads))

    def adapt(
        self,
        support_x: Tensor,
        support_y: Tensor,
        steps: int | None = None,
        params: Params | None = None,
        vectorised: bool = False,
    ) -> Params:
        """Adapt to one task (tensors without the task dimension); returns the new parameters.

        The result stays differentiable with respect to the model's parameters, so it can feed
        a meta-loss; wrap the call in ``torch.no_grad()`` when only the values are needed.
        ``steps`` defaults to ``inner_steps``; ``params`` to the model's own; ``vectorised``
        must be True when called inside ``torch.func.vmap``.
        """
        steps = self.inner_steps if steps is None else steps
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
            raise ValueError(f"steps must be an int >= 0, got {steps!r}")
        params = self.params() if params is None else params
        for _ in range(steps):
            params = self.inner_step(params, support_x, support_y, vectorised)
        return params

    # -- outer loop ----------------------------------------------------------------------------

    def resolved_strategy(self) -> Literal["vmap", "loop"]:
        """The strategy ``"auto"`` stands for with this model, on the device its parameters are on.

        Measured with ``benchmarks/speed.py``: ``vmap`` wins by a wide margin on small fully
        connected networks, where per-task overhead dominates, on any device. For convolutional
        networks it depends on the device. On a CPU, batching the tasks turns every convolution
        into a grouped one, which runs more slowly than a loop of ordinary ones, so the loop is
        used there (and on Apple's MPS, which has not been measured); on a CUDA GPU the loop
        leaves the device idle between small kernels, and ``vmap`` is used. Networks with
        dropout always use the loop.
        """
        if self.strategy == "vmap" and self._vmap_is_unsafe():
            raise ValueError(
                "strategy='vmap' gives wrong second-order meta-gradients through torch.nn batch norm: "
                "PyTorch's vmap rule for its double backward is incorrect (checked on torch 2.14). Use "
                "mtlcode.models.TaskBatchNorm2d instead (Conv4 does), strategy='loop', or first_order=True."
            )
        if self.strategy != "auto":
            return self.strategy
        if self._vmap_is_unsafe() or self._has_dropout():
            return "loop"
        return measured_strategy(self.model)

    def _vmap_is_unsafe(self) -> bool:
        fused_batch_norm = any(isinstance(m, nn.modules.batchnorm._BatchNorm) and not isinstance(m, TaskBatchNorm2d)
                               for m in self.model.modules())
        return fused_batch_norm and not self.first_order and self.inner_steps > 0

    def _has_dropout(self) -> bool:
        return any(isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0 for m in self.model.modules())

    def check(self, batch: TaskBatch) -> None:
        """Refuse, with the shapes in the message, a batch that does not fit the model or the loss.

        Checked: a batched :class:`~mtlcode.tasks.TaskBatch`; data on the model's device and in
        its floating-point type; integer class labels within the model's outputs; float
        (regression) targets shaped like the model's outputs; no loss that ignores the
        predictions (cross-entropy on float targets); no NaN or infinite values.
        """
        if not isinstance(batch, TaskBatch):
            raise TypeError(f"MAML needs a TaskBatch, got {type(batch).__name__}")
        if not batch.batched:
            raise ValueError("this is a single task (batch[i]); pass a batch of tasks, e.g. batch[i:i + 1]")
        batch.check_finite()
        outputs = check_inputs(self.model, batch, lambda x: self.predict(self.params(), x))
        for name in ("support_y", "query_y"):
            self._check_targets(name, getattr(batch, name), outputs)

    def _check_targets(self, name: str, y: Tensor, outputs: Tensor) -> None:
        if y.is_floating_point():
            if self.loss is F.cross_entropy:
                raise ValueError(f"batch.{name} holds float targets (regression) but the loss is F.cross_entropy, "
                                 "which is constant 0 over a single output and trains nothing: use "
                                 "loss=F.mse_loss, or integer class labels for classification")
            if tuple(y.shape[2:]) != tuple(outputs.shape[1:]):
                raise ValueError(f"batch.{name} is shaped {tuple(y.shape)} but the model outputs "
                                 f"{tuple(outputs.shape[1:])} per example: the loss would broadcast; shape the "
                                 f"targets [tasks, examples, {', '.join(map(str, outputs.shape[1:]))}]")
            # Any loss (nn.CrossEntropyLoss(), a lambda around F.cross_entropy, ...) that does not
            # change when the predictions do trains nothing, silently.
            target = y[0, : len(outputs)]
            if len(target) == len(outputs):
                with torch.no_grad():
                    value, moved = self.loss(outputs, target), self.loss(outputs + 1.0, target)
                if bool(torch.isfinite(value).all()) and torch.equal(value, moved):
                    raise ValueError(f"the loss does not change when the predictions do (on batch.{name}), so "
                                     "meta-training would learn nothing: a cross-entropy over a single output is "
                                     "always 0. For regression use loss=F.mse_loss; for classification, integer "
                                     "class labels")
            return
        classes = outputs.shape[-1] if outputs.dim() >= 2 else 1
        if y.numel() and (int(y.min()) < 0 or int(y.max()) >= classes):
            raise ValueError(f"batch.{name} holds labels {int(y.min())}..{int(y.max())} but the model has {classes} "
                             f"outputs: labels must lie in 0..{classes - 1} (a model with ways={int(y.max()) + 1}?)")

    def _one_task(self, params: Params, steps: int | None, vectorised: bool,
                  sx: Tensor, sy: Tensor, qx: Tensor, qy: Tensor) -> tuple[Tensor, Tensor]:
        adapted = self.adapt(sx, sy, steps=steps, params=params, vectorised=vectorised)
        prediction = self.predict(adapted, qx)
        return self.loss(prediction, qy), prediction

    def task_losses(self, batch: TaskBatch, steps: int | None = None) -> tuple[Tensor, Tensor]:
        """Query loss of every task after adaptation, and the query predictions.

        Returns ``(losses [tasks], predictions [tasks, queries, ...])``, both differentiable
        with respect to the model's parameters.
        """
        self.check(batch)
        params = self.params()
        vectorised = self.resolved_strategy() == "vmap"
        data = (batch.support_x, batch.support_y, batch.query_x, batch.query_y)
        if vectorised:
            return vmap(lambda *task: self._one_task(params, steps, True, *task), chunk_size=self.chunk_size)(*data)
        losses, predictions = zip(*(self._one_task(params, steps, False, *task) for task in zip(*data)))
        return torch.stack(losses), torch.stack(predictions)

    def meta_loss(self, batch: TaskBatch) -> Tensor:
        """Mean over tasks of the query loss after adaptation: the quantity the outer loop
        minimises. ``meta_loss(batch).backward()`` fills ``model.parameters()``'s gradients."""
        return self.task_losses(batch)[0].mean()

    def meta_backward(self, batch: TaskBatch) -> Stats:
        """Add the meta-gradient of ``batch`` to ``.grad``; per-task loss and metric, detached.

        With the loop strategy each task's graph is back-propagated and freed before the next
        task's is built, so memory holds one task's graph at a time (as the per-task reference
        does) rather than the whole meta-batch's.
        """
        if self.resolved_strategy() == "vmap":
            return super().meta_backward(batch)
        self.check(batch)
        params, tasks = self.params(), len(batch)
        losses, predictions = [], []
        for task in zip(batch.support_x, batch.support_y, batch.query_x, batch.query_y):
            loss, prediction = self._one_task(params, None, False, *task)
            (loss / tasks).backward()
            losses.append(loss.detach())
            predictions.append(prediction.detach())
        predictions = torch.stack(predictions)
        return {"loss": torch.stack(losses), "metric": self.metric(predictions, batch)}
