"""Checks for the exercises of chapter 2 (concepts)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from mtlcode.course.exercises._checking import (
    _call,
    _diagnose,
    _failure,
    _mismatch,
    _passed,
    _uniform,
)
from mtlcode.tasks import Sinusoid

__all__ = ["check_average_sinusoid", "check_nway_kshot"]


def check_nway_kshot(sample_task: Callable[[Tensor, int, int, int, torch.Generator], tuple[Tensor, Tensor]]) -> None:
    """Check ``sample_task(targets, ways, shots, queries, generator)``, an N-way K-shot sampler.

    ``targets[i]`` is the class of example ``i``. The answer is ``(support, query)``: dataset
    indices shaped ``[ways, shots]`` and ``[ways, queries]``, row ``r`` holding examples of the
    class that gets label ``r``. A sampler is random, so instead of comparing numbers the check
    tests, over 200 draws, the properties that :meth:`mtlcode.tasks.NWayKShot.sample_indices`
    guarantees: one class per row, different classes in different rows, no example twice, every
    class in every row sometimes, and the same task for the same seed.
    """
    exercise, cases = "sample_task", []
    classes, per_class, ways, shots, queries = 8, 6, 5, 2, 3
    # Examples of the 8 classes in a shuffled order: an index is not a class.
    targets = torch.arange(classes).repeat_interleave(per_class)[
        torch.randperm(classes * per_class, generator=torch.Generator().manual_seed(0))]

    case = "shapes and integer indices"
    got = _call(exercise, case, sample_task, targets.clone(), ways, shots, queries, torch.Generator().manual_seed(0))
    expected = f"(support, query) index tensors shaped {(ways, shots)} and {(ways, queries)}"
    if not (isinstance(got, tuple | list) and len(got) == 2 and all(isinstance(t, Tensor) for t in got)):
        raise _failure(exercise, case, expected, repr(got)[:80], "return a pair of tensors: (support, query)")
    if tuple(got[0].shape) != (ways, shots) or tuple(got[1].shape) != (ways, queries):
        raise _failure(exercise, case, expected, f"shapes {tuple(got[0].shape)} and {tuple(got[1].shape)}",
                       "one row per class: support [ways, shots], query [ways, queries]")
    if got[0].is_floating_point() or got[1].is_floating_point():
        raise _failure(exercise, case, "integer indices", f"{got[0].dtype} and {got[1].dtype}",
                       "indices are integers (torch.randperm gives int64)")
    cases.append(case)

    generator = torch.Generator().manual_seed(1)
    draws = [_call(exercise, "200 draws", sample_task, targets.clone(), ways, shots, queries, generator)
             for _ in range(200)]
    rows = [(torch.cat([s, q], dim=1)) for s, q in draws]  # [ways, shots + queries] per draw
    if any(not ((r >= 0) & (r < len(targets))).all() for r in rows):
        raise _failure(exercise, "indices in range", f"indices in [0, {len(targets)})", "an index out of range",
                       "return positions in the dataset, not class numbers")

    case = "each row holds one class"
    for d, r in enumerate(rows):
        labels = targets[r]
        bad = [i for i in range(ways) if not (labels[i] == labels[i, 0]).all()]
        if bad:
            raise _failure(exercise, case, f"draw {d}, row {bad[0]}: every example of one class",
                           f"classes {labels[bad[0]].tolist()}",
                           "draw the examples of row r from the examples of its class only")
    cases.append(case)

    case = "rows hold different classes"
    for d, r in enumerate(rows):
        chosen = targets[r[:, 0]]
        if len(chosen.unique()) != ways:
            raise _failure(exercise, case, f"draw {d}: {ways} different classes", f"classes {chosen.tolist()}",
                           "choose the classes without replacement (torch.randperm), not with torch.randint")
    cases.append(case)

    case = "no example twice in a task"
    for d, r in enumerate(rows):
        if len(r.unique()) != r.numel():
            raise _failure(exercise, case, f"draw {d}: {r.numel()} different examples",
                           f"{r.numel() - len(r.unique())} repeated", "draw the shots + queries examples of a class "
                           "together, without replacement, then split them into support and query")
    cases.append(case)

    case = "every class appears in every row"
    seen = torch.zeros(ways, classes, dtype=torch.bool)
    for r in rows:
        seen[torch.arange(ways), targets[r[:, 0]]] = True
    if not seen.all():
        row, missing = (~seen).nonzero()[0].tolist()
        raise _failure(exercise, case, f"class {missing} in row {row} in some of 200 draws", "never",
                       "draw the classes at random from all classes and give them the labels in a random order "
                       "(the order torch.randperm returns), not sorted")
    cases.append(case)

    case = "same generator seed, same task"
    first = _call(exercise, case, sample_task, targets.clone(), ways, shots, queries, torch.Generator().manual_seed(7))
    second = _call(exercise, case, sample_task, targets.clone(), ways, shots, queries, torch.Generator().manual_seed(7))
    if not (torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])):
        raise _failure(exercise, case, "two identical tasks", "two different tasks",
                       "take every random number from `generator` (torch.randperm(n, generator=generator))")
    cases.append(case)
    _passed(exercise, cases)


def _phase_average(x: Tensor, phase: tuple[float, float]) -> Tensor:
    """The mean of ``sin(x - phi)`` over ``phi`` uniform in ``phase``, in closed form.

    An antiderivative of ``sin(x - phi)`` in ``phi`` is ``cos(x - phi)``, so the integral over
    ``[p0, p1]`` is ``cos(x - p1) - cos(x - p0)``; the mean divides it by ``p1 - p0``.
    """
    p0, p1 = phase
    return (torch.cos(x - p1) - torch.cos(x - p0)) / (p1 - p0)


def check_average_sinusoid(average_sinusoid: Callable[[Tensor, Sinusoid], Tensor]) -> None:
    """Check ``average_sinusoid(x, family)``: the mean curve ``E[y | x]`` of a sinusoid family.

    ``family`` is a :class:`mtlcode.tasks.Sinusoid`: a task is ``y = A sin(x - phi)`` with ``A``
    uniform in ``family.amplitude = (a0, a1)`` and, independently, ``phi`` uniform in
    ``family.phase = (p0, p1)``. The answer, shaped like ``x``, is the expected ``y`` at every
    ``x`` over the tasks: the curve that pre-training on pooled tasks learns. Reference: the
    closed form ``(a0 + a1) / 2 * (cos(x - p1) - cos(x - p0)) / (p1 - p0)``; a numerical
    average over the phase passes too if it is accurate to about 1e-7.
    """
    exercise, cases = "average_sinusoid", []
    generator = torch.Generator().manual_seed(5)
    families = [("the book's family, 200 points in [-5, 5]", Sinusoid(),
                 torch.linspace(-5, 5, 200, dtype=torch.float64).reshape(200, 1))]
    for shape in ((3, 40, 1), (2, 3, 25, 1)):
        a0 = _uniform(generator, 0.0, 2.0)
        a1 = a0 + _uniform(generator, 0.5, 3.0)
        p0 = _uniform(generator, -1.0, 1.0)
        p1 = p0 + _uniform(generator, 0.5, 2.5)
        x = 6 * (2 * torch.rand(shape, generator=generator, dtype=torch.float64) - 1)
        families.append((f"amplitude in [{a0:.3f}, {a1:.3f}], phase in [{p0:.3f}, {p1:.3f}], x shaped {shape}",
                         Sinusoid(amplitude=(a0, a1), phase=(p0, p1)), x))
    for case, family, x in families:
        (a0, a1), (p0, p1) = family.amplitude, family.phase
        mean_amplitude = (a0 + a1) / 2
        phase_average = _phase_average(x, family.phase)
        expected = mean_amplitude * phase_average
        got = _call(exercise, case, average_sinusoid, x.clone(), family)
        problem = _mismatch(expected, got)
        if problem:
            hint = _diagnose(got, [
                (mean_amplitude * torch.sin(x - (p0 + p1) / 2),
                 "this is the sine at the mean phase, but the mean of sin(x - phi) over phi is not "
                 "sin(x - mean phi): average sin(x - phi) itself over the phase range (integrate, then divide "
                 "by its width)"),
                (mean_amplitude * (p1 - p0) * phase_average,
                 "this is the integral over the phase, not its mean: divide by the width of the range, p1 - p0"),
                (-expected, "the sign is flipped: d/dphi cos(x - phi) = +sin(x - phi), so the integral of "
                            "sin(x - phi) from p0 to p1 is cos(x - p1) - cos(x - p0)"),
                (-2 * mean_amplitude / torch.pi * torch.cos(x),
                 "this is the chapter's formula for phases in [0, pi] only: use the family's own range, "
                 "family.phase"),
                (phase_average, "the amplitude is missing: multiply by E[A] = (a0 + a1) / 2 (A and phi are "
                                "independent, so E[A sin(x - phi)] = E[A] E[sin(x - phi)])"),
                (a1 * phase_average, "E[A] is the mean of the amplitude range, (a0 + a1) / 2, not its upper end"),
                ((a1 - a0) / 2 * phase_average,
                 "E[A] is the mean of the amplitude range, (a0 + a1) / 2: add the ends, do not subtract them"),
            ], "E[y | x] = E[A] * (mean of sin(x - phi) over phi in [p0, p1]), with E[A] = (a0 + a1) / 2")
            raise _failure(exercise, case, *problem, hint)
        cases.append(case)
    _passed(exercise, cases)
