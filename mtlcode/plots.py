"""Figures the book draws again and again: learning curves, sinusoid fits, task image grids.

Every function draws on the given matplotlib ``ax`` (or a new figure) and returns the figure,
so notebooks can place them side by side or save them.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from mtlcode.maml import MAML
from mtlcode.tasks import SinusoidBatch, TaskBatch


def _axes(ax: Axes | None, figsize: tuple[float, float] = (5, 3.5)) -> tuple[Figure, Axes]:
    if ax is None:
        fig, ax = plt.subplots(figsize=figsize)
        return fig, ax
    return ax.figure, ax


def _smooth(values: Sequence[float], window: int) -> list[float]:
    """Running mean over the last ``window`` values (the first ones average what exists)."""
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def learning_curves(history: dict[str, list[float]], key: str = "loss", smooth: int = 20,
                    ax: Axes | None = None, label: str | None = None) -> Figure:
    """Training curve of ``history[key]`` (smoothed) with validation points where present."""
    fig, ax = _axes(ax)
    line, = ax.plot(history["step"], _smooth(history[key], smooth), label=label or f"train {key}")
    if history.get(f"val_{key}"):
        ax.plot(history["val_step"], history[f"val_{key}"], "o--", color=line.get_color(),
                label=f"validation {key}" if label is None else f"{label} (validation)")
    ax.set_xlabel("meta-training step")
    ax.set_ylabel(key)
    ax.legend()
    return fig


def sinusoid_fit(maml: MAML, batch: SinusoidBatch, task: int = 0, steps: Sequence[int] = (0, 1, 10),
                 ax: Axes | None = None, x_range: tuple[float, float] = (-5.0, 5.0)) -> Figure:
    """The true curve of one task, its support points, and the model after each of ``steps``."""
    if not isinstance(batch, SinusoidBatch):
        raise TypeError("sinusoid_fit needs the SinusoidBatch that Sinusoid.sample returns")
    fig, ax = _axes(ax, (6, 4))
    one = batch[task : task + 1].to("cpu")
    x = torch.linspace(*x_range, 200, dtype=one.support_x.dtype).reshape(1, -1, 1)
    grid = x[0, :, 0].numpy()
    ax.plot(grid, one.true_y(x)[0, :, 0].numpy(), "k", lw=2, label="true function")
    ax.plot(one.support_x[0, :, 0].numpy(), one.support_y[0, :, 0].numpy(), "^", color="tab:purple", ms=8,
            label=f"{one.support_x.shape[1]} support points")
    device = next(maml.model.parameters()).device
    for n in steps:
        with torch.no_grad():
            params = maml.adapt(one.support_x[0].to(device), one.support_y[0].to(device), steps=n)
            y = maml.predict(params, x[0].to(device)).cpu()
        ax.plot(grid, y[:, 0].numpy(), "--", label=f"after {n} step{'s' if n != 1 else ''}")
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.legend(fontsize="small")
    return fig


def task_grid(batch: TaskBatch, task: int = 0, queries: int = 3) -> Figure:
    """One image task as a grid: a row per class, its support images then a few query images."""
    one = batch[task].to("cpu")
    if one.support_x.dim() != 4:
        raise ValueError(f"task_grid needs image tasks shaped [examples, C, H, W], got {tuple(one.support_x.shape)}")
    ways = int(one.support_y.max()) + 1
    rows = [(one.support_x[one.support_y == c], one.query_x[one.query_y == c][:queries]) for c in range(ways)]
    columns = max(len(s) + len(q) for s, q in rows)
    fig, axes = plt.subplots(ways, columns, figsize=(1.1 * columns, 1.1 * ways), squeeze=False)
    for c, (support, query) in enumerate(rows):
        for j, ax in enumerate(axes[c]):
            ax.set_xticks([])
            ax.set_yticks([])
            images = list(support) + list(query)
            if j >= len(images):
                ax.axis("off")
                continue
            ax.imshow(images[j].permute(1, 2, 0).squeeze(-1).numpy(), cmap="gray_r", vmin=0, vmax=1)
            if j < len(support):
                for spine in ax.spines.values():
                    spine.set_edgecolor("tab:purple")
                    spine.set_linewidth(2)
        axes[c][0].set_ylabel(f"class {c}")
    fig.suptitle("support (framed) and query images")
    return fig
