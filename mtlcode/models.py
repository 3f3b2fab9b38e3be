"""The two networks of the MAML paper, written so that functional adaptation works.

Both models split into a ``body`` (the feature extractor) and a ``head`` (the last linear
layer): fine-tuning swaps or retrains the head, MAML adapts everything. Batch norm always uses
the statistics of the batch in front of it (``track_running_stats=False``), as in the MAML
paper: the model then has no buffers that adaptation would have to carry from task to task.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn


def _build(factory: Callable[[], object]) -> object:
    """``factory()``, or None when it cannot be called without arguments."""
    try:
        return factory()
    except TypeError:
        return None


class MLP(nn.Module):
    """A fully connected ReLU network; ``MLP([1, 40, 40, 1])`` is the MAML sinusoid regressor.

    ``activation`` builds the non-linearity after each hidden layer (``nn.ReLU`` by default);
    ``nn.Tanh`` gives a smooth network, whose Taylor expansions hold near every point (a ReLU
    network's kinks break them wherever a small step flips a unit on or off).
    """

    def __init__(self, sizes: Sequence[int], activation: Callable[[], nn.Module] = nn.ReLU) -> None:
        super().__init__()
        sizes = list(sizes)
        if len(sizes) < 2 or any(not isinstance(s, int) or s < 1 for s in sizes):
            raise ValueError(f"sizes must list at least two positive ints (input ... output), got {sizes}")
        if (isinstance(activation, nn.Module) or not callable(activation)
                or not isinstance(_build(activation), nn.Module)):
            raise TypeError(f"activation must be a class (or function) that builds an nn.Module, such as nn.ReLU "
                            f"or nn.Tanh, not {activation!r}")
        layers: list[nn.Module] = []
        for fan_in, fan_out in zip(sizes[:-2], sizes[1:-1]):
            layers += [nn.Linear(fan_in, fan_out), activation()]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(sizes[-2], sizes[-1])

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x))


def under_torch_func(x: Tensor) -> bool:
    """Whether ``x`` is being traced by a ``torch.func`` transform such as ``vmap`` or ``grad``.

    PyTorch has no public test for this; should the private one ever go, answering True keeps
    every caller correct (they take their slower, transform-safe path).
    """
    is_wrapped = getattr(torch._C._functorch, "is_functorch_wrapped_tensor", None)
    return True if is_wrapped is None else bool(is_wrapped(x))


class TaskBatchNorm2d(nn.BatchNorm2d):
    """Batch norm on the batch's own statistics, with second derivatives that ``vmap`` gets right.

    Outside ``torch.func`` transforms this is ``nn.BatchNorm2d(track_running_stats=False)`` and
    runs PyTorch's fused kernel. Under ``vmap`` that kernel's double-backward rule gives wrong
    second-order MAML meta-gradients (off by about 1e-2 in float64 on Conv4 with torch 2.14), so
    there the same formula is spelled out with ``mean``, ``var`` and ``rsqrt``, whose batching
    rules are exact. Both paths compute the same function; ``tests/test_models.py`` checks it.
    """

    def __init__(self, num_features: int, eps: float = 1e-5) -> None:
        super().__init__(num_features, eps=eps, track_running_stats=False)

    def forward(self, x: Tensor) -> Tensor:
        if not under_torch_func(x):
            return super().forward(x)
        mean = x.mean((0, 2, 3), keepdim=True)
        var = x.var((0, 2, 3), keepdim=True, correction=0)  # biased, as batch norm normalises
        scale = self.weight.view(1, -1, 1, 1) * torch.rsqrt(var + self.eps)
        return (x - mean) * scale + self.bias.view(1, -1, 1, 1)


def channels_last(images: Tensor) -> Tensor:
    """``images`` laid out channels-last (NHWC in memory), the layout oneDNN's CPU kernels prefer.

    For one-channel images ``Tensor.contiguous(memory_format=torch.channels_last)`` changes
    nothing (the channel stride is ambiguous and PyTorch keeps NCHW), so the channel stride is
    set to 1 explicitly; the memory is the same, and the convolution then returns channels-last.
    """
    if images.size(1) != 1:
        return images.contiguous(memory_format=torch.channels_last)
    images = images.contiguous()
    _, _, h, w = images.shape
    return images.as_strided(images.shape, (h * w, 1, w, 1))


def conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    """3x3 convolution, batch norm on the batch's own statistics, ReLU, 2x2 max pooling."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1),
        TaskBatchNorm2d(out_channels),
        nn.ReLU(),
        nn.MaxPool2d(2),
    )


class ConvBody(nn.Sequential):
    """``nn.Sequential`` that first lays CPU images out channels-last.

    On the CPU, pooling, batch norm and ReLU run much faster on channels-last tensors
    (``benchmarks/speed.py`` measures a whole MAML step). Doing it here rather than in
    ``Conv4.forward`` gives ``model.body(x)`` (fine-tuning's features) the same numbers as
    ``model(x)``. Under ``torch.func`` transforms the layout is left alone.
    """

    def forward(self, x: Tensor) -> Tensor:
        if x.device.type == "cpu" and x.dim() == 4 and not under_torch_func(x):
            x = channels_last(x)
        return super().forward(x)


class Conv4(nn.Module):
    """Four conv blocks of ``hidden`` channels and a linear head: the MAML paper's classifier.

    On 28x28 Omniglot images the feature map ends at 1x1, so the head sees ``hidden`` features;
    give ``image_size`` for other inputs (84 for mini-ImageNet gives 5x5x``hidden``).
    """

    def __init__(self, in_channels: int = 1, ways: int = 5, hidden: int = 64, image_size: int = 28) -> None:
        super().__init__()
        for name, value in {"in_channels": in_channels, "ways": ways, "hidden": hidden,
                            "image_size": image_size}.items():
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if image_size < 16:
            raise ValueError(f"image_size must be at least 16 for four 2x2 poolings, got {image_size}")
        self.body = ConvBody(
            conv_block(in_channels, hidden),
            conv_block(hidden, hidden),
            conv_block(hidden, hidden),
            conv_block(hidden, hidden),
            nn.Flatten(),
        )
        side = image_size
        for _ in range(4):
            side //= 2
        self.feature_dim = hidden * side * side
        self.head = nn.Linear(self.feature_dim, ways)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4:
            raise ValueError(f"Conv4 expects images shaped [batch, channels, height, width], got {tuple(x.shape)}")
        return self.head(self.body(x))


def count_parameters(model: nn.Module) -> int:
    """Number of trainable scalars in ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


__all__ = ["MLP", "Conv4", "ConvBody", "TaskBatchNorm2d", "channels_last", "conv_block", "count_parameters"]
