"""The 95% interval of mtlcode.evaluation: Student's t quantile (no SciPy) and the t-interval."""

from __future__ import annotations

import math
from statistics import NormalDist

import pytest
import torch

from mtlcode.evaluation import ci95_half_width, evaluate, t_quantile
from mtlcode.tasks import Sinusoid

# Reference quantiles (SciPy's stats.t.ppf, to 10 digits); the first four are the textbook ones.
KNOWN = [
    (0.975, 19, 2.0930240544),
    (0.975, 4, 2.7764451052),
    (0.975, 1, 12.7062047362),
    (0.975, 2, 4.3026527297),
    (0.975, 9, 2.2621571628),
    (0.975, 99, 1.9842169516),
    (0.975, 999, 1.9623414611),
    (0.975, 1000, 1.9623390808),
    (0.95, 30, 1.6972608866),
    (0.995, 10, 3.1692726726),
    (0.9995, 3, 12.9239786367),
    (0.6, 5, 0.2671808657),
    (0.975, 2.5, 3.5746548420),  # a real number of degrees of freedom, as in Welch's test
]


@pytest.mark.parametrize("p, df, expected", KNOWN)
def test_t_quantile_matches_known_values(p, df, expected):
    assert t_quantile(p, df) == pytest.approx(expected, abs=1e-4)
    assert t_quantile(p, df) == pytest.approx(expected, rel=1e-9)  # in fact far closer
    assert t_quantile(1 - p, df) == pytest.approx(-expected, rel=1e-9)  # symmetric about 0


def test_t_quantile_closed_forms_for_one_and_two_degrees_of_freedom():
    for p in (0.51, 0.7, 0.9, 0.975, 0.999, 0.9999):
        assert t_quantile(p, 1) == pytest.approx(math.tan(math.pi * (p - 0.5)), rel=1e-9)  # Cauchy
        assert t_quantile(p, 2) == pytest.approx((2 * p - 1) / math.sqrt(2 * p * (1 - p)), rel=1e-9)


def test_t_quantile_tends_to_the_normal_quantile():
    z = NormalDist().inv_cdf(0.975)
    assert z == pytest.approx(1.95996, abs=1e-5)
    assert t_quantile(0.975, math.inf) == z
    assert t_quantile(0.975, 1e6) == pytest.approx(1.959966, abs=1e-6)
    by_df = [t_quantile(0.975, df) for df in (1, 2, 5, 19, 100, 999, 1000, 10_000, 1e8)]
    assert all(a > b > z for a, b in zip(by_df, by_df[1:])), by_df  # decreasing towards z
    assert t_quantile(0.5, 7) == 0.0


@pytest.mark.parametrize("p, df", [(0.0, 5), (1.0, 5), (-0.1, 5), (0.5, 0), (0.9, -1), (0.9, math.nan)])
def test_t_quantile_rejects_impossible_arguments(p, df):
    with pytest.raises(ValueError):
        t_quantile(p, df)


def test_ci95_half_width_is_the_t_interval_not_the_normal_one():
    values = torch.linspace(0.6, 0.95, 20, dtype=torch.float64) ** 2
    spread = values.std().item() / math.sqrt(20)
    assert ci95_half_width(values) == pytest.approx(2.0930240544 * spread, rel=1e-9)
    assert ci95_half_width(values) != pytest.approx(1.96 * spread, rel=1e-2)  # the old, too narrow one
    assert ci95_half_width(values.tolist()) == ci95_half_width(values)
    assert math.isnan(ci95_half_width(torch.tensor([0.5])))


def test_evaluation_interval_over_20_tasks_uses_19_degrees_of_freedom():
    tasks = Sinusoid().sample(20, 5, 10, generator=torch.Generator().manual_seed(0))

    def predict_zero(support_x, support_y, query_x):
        return torch.zeros_like(query_x)

    result = evaluate(predict_zero, tasks)
    values = torch.tensor(result.values, dtype=torch.float64)
    spread = values.std().item() / math.sqrt(20)
    assert len(result.values) == 20
    assert result.ci95 == pytest.approx(2.0930 * spread, rel=1e-4)
    assert result.ci95 > 1.06 * 1.96 * spread  # 1.96 would make this 20-task interval 6% too narrow
