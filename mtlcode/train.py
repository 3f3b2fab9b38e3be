"""Meta-training with progress bars, validation and resumable checkpoints; evaluation with
confidence intervals.

``meta_train`` owns the random generator that draws the tasks, and its checkpoints store that
generator's state next to the model and the optimiser: a run that is stopped and resumed draws
exactly the tasks, and reaches exactly the parameters, of a run that never stopped.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from tqdm import tqdm

from mtlcode.maml import MAML
from mtlcode.tasks import TaskBatch

TaskSource = Callable[[torch.Generator], TaskBatch]
History = dict[str, list[float]]


# -- checkpoints -------------------------------------------------------------------------------

def save_checkpoint(path: str | os.PathLike[str], state: dict[str, Any]) -> None:
    """Write ``state`` with ``torch.save`` atomically: to a temporary file, then renamed.

    A crash mid-write leaves the previous checkpoint intact, never a truncated one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            torch.save(state, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True``: tensors and plain containers only, no code."""
    return torch.load(path, map_location="cpu", weights_only=True)


# -- metrics -----------------------------------------------------------------------------------

def _is_classification(predictions: Tensor, targets: Tensor) -> bool:
    return not torch.is_floating_point(targets) and predictions.dim() == targets.dim() + 1


def task_metric(predictions: Tensor, targets: Tensor) -> Tensor:
    """Per-task accuracy (classification) or mean squared error (regression).

    Both tensors are shaped ``[tasks, queries, ...]``; the result is ``[tasks]``.
    """
    if _is_classification(predictions, targets):
        return (predictions.argmax(-1) == targets).float().mean(dim=1)
    return ((predictions - targets) ** 2).flatten(1).mean(dim=1)


# -- meta-training -----------------------------------------------------------------------------

def _validate(maml: MAML, tasks: TaskBatch) -> tuple[float, float]:
    with torch.no_grad():
        losses, predictions = maml.task_losses(tasks)
    return losses.mean().item(), task_metric(predictions, tasks.query_y).mean().item()


def meta_train(
    maml: MAML,
    sample_tasks: TaskSource,
    iterations: int,
    meta_lr: float = 1e-3,
    *,
    seed: int = 0,
    val_tasks: TaskBatch | None = None,
    val_every: int = 100,
    checkpoint: str | os.PathLike[str] | None = None,
    checkpoint_every: int = 100,
    device: torch.device | str | None = None,
    progress: bool = True,
) -> History:
    """Meta-train ``maml.model`` with Adam for ``iterations`` outer steps; returns the history.

    Args:
        sample_tasks: ``generator -> TaskBatch``, one meta-batch per call, e.g.
            ``lambda g: Sinusoid().sample(25, 10, 10, generator=g)``.
        iterations: the total number of outer steps; a resumed run continues up to it.
        seed: seeds the generator passed to ``sample_tasks``.
        val_tasks: a fixed batch scored every ``val_every`` steps (after adaptation).
        checkpoint: a file to resume from when it exists and to save to every
            ``checkpoint_every`` steps and at the end.

    The history holds ``step``, ``loss`` and ``metric`` (query accuracy for classification,
    MSE for regression, after adaptation) per step, and ``val_step``, ``val_loss``,
    ``val_metric`` per validation. A loss that is NaN or infinite stops training with an error
    naming the step.
    """
    if not isinstance(iterations, int) or iterations < 0:
        raise ValueError(f"iterations must be an int >= 0, got {iterations!r}")
    if device is not None:
        maml.model.to(device)
    device = next(maml.model.parameters()).device
    optimizer = torch.optim.Adam(maml.model.parameters(), lr=meta_lr)
    generator = torch.Generator().manual_seed(seed)
    history: History = {key: [] for key in ("step", "loss", "metric", "val_step", "val_loss", "val_metric")}
    start = 0

    if checkpoint is not None and Path(checkpoint).exists():
        state = load_checkpoint(checkpoint)
        maml.model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"])
        history, start = state["history"], state["step"]

    def save(step: int) -> None:
        if checkpoint is not None:
            save_checkpoint(checkpoint, {"model": maml.model.state_dict(), "optimizer": optimizer.state_dict(),
                                         "generator": generator.get_state(), "history": history, "step": step})

    if val_tasks is not None:
        val_tasks = val_tasks.to(device)
    bar = tqdm(range(start, iterations), initial=start, total=iterations, desc="meta-train", disable=not progress)
    for step in bar:
        batch = sample_tasks(generator).to(device)
        losses, predictions = maml.task_losses(batch)
        loss = losses.mean()
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"meta-loss became {loss.item()} at step {step}; lower meta_lr or inner_lr, or check the data"
            )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

        history["step"].append(step + 1)
        history["loss"].append(loss.item())
        history["metric"].append(task_metric(predictions.detach(), batch.query_y).mean().item())
        if val_tasks is not None and ((step + 1) % val_every == 0 or step + 1 == iterations):
            val_loss, val_metric = _validate(maml, val_tasks)
            history["val_step"].append(step + 1)
            history["val_loss"].append(val_loss)
            history["val_metric"].append(val_metric)
        bar.set_postfix(loss=f"{history['loss'][-1]:.4f}", metric=f"{history['metric'][-1]:.3f}", refresh=False)
        if (step + 1) % checkpoint_every == 0:
            save(step + 1)
    save(iterations)
    return history


# -- evaluation --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Evaluation:
    """Mean of a per-task metric with the half-width of its 95% confidence interval."""

    mean: float
    ci95: float
    values: list[float]

    def __str__(self) -> str:
        return f"{self.mean:.4f} ± {self.ci95:.4f} (95% CI, {len(self.values)} tasks)"


Method = MAML | Callable[[Tensor, Tensor, Tensor], Tensor]


def _task_batches(tasks: TaskBatch | Iterable[TaskBatch] | TaskSource, num_tasks: int | None,
                  seed: int) -> Iterable[TaskBatch]:
    if isinstance(tasks, TaskBatch):
        yield tasks
    elif callable(tasks):
        if num_tasks is None:
            raise ValueError("num_tasks is needed when tasks is a sampling function")
        generator = torch.Generator().manual_seed(seed)
        drawn = 0
        while drawn < num_tasks:
            batch = tasks(generator)
            batch = batch[: num_tasks - drawn]
            drawn += len(batch)
            yield batch
    else:
        yield from tasks


def evaluate(
    method: Method,
    tasks: TaskBatch | Iterable[TaskBatch] | TaskSource,
    num_tasks: int | None = None,
    steps: int | None = None,
    seed: int = 0,
    device: torch.device | str | None = None,
    progress: bool = False,
) -> Evaluation:
    """Score ``method`` on test tasks: mean and 95% confidence interval over tasks.

    ``method`` is a :class:`MAML` (adapted with ``steps`` inner steps, default its own) or any
    ``adapt_and_predict(support_x, support_y, query_x) -> predictions`` function for one task,
    such as a fine-tuning baseline. ``tasks`` is a batch, an iterable of batches, or a sampling
    function ``generator -> TaskBatch`` called (with a generator seeded by ``seed``) until
    ``num_tasks`` tasks are drawn. The metric is query accuracy for classification and MSE for
    regression.
    """
    values: list[Tensor] = []
    for batch in tqdm(_task_batches(tasks, num_tasks, seed), desc="evaluate", disable=not progress):
        if device is not None:
            batch = batch.to(device)
        if isinstance(method, MAML):
            with torch.no_grad():
                _, predictions = method.task_losses(batch, steps=steps)
        else:
            predictions = torch.stack([method(t.support_x, t.support_y, t.query_x).detach() for t in batch])
        values.append(task_metric(predictions, batch.query_y).cpu())
    if not values:
        raise ValueError("no tasks to evaluate on")
    scores = torch.cat(values).double()
    n = len(scores)
    half_width = 1.96 * scores.std().item() / math.sqrt(n) if n > 1 else float("nan")
    return Evaluation(scores.mean().item(), half_width, scores.tolist())
