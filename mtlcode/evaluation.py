"""Scoring learners on test tasks: the per-task metric, and its mean with a 95% interval.

Every learner (see :mod:`mtlcode.learners.base`) and every fine-tuning baseline is scored the same way:
adapt on each test task's support set, predict its query set, compute one number per task
(accuracy for classification, mean squared error for regression), and report the mean over tasks
with the half-width of its 95% confidence interval.

The interval is Student's t-interval, ``t_{0.975, n-1} * s / sqrt(n)`` with ``s`` the sample
standard deviation of the ``n`` per-task numbers. The familiar ``1.96 * s / sqrt(n)`` takes
``s`` for the true standard deviation; with 600 tasks that hardly matters
(``t_{0.975, 599} = 1.964``), but the 20 runs of Lake's one-shot benchmark are 20 numbers, and
there ``t_{0.975, 19} = 2.093``: the normal quantile would make the interval 6% too narrow.
:func:`t_quantile` computes the quantile without SciPy (which is not a dependency).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from statistics import NormalDist

import torch
from torch import Tensor
from tqdm import tqdm

from mtlcode.learners.base import Learner
from mtlcode.metrics import task_metric
from mtlcode.tasks import TaskBatch

__all__ = ["Evaluation", "ci95_half_width", "evaluate", "t_quantile"]

TaskSource = Callable[[torch.Generator], TaskBatch]
AdaptAndPredict = Callable[[Tensor, Tensor, Tensor], Tensor]


# -- Student's t quantile, without SciPy ------------------------------------------------------

_LARGE_DF = 1000.0  # from here on, the Cornish-Fisher expansion is accurate to far better than 1e-9


def _incomplete_beta(a: float, b: float, x: float) -> float:
    """The regularised incomplete beta function ``I_x(a, b)``, by its continued fraction.

    Lentz's method on the classical continued fraction (as in Numerical Recipes, section 6.4),
    using the symmetry ``I_x(a, b) = 1 - I_{1-x}(b, a)`` where the fraction converges slowly.
    """
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    if x > (a + 1.0) / (a + b + 2.0):
        return 1.0 - _incomplete_beta(b, a, 1.0 - x)
    log_front = (math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                 + a * math.log(x) + b * math.log1p(-x))
    tiny, eps = 1e-300, 1e-15
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    fraction = d
    for m in range(1, 10_000):
        for numerator in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                          -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            fraction *= c * d
        if abs(c * d - 1.0) < eps:
            return math.exp(log_front) * fraction / a
    raise ArithmeticError(f"the incomplete beta function did not converge for a={a}, b={b}, x={x}")


def _t_excess(t: float, df: float, p: float) -> float:
    """``P(T <= t) - p`` for ``t >= 0``, ``p > 1/2`` and Student's ``T`` with ``df`` degrees of freedom.

    Near the centre ``P(0 < T <= t) = I_{t^2/(df+t^2)}(1/2, df/2) / 2`` is accurate, in the tail
    ``P(T > t) = I_{df/(df+t^2)}(df/2, 1/2) / 2``: each form avoids subtracting nearly equal numbers.
    """
    if p < 0.75:
        return 0.5 * _incomplete_beta(0.5, df / 2.0, t * t / (df + t * t)) - (p - 0.5)
    return (1.0 - p) - 0.5 * _incomplete_beta(df / 2.0, 0.5, df / (df + t * t))


def t_quantile(p: float, df: float) -> float:
    """The ``p``-quantile of Student's t distribution with ``df`` degrees of freedom.

    Why: the mean of ``n`` scores, standardised by their *sample* standard deviation, follows a
    t distribution with ``n - 1`` degrees of freedom (for normally distributed scores), whose
    tails are heavier than the normal's when ``n`` is small. A 95% interval from few numbers
    must therefore use ``t_quantile(0.975, n - 1)``, not 1.96: ``t_{0.975, 19} = 2.0930``,
    ``t_{0.975, 4} = 2.7764``, ``t_{0.975, 1} = 12.706``; the quantile tends to the normal
    1.95996 as ``df`` grows (``df=math.inf`` gives the normal quantile).

    How, without SciPy: below ``df = 1000`` the distribution function, written with the
    regularised incomplete beta function, is inverted by bisection to about
    1e-12; from 1000 on, the Cornish-Fisher expansion of ``t`` in powers of ``1/df`` around the
    normal quantile is used. Any real ``df > 0`` is allowed.
    """
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must lie strictly between 0 and 1, got {p!r}")
    if not df > 0:
        raise ValueError(f"df must be > 0, got {df!r}")
    if p == 0.5:
        return 0.0
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    z = NormalDist().inv_cdf(p)
    if df >= _LARGE_DF:  # Abramowitz and Stegun 26.7.5, four terms
        z2 = z * z
        return z * (1.0 + (z2 + 1.0) / (4.0 * df)
                    + (5.0 * z2**2 + 16.0 * z2 + 3.0) / (96.0 * df**2)
                    + (3.0 * z2**3 + 19.0 * z2**2 + 17.0 * z2 - 15.0) / (384.0 * df**3)
                    + (79.0 * z2**4 + 776.0 * z2**3 + 1482.0 * z2**2 - 1920.0 * z2 - 945.0)
                    / (92160.0 * df**4))
    low, high = 0.0, max(2.0 * z, 1.0)
    while _t_excess(high, df, p) < 0:  # the t tail is heavier than the normal's: widen the bracket
        low, high = high, 2.0 * high
    for _ in range(200):
        middle = 0.5 * (low + high)
        if _t_excess(middle, df, p) < 0:
            low = middle
        else:
            high = middle
        if high - low <= 1e-13 * high:
            break
    return 0.5 * (low + high)


def ci95_half_width(values: Tensor) -> float:
    """Half-width of the 95% t-interval of the mean of ``values`` (one number per task or run).

    ``t_quantile(0.975, n - 1) * s / sqrt(n)``, with ``s`` the sample standard deviation
    (divisor ``n - 1``); NaN for fewer than two values, which give no spread to measure.
    """
    values = torch.as_tensor(values, dtype=torch.float64).flatten()
    n = len(values)
    if n < 2:
        return float("nan")
    return t_quantile(0.975, n - 1) * values.std().item() / math.sqrt(n)


@dataclass(frozen=True)
class Evaluation:
    """Mean of a per-task metric with the half-width of its 95% confidence interval.

    ``ci95`` is the half-width of Student's t-interval over the ``len(values)`` tasks (see
    :func:`ci95_half_width`): with few tasks, such as the 20 runs of Lake's benchmark, the
    normal quantile 1.96 would make it too narrow.
    """

    mean: float
    ci95: float
    values: list[float]

    def __str__(self) -> str:
        return f"{self.mean:.4f} ± {self.ci95:.4f} (95% CI, {len(self.values)} tasks)"


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


def _steps(steps: int | None) -> int | None:
    if steps is None:
        return None
    if isinstance(steps, bool):
        raise TypeError(f"steps must be an int >= 0 or None, got {steps!r}")
    steps = operator.index(steps)
    if steps < 0:
        raise ValueError(f"steps must be an int >= 0 or None, got {steps}")
    return steps


def evaluate(
    method: Learner | AdaptAndPredict,
    tasks: TaskBatch | Iterable[TaskBatch] | TaskSource,
    num_tasks: int | None = None,
    steps: int | None = None,
    seed: int = 0,
    device: torch.device | str | None = None,
    progress: bool = False,
) -> Evaluation:
    """Score ``method`` on test tasks: mean and 95% t-interval over tasks.

    ``method`` is a :class:`~mtlcode.learners.base.Learner` (adapted with ``steps`` inner steps,
    default its own) or any ``adapt_and_predict(support_x, support_y, query_x) -> predictions``
    function for one task, such as a fine-tuning baseline. ``tasks`` is a batch, an iterable of
    batches, or a sampling function ``generator -> TaskBatch`` called (with a generator seeded by
    ``seed``) until ``num_tasks`` tasks are drawn. The metric is query accuracy for
    classification and MSE for regression.
    """
    steps = _steps(steps)
    if num_tasks is not None and (isinstance(num_tasks, bool) or operator.index(num_tasks) < 1):
        raise ValueError(f"num_tasks must be an int >= 1, got {num_tasks!r}")
    values: list[Tensor] = []
    for batch in tqdm(_task_batches(tasks, num_tasks, seed), desc="evaluate", disable=not progress):
        if device is not None:
            batch = batch.to(device)
        if isinstance(method, Learner):
            _, metrics = method.evaluate_batch(batch, steps=steps)
        else:
            if steps is not None:
                raise ValueError("steps applies to learners; a fine-tuning function sets its own steps")
            predictions = torch.stack([method(t.support_x, t.support_y, t.query_x).detach() for t in batch])
            metrics = task_metric(predictions, batch.query_y)
        values.append(metrics.cpu())
    if not values:
        raise ValueError("no tasks to evaluate on")
    scores = torch.cat(values).double()
    return Evaluation(scores.mean().item(), ci95_half_width(scores), scores.tolist())
