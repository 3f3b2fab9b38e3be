"""In-context learning: a conditional neural process (Garnelo et al., 2018) reads the support set.

MAML and its family adapt to a task with gradient steps; ProtoNet with an average of
embeddings. A *conditional neural process* (CNP) goes further: one network reads the whole
support set and predicts the query set in a single forward pass, with no adaptation step at
test time. Learning a new task happens *in context*, as a language model answers from examples
in its prompt. For a task with support pairs ``(x_i, y_i)``, ``i = 1..K``:

    r_i = h(x_i, y_i)              the encoder, an MLP on the concatenated pair;
    r   = (1/K) sum_i r_i          the task's representation;
    y*  = g(x*, r)                 the decoder, an MLP, for each query input x*.

The mean makes ``r``, and every prediction, independent of the order of the support set (a set
has none), and lets a task have any number of support examples. Meta-training fits ``h`` and
``g`` by gradient descent on the query loss over many tasks: what MAML stores in an
initialisation, a CNP stores in the weights of the two networks that map a support set to a
predictor.

The loss is the mean squared error of the query predictions, the book's loss for sinusoid
regression, so a CNP is scored like every other learner. With ``likelihood="gaussian"`` the
decoder also outputs a standard deviation ``sigma = 0.1 + 0.9 softplus(s)`` (as in the authors'
published code: the floor of 0.1 keeps a few points from making the likelihood infinite) and the
loss is the Gaussian negative log-likelihood, the paper's objective; the predictions, and the
metric, are still the means.

Garnelo, Rosenbaum, Maddison, Ramalho, Saxton, Shanahan, Teh, Rezende & Eslami (2018),
"Conditional Neural Processes", ICML.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtlcode.learners.base import Learner
from mtlcode.models import MLP
from mtlcode.tasks import TaskBatch

__all__ = ["CNP", "CNPNetwork", "gaussian_nll"]

Likelihood = Literal["mse", "gaussian"]
MIN_STD = 0.1  # the floor of the Gaussian variant's standard deviation


def gaussian_nll(mean: Tensor, std: Tensor, y: Tensor) -> Tensor:
    """Per-task negative log-likelihood of ``y`` under ``N(mean, std^2)``, averaged over examples and outputs.

    ``log(2 pi)/2 + log(std) + (y - mean)^2 / (2 std^2)``; all three tensors ``[tasks, n, y_dim]``.
    """
    nll = 0.5 * math.log(2 * math.pi) + std.log() + (y - mean) ** 2 / (2 * std**2)
    return nll.flatten(1).mean(1)


class CNPNetwork(nn.Module):
    """The encoder ``h`` and decoder ``g`` of a CNP; ``forward(support_x, support_y, query_x)``.

    Tensors are ``[tasks, examples, features]``: every linear layer acts on the last dimension,
    so all tasks of a batch run at once, without ``vmap``. The decoder has ``outputs`` outputs
    per query (``y_dim``, or ``2 * y_dim`` for a mean and a standard deviation).
    """

    def __init__(self, x_dim: int, y_dim: int, hidden: Sequence[int], r_dim: int, outputs: int) -> None:
        super().__init__()
        self.encoder = MLP([x_dim + y_dim, *hidden, r_dim])
        self.decoder = MLP([x_dim + r_dim, *hidden, outputs])

    def represent(self, support_x: Tensor, support_y: Tensor) -> Tensor:
        """The task representation ``r``: the mean of ``h(x_i, y_i)`` over the support axis, ``[tasks, r_dim]``."""
        return self.encoder(torch.cat([support_x, support_y], dim=-1)).mean(dim=-2)

    def forward(self, support_x: Tensor, support_y: Tensor, query_x: Tensor) -> Tensor:
        """The decoder's outputs ``g(x*, r)`` for every query, ``[tasks, queries, outputs]``."""
        r = self.represent(support_x, support_y)
        # The same r next to every query input of its task.
        r = r.unsqueeze(-2).expand(*query_x.shape[:-1], r.shape[-1])
        return self.decoder(torch.cat([query_x, r], dim=-1))


def _width(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


class CNP(Learner):
    """A conditional neural process: predicts a task's queries from its support set in one pass.

    Args:
        x_dim, y_dim: features per input and per target (1 and 1 for sinusoids).
        hidden: the hidden widths of the encoder and of the decoder (each gets these layers).
        r_dim: the width of the representations ``r_i`` and ``r``.
        likelihood: ``"mse"`` (the default, the book's regression loss) or ``"gaussian"``
            (the decoder also predicts a standard deviation; the loss is its negative
            log-likelihood).
        device: where to build the networks (default: the CPU).

    ``steps`` is accepted by :meth:`task_losses` and :meth:`evaluate_batch` and ignored: there is no
    adaptation step, and what a CNP's predictions depend on is the number of support examples.
    Regression only (float targets).
    """

    def __init__(self, x_dim: int = 1, y_dim: int = 1, *, hidden: Sequence[int] = (128, 128), r_dim: int = 128,
                 likelihood: Likelihood = "mse", device: torch.device | str | None = None) -> None:
        self.x_dim, self.y_dim = _width("x_dim", x_dim), _width("y_dim", y_dim)
        r_dim = _width("r_dim", r_dim)
        if not isinstance(hidden, Sequence) or isinstance(hidden, str) or not all(
                isinstance(h, int) and not isinstance(h, bool) and h > 0 for h in hidden):
            raise ValueError(f"hidden must be a sequence of positive ints (the hidden widths), got {hidden!r}; "
                             "e.g. hidden=(128, 128), or () for linear encoder and decoder")
        if likelihood not in ("mse", "gaussian"):
            raise ValueError(f"likelihood must be 'mse' or 'gaussian', got {likelihood!r}")
        self.likelihood = likelihood
        outputs = 2 * self.y_dim if likelihood == "gaussian" else self.y_dim
        self.model = CNPNetwork(self.x_dim, self.y_dim, list(hidden), r_dim, outputs).to(device)

    # -- checks ----------------------------------------------------------------------------------

    def _check_tensor(self, name: str, tensor: Tensor) -> None:
        """One tensor of a task set: float, ``[tasks, examples, x_dim or y_dim]``, on the model's device and dtype."""
        width_name, width = ("x_dim", self.x_dim) if name.endswith("_x") else ("y_dim", self.y_dim)
        weight = next(self.model.parameters())
        if not tensor.is_floating_point():
            raise ValueError(f"{name} holds {tensor.dtype} values but a CNP regresses: it needs float inputs and "
                             f"targets shaped [tasks, examples, {width}] (class labels call for ProtoNet, or MAML "
                             "with F.cross_entropy); convert them with .float()")
        if tensor.dim() != 3:
            raise ValueError(f"{name} is shaped {tuple(tensor.shape)}; a CNP needs [tasks, examples, {width}] (a "
                             "single task needs a leading task dimension of 1: tensor[None])")
        if tensor.shape[-1] != width:
            raise ValueError(f"{name} has {tensor.shape[-1]} features per example (shape {tuple(tensor.shape)}) but "
                             f"this CNP was built with {width_name}={width}: reshape the data, or build "
                             f"CNP({width_name}={tensor.shape[-1]}, ...)")
        if tensor.device != weight.device:
            raise ValueError(f"{name} is on {tensor.device} but the model on {weight.device}: move the batch with "
                             f"batch.to({str(weight.device)!r}) or the learner with learner.to(...)")
        if tensor.dtype != weight.dtype:
            raise ValueError(f"{name} is {tensor.dtype} but the model's parameters are {weight.dtype}: convert one "
                             f"of them (batch.to(dtype={weight.dtype}) or learner.model.to({tensor.dtype}))")

    def _check_support(self, name: str, support_x: Tensor) -> None:
        # r is a mean over the support set: with no example it is 0/0, and every prediction NaN.
        if support_x.shape[1] < 1:
            raise ValueError(f"{name} holds no support examples (shape {tuple(support_x.shape)}): r is the mean of "
                             "their encodings, so every task needs at least one")

    def check(self, batch: TaskBatch) -> None:
        """Refuse, naming the tensor and the fix, a batch that a CNP cannot read.

        Checked: a batched :class:`~mtlcode.tasks.TaskBatch`; float inputs and targets (regression
        only) of widths ``x_dim`` and ``y_dim``; data on the model's device and in its dtype; at
        least one support and one query example per task; no NaN or infinite values.
        """
        if not isinstance(batch, TaskBatch):
            raise TypeError(f"CNP needs a TaskBatch, got {type(batch).__name__}")
        if not batch.batched:
            raise ValueError("this is a single task (batch[i]); pass a batch of tasks, e.g. batch[i:i + 1]")
        for name in ("support_x", "support_y", "query_x", "query_y"):
            self._check_tensor(f"batch.{name}", getattr(batch, name))
        self._check_support("batch.support_x", batch.support_x)
        if batch.query_x.shape[1] < 1:  # the loss is a mean over the queries: NaN over none
            raise ValueError(f"batch.query_x holds no query examples (shape {tuple(batch.query_x.shape)}): the loss "
                             "is their mean; give every task at least one (or call predict for predictions only)")
        batch.check_finite()

    def _check_inputs(self, support_x: Tensor, support_y: Tensor, query_x: Tensor) -> None:
        """The checks of :meth:`check`, for tensors given one by one (no query targets)."""
        tensors = {"support_x": support_x, "support_y": support_y, "query_x": query_x}
        for name, tensor in tensors.items():
            if not isinstance(tensor, Tensor):
                raise TypeError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}")
            self._check_tensor(name, tensor)
        if len({t.shape[0] for t in tensors.values()}) != 1 or support_x.shape[1] != support_y.shape[1]:
            raise ValueError(f"support_x {tuple(support_x.shape)}, support_y {tuple(support_y.shape)} and query_x "
                             f"{tuple(query_x.shape)} need the same number of tasks, and support_x and support_y "
                             "the same number of examples")
        self._check_support("support_x", support_x)
        for name, tensor in tensors.items():
            if not bool(torch.isfinite(tensor).all()):
                bad = int((~torch.isfinite(tensor)).sum())
                raise ValueError(f"{name} holds {bad} NaN or infinite value(s); clean the data first")

    # -- predictions and losses ------------------------------------------------------------------

    def _mean_and_std(self, support_x: Tensor, support_y: Tensor, query_x: Tensor) -> tuple[Tensor, Tensor | None]:
        out = self.model(support_x, support_y, query_x)
        if self.likelihood == "mse":
            return out, None
        mean, raw = out.split(self.y_dim, dim=-1)
        return mean, MIN_STD + (1 - MIN_STD) * F.softplus(raw)

    def predict(self, support_x: Tensor, support_y: Tensor, query_x: Tensor) -> Tensor:
        """The mean prediction at ``query_x`` given the support set, ``[tasks, queries, y_dim]``.

        Checked like a batch. Differentiable; wrap it in ``torch.no_grad()`` to only plot.
        """
        self._check_inputs(support_x, support_y, query_x)
        return self._mean_and_std(support_x, support_y, query_x)[0]

    def mean_and_std(self, support_x: Tensor, support_y: Tensor, query_x: Tensor) -> tuple[Tensor, Tensor]:
        """The predictive mean and standard deviation at ``query_x`` (``likelihood="gaussian"`` only)."""
        if self.likelihood != "gaussian":
            raise ValueError("this CNP predicts means only (likelihood='mse'); build CNP(..., likelihood='gaussian') "
                             "for a standard deviation")
        self._check_inputs(support_x, support_y, query_x)
        return self._mean_and_std(support_x, support_y, query_x)  # type: ignore[return-value]

    def task_losses(self, batch: TaskBatch, steps: int | None = None) -> tuple[Tensor, Tensor]:
        """Query loss of every task and the query predictions ``[tasks, queries, y_dim]``, in one pass.

        ``steps`` is ignored: a CNP has no adaptation step (it is accepted so that
        :func:`mtlcode.evaluate` can pass it to every learner alike).
        """
        self.check(batch)
        mean, std = self._mean_and_std(batch.support_x, batch.support_y, batch.query_x)
        if std is None:
            losses = F.mse_loss(mean, batch.query_y, reduction="none").flatten(1).mean(1)
        else:
            losses = gaussian_nll(mean, std, batch.query_y)
        return losses, mean

    def meta_loss(self, batch: TaskBatch) -> Tensor:
        """Mean over tasks of the query loss: what meta-training minimises."""
        return self.task_losses(batch)[0].mean()
