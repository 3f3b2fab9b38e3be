"""Tasks for meta-learning: a batch container and two task families.

A *task* is a small learning problem with a support set (to adapt on) and a query set (to
measure the adapted model on). Everything here returns tensors shaped ``[tasks, examples, ...]``
so that a whole meta-batch moves through the model at once.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields
from typing import Any

import torch
from torch import Tensor


def _is_bool(value: Any) -> bool:
    # bool is an int subclass (and a bool tensor converts to an index), so True would pass as 1.
    return isinstance(value, bool) or (isinstance(value, Tensor) and value.dtype == torch.bool)


def _count(name: str, value: Any, least: int | None = 1, why: str = "") -> int:
    """``value`` as a Python int, for an integer argument called ``name``.

    Any integral number passes (``operator.index``: Python and numpy ints, one-element integer
    tensors); a bool, float or string is a ``TypeError``, a value below ``least`` (no bound when
    None) a ``ValueError`` whose message ends with ``why``.
    """
    wanted = f"{name} must be an integer" + ("" if least is None else f" >= {least}")
    example = f"pass a whole number such as {max(least or 0, 1)}"
    if _is_bool(value):
        raise TypeError(f"{wanted}, got {value!r} (a bool); {example}")
    try:
        number = operator.index(value)
    except TypeError:
        raise TypeError(f"{wanted}, got {value!r} ({type(value).__name__}); {example}") from None
    if least is not None and number < least:
        raise ValueError(f"{wanted}, got {number}" + (f"; {why}" if why else ""))
    return number


def _task_index(index: Any) -> int | None:
    """The task number when ``index`` picks a single task (an int of any integral type), else None."""
    if _is_bool(index):
        raise TypeError(f"a task index cannot be a bool (got {index!r}); use an int, a slice or a tensor of indices")
    if isinstance(index, (slice, list, tuple)) or (isinstance(index, Tensor) and index.dim() > 0):
        return None
    try:
        return operator.index(index)
    except TypeError:  # e.g. a float tensor: let tensor indexing report it
        return None


@dataclass
class TaskBatch:
    """A batch of tasks; every tensor has the task index as its first dimension.

    ``support_x``: ``[tasks, shots, ...]`` inputs to adapt on, ``support_y`` their targets;
    ``query_x`` / ``query_y``: the held-out examples of the same tasks.

    ``len(batch)`` is the number of tasks. ``batch[i]`` (an int) is task ``i`` with the task
    dimension dropped; ``batch[a:b]`` (a slice, list or tensor of indices) is a smaller batch.

    Construction checks what would otherwise fail deep inside a loss, or silently broadcast: every
    tensor has the same number of tasks, inputs and targets the same number of examples per task,
    and floating-point (regression) targets an output dimension, ``[tasks, examples, outputs]``;
    integer class labels are ``[tasks, examples]``.
    """

    support_x: Tensor
    support_y: Tensor
    query_x: Tensor
    query_y: Tensor
    #: False for a single task taken out of a batch with ``batch[i]`` (no task dimension).
    batched: bool = field(default=True, kw_only=True, repr=False)

    def __post_init__(self) -> None:
        for name, tensor in self._tensors():
            if not isinstance(tensor, Tensor):
                kind = type(tensor).__name__
                raise TypeError(f"{name} must be a torch.Tensor, got {kind}; wrap it in torch.as_tensor")
        if not self.batched:
            return
        sizes = {name: tensor.shape[0] if tensor.dim() else None for name, tensor in self._tensors()}
        if len(set(sizes.values())) != 1:
            raise ValueError(f"all tensors of a TaskBatch need the same number of tasks first, got {sizes}")
        # Caught here, a mismatch names the culprit; caught by the loss, it is an error many frames deep.
        for x_name, y_name in (("support_x", "support_y"), ("query_x", "query_y")):
            self._check_pair(x_name, getattr(self, x_name), y_name, getattr(self, y_name))

    @staticmethod
    def _check_pair(x_name: str, x: Tensor, y_name: str, y: Tensor) -> None:
        """Inputs and targets of one set: one target per input; regression targets keep an output dim."""
        for name, tensor in ((x_name, x), (y_name, y)):
            if tensor.dim() < 2:
                raise ValueError(
                    f"{name} must be shaped [tasks, examples, ...], got shape {tuple(tensor.shape)}; "
                    "a single task needs a leading task dimension of 1 (tensor[None])"
                )
        if x.shape[1] != y.shape[1]:
            raise ValueError(
                f"{x_name} has {x.shape[1]} examples per task but {y_name} has {y.shape[1]} (shapes "
                f"{tuple(x.shape)} and {tuple(y.shape)}); give every input exactly one target"
            )
        # A float [tasks, examples] target against a [tasks, examples, 1] prediction broadcasts
        # into a [tasks, examples, examples] MSE: wrong numbers and only a warning.
        if y.is_floating_point() and y.dim() < 3:
            raise ValueError(
                f"{y_name} holds floating-point (regression) targets shaped {tuple(y.shape)}; they must be "
                f"[tasks, examples, outputs]: add .unsqueeze(-1) to make them {tuple(y.shape) + (1,)} "
                "(integer class labels stay [tasks, examples])"
            )

    def check_finite(self) -> None:
        """Refuse NaN or infinite inputs or targets, naming the tensor and how many.

        One NaN pixel makes every prediction of its task NaN, and a NaN logit's argmax is class
        0: the task would score chance accuracy instead of failing. The learners call this on
        every batch they train or evaluate on.
        """
        for name, tensor in self._tensors():
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                bad = int((~torch.isfinite(tensor)).sum())
                raise ValueError(f"{name} holds {bad} NaN or infinite value(s); clean the data (torch.nan_to_num, or "
                                 "drop those examples) before training or evaluating on it")

    def _tensors(self) -> list[tuple[str, Tensor]]:
        return [(f.name, getattr(self, f.name)) for f in fields(self) if f.name != "batched"]

    def _map(self, fn: Callable[[Tensor], Tensor], batched: bool = True) -> TaskBatch:
        # Rebuild the same class (subclasses carry extra per-task fields) with fn applied to all.
        return type(self)(**{name: fn(tensor) for name, tensor in self._tensors()}, batched=batched)

    def to(
        self, device: torch.device | str | None = None, dtype: torch.dtype | None = None, **kwargs: Any
    ) -> TaskBatch:
        """Move every tensor to ``device`` and convert the floating-point ones to ``dtype``.

        Like ``nn.Module.to``, ``dtype`` leaves integer tensors alone: class labels stay labels
        (as floats they would read as regression targets). Extra arguments go to ``Tensor.to``.
        """

        def convert(t: Tensor) -> Tensor:
            return t.to(device=device, dtype=dtype if t.is_floating_point() else None, **kwargs)

        return self._map(convert, batched=self.batched)

    def __len__(self) -> int:
        if not self.batched:
            raise TypeError("a single task (taken with batch[i]) has no len(); its tensors have no task dimension")
        return self.support_x.shape[0]

    def __getitem__(self, index: int | slice | Tensor | list[int]) -> TaskBatch:
        task = _task_index(index)
        if task is None:
            return self._map(lambda t: t[index])
        if not -len(self) <= task < len(self):
            raise IndexError(f"task index {task} out of range for a batch of {len(self)} tasks")
        return self._map(lambda t: t[task], batched=False)

    def __iter__(self) -> Iterator[TaskBatch]:
        return (self[i] for i in range(len(self)))

    @property
    def device(self) -> torch.device:
        return self.support_x.device


@dataclass
class SinusoidBatch(TaskBatch):
    """A :class:`TaskBatch` of sinusoid tasks that also carries each task's true curve."""

    amplitude: Tensor
    phase: Tensor

    def true_y(self, x: Tensor) -> Tensor:
        """The noiseless targets of each task at inputs ``x`` shaped ``[tasks, points, 1]``."""
        shape = (-1,) + (1,) * (x.dim() - 1)
        return Sinusoid.function(x, self.amplitude.reshape(shape), self.phase.reshape(shape))


class Sinusoid:
    """The sinusoid regression tasks of the MAML paper (Finn et al., 2017, section 5.1).

    Each task is ``y = amplitude * sin(x - phase)`` with the amplitude drawn uniformly from
    ``amplitude``, the phase from ``phase`` and the inputs from ``x_range``.
    """

    def __init__(
        self,
        amplitude: tuple[float, float] = (0.1, 5.0),
        phase: tuple[float, float] = (0.0, math.pi),
        x_range: tuple[float, float] = (-5.0, 5.0),
    ) -> None:
        self.amplitude = _finite_range("amplitude", amplitude)
        self.phase = _finite_range("phase", phase)
        self.x_range = _finite_range("x_range", x_range)

    @staticmethod
    def function(x: Tensor, amplitude: Tensor | float, phase: Tensor | float) -> Tensor:
        """The task family's curve: ``amplitude * sin(x - phase)``."""
        return amplitude * torch.sin(x - phase)

    def sample(
        self,
        num_tasks: int,
        shots: int,
        queries: int,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> SinusoidBatch:
        """Draw ``num_tasks`` tasks, each with ``shots`` support and ``queries`` query points.

        Random numbers come from ``generator`` (the global RNG when None) on the CPU, so the same
        seed gives the same tasks whatever ``device`` they are moved to.
        """
        num_tasks, shots = _count("num_tasks", num_tasks), _count("shots", shots)
        queries = _count("queries", queries, least=0)  # support-only tasks are fine for plots

        def uniform(size: tuple[int, ...], low: float, high: float) -> Tensor:
            return low + (high - low) * torch.rand(size, generator=generator)

        amplitude = uniform((num_tasks,), *self.amplitude)
        phase = uniform((num_tasks,), *self.phase)
        x = uniform((num_tasks, shots + queries, 1), *self.x_range)
        y = self.function(x, amplitude[:, None, None], phase[:, None, None])
        batch = SinusoidBatch(x[:, :shots], y[:, :shots], x[:, shots:], y[:, shots:], amplitude, phase)
        return batch.to(device) if device is not None else batch


def _finite_range(name: str, bounds: Any) -> tuple[float, float]:
    """``bounds`` as a ``(low, high)`` tuple, as given, after checking both are finite and in order."""
    wanted = f"{name} must be a (low, high) pair of finite numbers with low <= high"
    try:
        low, high = bounds
        # float() also turns "1" into 1.0, so refuse text outright.
        if any(isinstance(b, (str, bytes)) for b in (low, high)):
            raise TypeError
        finite = math.isfinite(float(low)) and math.isfinite(float(high))
    except (TypeError, ValueError):
        raise TypeError(f"{wanted}, got {bounds!r}") from None
    if not finite:  # an infinite bound would draw infinite amplitudes, phases or inputs
        raise ValueError(f"{wanted}, got {(low, high)}; give bounds such as (0.1, 5.0)")
    if not low <= high:
        raise ValueError(f"{wanted}, got {(low, high)}; swap the two bounds")
    return low, high


def _dataset_targets(dataset: Any) -> Tensor:
    """Class index of every example: ``dataset.targets`` when present, else read one by one."""
    targets = getattr(dataset, "targets", None)
    if targets is None:
        targets = [int(dataset[i][1]) for i in range(len(dataset))]
    return torch.as_tensor(targets, dtype=torch.long)


class NWayKShot:
    """N-way K-shot classification tasks drawn from a labelled dataset.

    Each task picks ``ways`` classes at random, gives them the labels ``0..ways-1`` in a random
    order, and draws ``shots`` support and ``queries`` query examples per class, without
    overlap between the two sets.

    ``dataset[i]`` must return ``(input_tensor, class_index)``; a ``targets`` attribute (the
    class of every example, as torchvision datasets have) avoids reading every example once.
    ``sample(num_tasks)`` gives one :class:`TaskBatch`; iterating gives an endless stream of
    batches of ``tasks_per_batch`` tasks (take as many as you need with ``itertools.islice``).
    """

    def __init__(
        self,
        dataset: Any,
        ways: int,
        shots: int,
        queries: int,
        generator: torch.Generator | None = None,
        *,
        tasks_per_batch: int = 1,
    ) -> None:
        ways, shots = _count("ways", ways), _count("shots", shots)
        queries = _count("queries", queries, why="a task without query examples has a NaN meta-loss")
        tasks_per_batch = _count("tasks_per_batch", tasks_per_batch)
        self.dataset = dataset
        self.ways, self.shots, self.queries = ways, shots, queries
        self.generator = generator
        self.tasks_per_batch = tasks_per_batch

        targets = _dataset_targets(dataset)
        classes, counts = torch.unique(targets, return_counts=True)
        if len(classes) < ways:
            raise ValueError(
                f"{ways}-way tasks need at least {ways} classes, but the dataset has {len(classes)}; "
                "lower `ways` or load more data"
            )
        # Only classes with enough examples can serve; say so if too few of them remain.
        needed = shots + queries
        usable = classes[counts >= needed]
        if len(usable) < ways:
            raise ValueError(
                f"shots + queries = {needed} examples per class are needed, but only {len(usable)} "
                f"classes have that many (the largest class has {int(counts.max())}); lower `shots` "
                "or `queries`"
            )
        order = torch.argsort(targets, stable=True)
        self._examples_of = {int(c): order[targets[order] == c] for c in usable}
        self.classes = usable
        first = int(self._examples_of[int(usable[0])][0])
        self._shape = tuple(torch.as_tensor(dataset[first][0]).shape)

    def sample_indices(self, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Dataset indices of one task: ``(support [ways, shots], query [ways, queries])``."""
        generator = generator if generator is not None else self.generator
        chosen = self.classes[torch.randperm(len(self.classes), generator=generator)[: self.ways]]
        rows = []
        for c in chosen.tolist():
            pool = self._examples_of[c]
            rows.append(pool[torch.randperm(len(pool), generator=generator)[: self.shots + self.queries]])
        picked = torch.stack(rows)
        return picked[:, : self.shots], picked[:, self.shots :]

    def _load(self, indices: Tensor) -> Tensor:
        return torch.stack([torch.as_tensor(self.dataset[i][0]) for i in indices.tolist()])

    def sample(
        self,
        num_tasks: int,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> TaskBatch:
        """Draw ``num_tasks`` tasks; ``generator`` overrides the one given at construction."""
        num_tasks = _count("num_tasks", num_tasks)
        support, query = zip(*(self.sample_indices(generator) for _ in range(num_tasks)))
        support, query = torch.stack(support), torch.stack(query)  # [tasks, ways, shots|queries]
        # Row r of a task holds the examples of its r-th chosen class: that row number is the label.
        labels = torch.arange(self.ways)
        support_y = labels[None, :, None].expand_as(support).reshape(num_tasks, -1)
        query_y = labels[None, :, None].expand_as(query).reshape(num_tasks, -1)
        support_x = self._load(support.reshape(-1)).reshape(num_tasks, self.ways * self.shots, *self._shape)
        query_x = self._load(query.reshape(-1)).reshape(num_tasks, self.ways * self.queries, *self._shape)
        batch = TaskBatch(support_x, support_y, query_x, query_y)
        return batch.to(device) if device is not None else batch

    def __iter__(self) -> Iterator[TaskBatch]:
        while True:
            yield self.sample(self.tasks_per_batch)
