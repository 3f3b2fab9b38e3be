"""The plotting helpers draw what they say on real objects (Agg backend, no screen)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from mtlcode import MAML  # noqa: E402
from mtlcode.book import plots  # noqa: E402
from mtlcode.models import MLP  # noqa: E402
from mtlcode.tasks import NWayKShot, Sinusoid  # noqa: E402


def test_learning_curves_draw_train_and_validation():
    history = {"step": [1, 2, 3, 4], "loss": [4.0, 3.0, 2.0, 1.0], "val_step": [2, 4], "val_loss": [3.5, 1.5]}
    fig = plots.learning_curves(history, smooth=2)
    lines = fig.axes[0].get_lines()
    assert len(lines) == 2
    assert list(lines[0].get_ydata()) == [4.0, 3.5, 2.5, 1.5]


def test_sinusoid_fit_draws_one_curve_per_step():
    maml = MAML(MLP([1, 8, 1]), 0.01, loss=F.mse_loss)
    batch = Sinusoid().sample(2, 5, 5)
    fig = plots.sinusoid_fit(maml, batch, steps=(0, 1, 5))
    assert len(fig.axes[0].get_lines()) == 2 + 3
    with pytest.raises(TypeError, match="SinusoidBatch"):
        plots.sinusoid_fit(maml, batch[0:1].__class__.__mro__[1](*[batch.support_x] * 4))


def test_task_grid_has_a_row_per_class():
    from torch.utils.data import TensorDataset

    data = TensorDataset(torch.rand(40, 1, 8, 8), torch.arange(4).repeat_interleave(10))
    batch = NWayKShot(data, ways=3, shots=2, queries=2).sample(1)
    fig = plots.task_grid(batch, queries=2)
    assert len(fig.axes) == 3 * 4


def test_family_spectrum_places_every_method_once():
    fig = plots.family_spectrum()
    texts = [t.get_text() for t in fig.axes[0].texts]
    for name in plots.FAMILY_SPECTRUM:
        assert texts.count(name) == 1, (name, texts)
    # Methods sharing a cell are drawn side by side, not on top of each other.
    positions = {t.get_text(): t.xy for t in fig.axes[0].texts if t.get_text() in plots.FAMILY_SPECTRUM}
    assert positions["MAML"] != positions["Meta-SGD"]
    plt.close(fig)


def _seed_row(method: str, benchmark: str, family: str, per_seed: list[float], metric: str = "accuracy") -> dict:
    mean = sum(per_seed) / len(per_seed)
    return {"method": method, "benchmark": benchmark, "family": family, "metric": metric, "mean": mean,
            "ci95": 0.05, "per_seed": per_seed}


def test_benchmark_scores_draws_seed_means_seeds_and_published_marks():
    result = {"rows": [_seed_row("maml", "heldout", "meta-learning", [0.8, 0.7, 0.9]),
                       _seed_row("finetune_head", "heldout", "transfer", [0.6, 0.6, 0.6]),
                       _seed_row("protonet", "lake20", "meta-learning", [0.1, 0.2, 0.3], "error")],
              "published": [{"method": "people", "benchmark": "lake20", "metric": "error", "mean": 0.045}]}
    fig = plots.benchmark_scores(result)
    heldout, lake = fig.axes[:2]
    bars = [patch for patch in heldout.patches]
    assert [round(b.get_height(), 3) for b in bars] == [0.8, 0.6]
    assert bars[0].get_facecolor() != bars[1].get_facecolor()  # meta-learners and transfer apart
    seeds = [line for line in heldout.get_lines() if line.get_marker() == "."]
    assert [list(line.get_ydata()) for line in seeds] == [[0.8, 0.7, 0.9], [0.6, 0.6, 0.6]]
    assert round(lake.patches[0].get_height(), 3) == 0.8  # errors drawn as 1 - error
    assert [t.get_text() for t in lake.texts] == ["people"]
    assert "1 - error" in lake.get_title()
    plt.close(fig)
    with pytest.raises(ValueError, match="no scores for benchmark 'digits'"):
        plots.benchmark_scores(result, ["heldout", "digits"])
