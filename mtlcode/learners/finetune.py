"""Transfer learning: pre-train a network on a source task, then fine-tune it on a target task.

Three ways to fine-tune, from the most to the least flexible:

* ``"all"``: every parameter keeps training on the target's data (continued optimisation);
* ``"head"``: the body is frozen, a fresh head is trained by gradient descent;
* ``"linear_probe"``: the body's features are computed once and a fresh linear classifier
  (or least-squares regressor) is fitted on them to convergence.

Between ``"all"`` and ``"head"`` lie the parameter-efficient modes ``"lora"``, ``"bitfit"`` and
``"film"``: the body is frozen but for a few adapter parameters, trained with a fresh head
(the adapters are in :mod:`mtlcode.learners.adapters`).

``finetune`` always works on a copy: the pre-trained model can be reused for the next task.

:class:`CosineHead` is the classifier of Baseline++ (Chen et al., 2019): logits are a fixed
scale times the cosine between the features and one weight vector per class. A model whose
``head`` is a ``CosineHead`` is pre-trained as usual, and fine-tuning it gives it a fresh cosine
head (``new_head`` keeps the kind of head the model has).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from mtlcode.learners.adapters import ADAPTER_MODES, adapter_options, add_adapters, check_adaptable

Mode = Literal["all", "head", "linear_probe", "lora", "bitfit", "film"]
MODES = ("all", "head", "linear_probe", *ADAPTER_MODES)
__all__ = ["CosineHead", "finetune", "new_head", "pretrain", "ridge_solution"]
Batches = Dataset | Callable[[torch.Generator], tuple[Tensor, Tensor]]


def _batches(data: Batches, batch_size: int, generator: torch.Generator):
    """An endless stream of ``(x, y)`` minibatches from a dataset or a batch-sampling function."""
    if callable(data) and not isinstance(data, Dataset):
        while True:
            yield data(generator)
    loader = DataLoader(data, batch_size=batch_size, shuffle=True, generator=generator, drop_last=True)
    if len(loader) == 0:
        raise ValueError(f"the dataset has {len(data)} examples, fewer than one batch of {batch_size}")
    while True:
        yield from loader


def pretrain(
    model: nn.Module,
    data: Batches,
    steps: int,
    lr: float = 1e-3,
    batch_size: int = 64,
    loss: Callable[[Tensor, Tensor], Tensor] = F.cross_entropy,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    progress: bool = True,
    callback: Callable[[int, list[float]], None] | None = None,
) -> list[float]:
    """Ordinary supervised training with Adam on the source data; returns the loss per step.

    ``data`` is a ``Dataset`` of ``(x, y)`` pairs or a function ``generator -> (x, y)`` that
    draws one minibatch (handy for synthetic sources such as pooled sinusoid tasks).
    The model is trained in place. ``callback(steps_done, losses)`` runs after every step (as
    :func:`mtlcode.meta_train`'s does), e.g. to score the model at chosen points of training.
    """
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an int >= 1, got {steps!r}")
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    if device is not None:
        model.to(device)
    device = next(model.parameters()).device
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    batches = _batches(data, batch_size, generator)
    bar = tqdm(range(steps), desc="pretrain", disable=not progress)
    for step in bar:
        x, y = next(batches)
        value = loss(model(x.to(device)), y.to(device))
        if not torch.isfinite(value):
            raise FloatingPointError(f"pre-training loss became {value.item()} at step {step}; lower lr")
        optimizer.zero_grad()
        value.backward()
        optimizer.step()
        losses.append(value.item())
        bar.set_postfix(loss=f"{losses[-1]:.4f}", refresh=False)
        if callback is not None:
            callback(step + 1, losses)
    return losses


class CosineHead(nn.Module):
    """Baseline++'s classifier (Chen et al., 2019): ``logits = scale * cos(features, w_k)`` for class ``k``.

    Each class is a weight vector ``w_k`` (a row of ``weight``, no bias); features and weights
    are normalised to unit length before the product, so the score no longer grows with the
    feature norm and classes compete on direction alone, which Chen et al. found to reduce the
    spread of features within a class. Cosines lie in ``[-1, 1]``, so without ``scale`` (a fixed
    inverse temperature) the softmax could never become confident; Chen et al. use 2 for
    fine-tuning heads and 10 for the pre-training head of many classes.
    """

    def __init__(self, in_features: int, out_features: int, scale: float = 10.0,
                 device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> None:
        super().__init__()
        if not scale > 0:
            raise ValueError(f"scale must be > 0, got {scale!r}")
        self.in_features, self.out_features, self.scale = in_features, out_features, float(scale)
        # nn.Linear's initialisation: only the directions of the rows matter here.
        self.weight = nn.Parameter(nn.Linear(in_features, out_features, bias=False, device=device,
                                             dtype=dtype).weight.detach().clone())

    def forward(self, features: Tensor) -> Tensor:
        return self.scale * F.normalize(features, dim=-1) @ F.normalize(self.weight, dim=-1).T

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, scale={self.scale}"


Head = nn.Linear | CosineHead


def _head_of(model: nn.Module) -> Head:
    head = getattr(model, "head", None)
    if not isinstance(head, (nn.Linear, CosineHead)) or not isinstance(getattr(model, "body", None), nn.Module):
        raise TypeError("a new head needs a model with a `body` and a `head` nn.Linear or CosineHead (as "
                        "mtlcode.models have)")
    return head


def new_head(model: nn.Module, outputs: int) -> Head:
    """A freshly initialised head of the kind ``model.head`` is (linear or cosine) for ``model.body``'s features."""
    head = _head_of(model)
    if isinstance(head, CosineHead):
        return CosineHead(head.in_features, outputs, head.scale, device=head.weight.device, dtype=head.weight.dtype)
    return nn.Linear(head.in_features, outputs, device=head.weight.device, dtype=head.weight.dtype)


def ridge_solution(features: Tensor, targets: Tensor, ridge: float = 0.0) -> tuple[Tensor, Tensor]:
    """The linear map ``features @ W + b`` closest to ``targets`` in squared error, plus ``ridge * |W|^2``.

    The bias is not penalised (features and targets are centred first). ``ridge = 0`` gives the
    minimum-norm least-squares solution, which exists even with fewer points than features (a
    probe on 40 features from 10 points); ``ridge > 0`` shrinks the weights, which is what makes
    such a probe generalise. Solved through ``torch.linalg.solve`` (or the pseudo-inverse for
    ``ridge = 0``), the same on every device: CUDA's ``lstsq`` handles full-rank systems only.
    Returns ``(W [features, outputs], b [outputs])``.
    """
    if not (isinstance(ridge, (int, float)) and math.isfinite(ridge) and ridge >= 0):
        raise ValueError(f"ridge must be a finite number >= 0, got {ridge!r}")
    feature_mean, target_mean = features.mean(0, keepdim=True), targets.mean(0, keepdim=True)
    x, y = features - feature_mean, targets - target_mean
    points, width = x.shape
    if ridge == 0:
        weights = torch.linalg.pinv(x) @ y
    elif points >= width:  # the primal system is the smaller one: width x width
        weights = torch.linalg.solve(x.T @ x + ridge * torch.eye(width, dtype=x.dtype, device=x.device), x.T @ y)
    else:  # the dual form, points x points: W = X^T (X X^T + ridge I)^-1 y
        eye = torch.eye(points, dtype=x.dtype, device=x.device)
        weights = x.T @ torch.linalg.solve(x @ x.T + ridge * eye, y)
    return weights, (target_mean - feature_mean @ weights)[0]


def _fit_linear_probe(head: Head, features: Tensor, targets: Tensor, steps: int, loss: Callable,
                      ridge: float = 0.0) -> None:
    if loss is F.mse_loss and isinstance(head, nn.Linear):
        # Least squares (ridge regression) has a closed form.
        weights, bias = ridge_solution(features, targets, ridge)
        head.weight.copy_(weights.T)
        head.bias.copy_(bias)
        return
    if ridge:
        raise ValueError("ridge applies to a regression probe (loss=F.mse_loss, a linear head) only")
    with torch.enable_grad():
        optimizer = torch.optim.LBFGS(head.parameters(), max_iter=steps, line_search_fn="strong_wolfe")

        def closure() -> Tensor:
            optimizer.zero_grad()
            value = loss(head(features), targets)
            value.backward()
            return value

        optimizer.step(closure)


def finetune(
    model: nn.Module,
    support_x: Tensor,
    support_y: Tensor,
    steps: int,
    lr: float,
    mode: Mode = "all",
    ways: int | None = None,
    loss: Callable[[Tensor, Tensor], Tensor] = F.cross_entropy,
    ridge: float = 0.0,
    rank: int | None = None,
    alpha: float | None = None,
) -> nn.Module:
    """Fine-tune a copy of ``model`` on one task's support set and return the copy.

    ``"all"`` takes ``steps`` full-batch SGD steps on every parameter, keeping the head unless
    ``ways`` asks for a fresh one. ``"head"`` freezes the body and trains a fresh head (``ways``
    outputs, by default as many as there are classes in ``support_y``, or the old head's size
    for regression) with SGD. ``"linear_probe"`` fits a fresh head on fixed features, with
    L-BFGS (at most ``steps`` iterations) for classification and least squares for regression
    (L-BFGS too for a :class:`CosineHead`, which has no closed form); ``ridge`` adds an L2
    penalty on the regression probe's weights (:func:`ridge_solution`). A fresh head is of the
    same kind as ``model.head``: a Baseline++ model is fine-tuned with a new cosine head.

    ``"lora"``, ``"bitfit"`` and ``"film"`` freeze the body but for its adapters
    (:func:`mtlcode.learners.adapters.add_adapters`) and train them with a fresh head, full-batch
    SGD through the whole network; ``rank`` and ``alpha`` are LoRA's (default 4 and 4.0). The
    head is drawn before LoRA's ``A``, so one seed gives every mode the same starting head.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(map(repr, MODES))}, got {mode!r}")
    if not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be an int >= 0, got {steps!r}")
    if ridge and mode != "linear_probe":
        raise ValueError(f"ridge is the linear probe's penalty; mode={mode!r} takes none")
    options = adapter_options(mode, rank, alpha)  # LoRA's, checked; {} for the other modes
    if mode in ADAPTER_MODES:
        check_adaptable(model)
    tuned = copy.deepcopy(model)
    classification = not torch.is_floating_point(support_y)
    if ways is None and mode != "all":
        ways = int(support_y.max()) + 1 if classification else _head_of(tuned).out_features
    if ways is not None:
        tuned.head = new_head(tuned, ways)
    if mode in ADAPTER_MODES:
        add_adapters(tuned, mode, **options)

    if mode == "linear_probe":
        tuned.body.requires_grad_(False)
        with torch.no_grad():
            _fit_linear_probe(tuned.head, tuned.body(support_x), support_y, steps, loss, ridge)
        return tuned

    if mode == "head":
        # The frozen body maps the support set to the same features at every step, so compute
        # them once: each step then costs one small matrix product instead of a full forward.
        tuned.body.requires_grad_(False)
        with torch.no_grad():
            features = tuned.body(support_x)
        forward, inputs = tuned.head, features
    else:
        forward, inputs = tuned, support_x
    trainable = [p for p in tuned.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(trainable, lr=lr)
    with torch.enable_grad():
        for step in range(steps):
            value = loss(forward(inputs), support_y)
            if not torch.isfinite(value):
                raise FloatingPointError(f"fine-tuning loss became {value.item()} at step {step}; lower lr")
            optimizer.zero_grad()
            value.backward()
            optimizer.step()
    return tuned
