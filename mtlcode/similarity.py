"""How much does adaptation change a network's representations? Linear CKA, layer by layer.

Raghu et al. (2020) asked whether MAML's inner loop learns new features or reuses the ones the
outer loop built. They compared each layer's activations on the same inputs before and after
adaptation with a similarity index that does not care about rotations or the scale of the
feature space. Linear CKA (centred kernel alignment, Kornblith et al., 2019) is such an index:
for activations ``X [n, p]`` and ``Y [n, q]`` of the same ``n`` inputs, centred per feature::

    CKA(X, Y) = |Y^T X|_F^2 / (|X^T X|_F |Y^T Y|_F),

which is 1 when ``Y`` is a rotation and rescaling of ``X`` and near 0 when they are unrelated.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.func import functional_call

__all__ = ["linear_cka", "layer_outputs"]


def linear_cka(x: Tensor, y: Tensor) -> Tensor:
    """Linear CKA of two activation matrices of the same inputs, ``[n, p]`` and ``[n, q]`` (rows = inputs).

    Higher-dimensional activations (``[n, C, H, W]``) are flattened per input first.
    """
    if x.dim() < 2 or y.dim() < 2 or x.shape[0] != y.shape[0]:
        raise ValueError(f"linear_cka needs two [inputs, features] tensors with the same number of inputs, "
                         f"got {tuple(x.shape)} and {tuple(y.shape)}")
    if x.shape[0] < 2:
        raise ValueError("linear_cka needs at least two inputs: one input has nothing to centre against")
    x, y = x.flatten(1).double(), y.flatten(1).double()
    x, y = x - x.mean(0), y - y.mean(0)
    # |Y^T X|_F^2 = <X X^T, Y Y^T>_F: with the [n, n] Gram matrices the cost does not grow with
    # the number of features (a conv layer's flattened map has thousands; a task has ~100 inputs).
    gram_x, gram_y = x @ x.T, y @ y.T
    cross = (gram_x * gram_y).sum()
    norms = gram_x.square().sum().sqrt() * gram_y.square().sum().sqrt()
    if norms == 0:
        raise ValueError("linear_cka is undefined for constant activations (every input gives the same output)")
    return cross / norms


def layer_outputs(model: nn.Module, layers: Sequence[str], x: Tensor,
                  params: dict[str, Tensor] | None = None) -> dict[str, Tensor]:
    """The outputs of the named submodules of ``model`` on ``x``, with ``params`` in place of its own.

    ``layers`` are names from ``model.named_modules()``, e.g. ``"body.0"`` for ``Conv4``'s first
    block and ``"head"`` for its output layer. Returns ``{name: output}``, detached.
    """
    modules = dict(model.named_modules())
    unknown = [name for name in layers if name not in modules]
    if unknown:
        raise ValueError(f"{type(model).__name__} has no submodules {unknown}; "
                         f"choose from {[n for n in modules if n]}")
    outputs: dict[str, Tensor] = {}
    hooks = [modules[name].register_forward_hook(
        lambda _module, _inputs, output, name=name: outputs.__setitem__(name, output.detach()))
        for name in layers]
    try:
        with torch.no_grad():
            if params is None:
                model(x)
            else:
                functional_call(model, (params, dict(model.named_buffers())), (x,))
    finally:
        for hook in hooks:
            hook.remove()
    return outputs
