"""Figures the book draws again and again: learning curves, sinusoid fits, task image grids,
benchmark scores.

Every function draws on the given matplotlib ``ax`` (or a new figure) and returns the figure,
so notebooks can place them side by side or save them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
import matplotlib.ticker
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from mtlcode.learners.maml import MAML
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


# Where each method sits: (column = what a new task adapts, row = how the shared part is learned).
FAMILY_SPECTRUM = {
    "MAML": (0, 2), "Meta-SGD": (0, 2), "ANIL": (1, 2), "ProtoNet": (2, 2),
    "Reptile": (0, 1),
    "fine-tune all": (0, 0), "fine-tune head\n(linear probe)": (1, 0), "prototypes of a\npre-trained body": (2, 0),
}
_SPECTRUM_COLUMNS = ("all parameters,\ngradient steps", "the head only,\ngradient steps",
                     "nothing: class\nmeans of features")
_SPECTRUM_ROWS = ("ordinary training\n(transfer learning)", "towards fine-tuned\nweights (first order)",
                  "through the adaptation\n(meta-learning)")


def family_spectrum(ax: Axes | None = None) -> Figure:
    """The MAML family on a grid: what each method adapts per task, and how it learns what it shares.

    Methods in the same cell are drawn side by side. Moving right, less is adapted and more is
    reused; moving down, the shared part is learned less through the adaptation itself.
    """
    fig, ax = _axes(ax, (7, 3.6))
    cells: dict[tuple[int, int], list[str]] = {}
    for name, cell in FAMILY_SPECTRUM.items():
        cells.setdefault(cell, []).append(name)
    for (column, row), names in cells.items():
        for k, name in enumerate(names):
            x = column + (k - (len(names) - 1) / 2) * 0.42
            meta = row == 2
            ax.annotate(name, (x, row), ha="center", va="center", fontsize=9,
                        bbox={"boxstyle": "round,pad=0.3", "lw": 1,
                              "fc": "#dbe9f6" if meta else "#fde7d3" if row == 0 else "#eeeeee",
                              "ec": "tab:blue" if meta else "tab:orange" if row == 0 else "gray"})
    ax.annotate("", xy=(2.45, -0.62), xytext=(-0.45, -0.62),
                arrowprops={"arrowstyle": "->", "color": "gray"}, annotation_clip=False)
    ax.text(1.0, -0.75, "less adapted per task, more reused", ha="center", va="top", fontsize=8, color="gray")
    ax.set_xlim(-0.6, 2.6)
    ax.set_ylim(-0.9, 2.5)
    ax.set_xticks(range(3), _SPECTRUM_COLUMNS, fontsize=8)
    ax.set_yticks(range(3), _SPECTRUM_ROWS, fontsize=8)
    ax.xaxis.set_ticks_position("top")
    ax.set_xlabel("adapted to a new task", fontsize=9)
    ax.xaxis.set_label_position("top")
    ax.set_ylabel("how the shared part is learned", fontsize=9)
    for side in ("right", "bottom"):
        ax.spines[side].set_visible(False)
    ax.tick_params(length=0)
    fig.tight_layout()
    return fig


def benchmark_scores(result: dict[str, Any], benchmarks: Sequence[str] | None = None, columns: int = 3,
                     width: float = 4.6, height: float = 3.9) -> Figure:
    """One panel per benchmark of a multi-seed result file (``benchmarks/results/omniglot_v2.json``).

    Bars: each method's mean over training seeds with its 95% t-interval over seeds; dots: the
    seeds; dashed lines: published figures. Meta-learners blue, transfer methods orange. Errors
    (Lake's runs) are drawn as accuracies, ``1 - error``, so that higher is better everywhere.
    """
    names = list(benchmarks or dict.fromkeys(row["benchmark"] for row in result["rows"]))
    columns = min(columns, len(names))
    lines = -(-len(names) // columns)
    fig, axes = plt.subplots(lines, columns, figsize=(width * columns, height * lines), sharey=True,
                             squeeze=False)
    for ax, benchmark in zip(axes.flat, names):
        rows = [row for row in result["rows"] if row["benchmark"] == benchmark and row["mean"] is not None]
        if not rows:
            raise ValueError(f"no scores for benchmark {benchmark!r} in this result")
        _score_panel(ax, rows, [r for r in result.get("published", []) if r["benchmark"] == benchmark])
        ax.set_title(benchmark + (" (1 - error)" if rows[0]["metric"] == "error" else ""), fontsize=10)
    for ax in list(axes.flat)[len(names):]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel("accuracy: mean over seeds\n(95% t-interval), seeds as dots", fontsize=8)
    fig.tight_layout()
    return fig


def _score_panel(ax: Axes, rows: list[dict[str, Any]], published: list[dict[str, Any]]) -> None:
    def accuracy(row: dict[str, Any], v: float) -> float:
        return 1 - v if row["metric"] == "error" else v

    ax.bar([r["method"] for r in rows], [accuracy(r, r["mean"]) for r in rows],
           yerr=[r["ci95"] or 0 for r in rows], capsize=3, alpha=0.75,
           color=["tab:orange" if r.get("family") == "transfer" else "tab:blue" for r in rows])
    for i, row in enumerate(rows):
        ax.plot([i] * len(row["per_seed"]), [accuracy(row, v) for v in row["per_seed"]], "k.", ms=3)
    for j, row in enumerate(published):
        level = accuracy(row, row["mean"])
        ax.axhline(level, ls="--", lw=1, color="grey")
        # Alternate sides so that close figures (people, BPL) keep readable labels.
        x, side = (len(rows) - 0.5, "right") if j % 2 == 0 else (-0.5, "left")
        ax.text(x, level, row["method"].replace("_", " "), fontsize=7, ha=side, va="bottom")
    ax.set_ylim(0, 1)
    ax.tick_params(axis="x", labelrotation=60, labelsize=7)


def anytime_curves(result: dict[str, Any], benchmarks: Sequence[str], width: float = 4.2,
                   height: float = 3.6) -> Figure:
    """Test accuracy against training CPU-minutes, one panel per benchmark, of a v3 result file
    (``benchmarks/results/omniglot_v3.json``, its ``anytime`` curves).

    Each point is a checkpoint of training: the mean over training seeds of the CPU-minutes spent
    up to there and of the test accuracy with the test-time option chosen on validation tasks at
    that checkpoint. Meta-learners are solid lines, transfer methods dashed; every method had the
    same budget, so points at the same height of the x-axis compare equal compute.
    """
    fig, axes = plt.subplots(1, len(benchmarks), figsize=(width * len(benchmarks), height), sharey=True,
                             squeeze=False)
    for ax, benchmark in zip(axes[0], benchmarks):
        curves = [c for c in result["anytime"] if c["benchmark"] == benchmark]
        if not curves:
            raise ValueError(f"no anytime curve for benchmark {benchmark!r} in this result")
        for curve in curves:
            transfer = curve["method"] in _TRANSFER_METHODS
            ax.plot([p["cpu_seconds"] / 60 for p in curve["points"]], [p["test"] for p in curve["points"]],
                    "--" if transfer else "-", marker="s" if transfer else "o", ms=3, label=curve["method"])
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # no crowded minor labels
        ax.set_title(_benchmark_title(benchmark), fontsize=10)
        ax.set_xlabel("training CPU-minutes (one thread)", fontsize=8)
    axes[0, 0].set_ylabel("test accuracy, mean over seeds", fontsize=8)
    # Below the panels, where it hides no curve.
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="lower center", ncol=5, frameon=False)
    fig.tight_layout(rect=(0, 0.14, 1, 1))
    return fig


def _benchmark_title(name: str) -> str:
    """``heldout_5way1shot`` -> ``held-out alphabets, 5-way 1-shot`` (other names unchanged)."""
    domain, _, setting = name.partition("_")
    where = {"heldout": "held-out alphabets", "digits": "digits", "test": "test alphabets"}.get(domain)
    if where is None or "way" not in setting:
        return name
    ways, shots = setting.removesuffix("shot").split("way")
    return f"{where}, {ways}-way {shots}-shot"


_TRANSFER_METHODS = ("finetune_head", "finetune_all", "finetune_linear_probe", "baselinepp",
                     "finetune_lora", "finetune_bitfit", "finetune_film")  # the last three: benchmarks/trends.py
