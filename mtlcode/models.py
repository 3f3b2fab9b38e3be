"""The two networks of the MAML paper, written so that functional adaptation works.

Both models split into a ``body`` (the feature extractor) and a ``head`` (the last linear
layer): fine-tuning swaps or retrains the head, MAML adapts everything. Batch norm always uses
the statistics of the batch in front of it (``track_running_stats=False``), as in the MAML
paper: the model then has no buffers that adaptation would have to carry from task to task.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn


class MLP(nn.Module):
    """A fully connected ReLU network; ``MLP([1, 40, 40, 1])`` is the MAML sinusoid regressor."""

    def __init__(self, sizes: Sequence[int]) -> None:
        super().__init__()
        sizes = list(sizes)
        if len(sizes) < 2 or any(not isinstance(s, int) or s < 1 for s in sizes):
            raise ValueError(f"sizes must list at least two positive ints (input ... output), got {sizes}")
        layers: list[nn.Module] = []
        for fan_in, fan_out in zip(sizes[:-2], sizes[1:-1]):
            layers += [nn.Linear(fan_in, fan_out), nn.ReLU()]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(sizes[-2], sizes[-1])

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x))


def conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    """3x3 convolution, batch norm on the batch's own statistics, ReLU, 2x2 max pooling."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1),
        nn.BatchNorm2d(out_channels, track_running_stats=False),
        nn.ReLU(),
        nn.MaxPool2d(2),
    )


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
        self.body = nn.Sequential(
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


__all__ = ["MLP", "Conv4", "conv_block", "count_parameters"]
