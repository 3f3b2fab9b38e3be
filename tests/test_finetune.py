"""Transfer learning: pre-training and the three fine-tuning modes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from mtlcode.learners.finetune import finetune, pretrain
from mtlcode.models import MLP, Conv4


def blobs(classes: int = 3, per_class: int = 10, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(classes, 2, generator=g) * 3
    y = torch.arange(classes).repeat_interleave(per_class)
    return centers[y] + 0.3 * torch.randn(len(y), 2, generator=g), y


def test_head_mode_leaves_the_body_bitwise_unchanged_and_all_mode_changes_it():
    torch.manual_seed(0)
    model = Conv4(ways=5, hidden=8)
    x, y = torch.rand(10, 1, 28, 28), torch.arange(5).repeat(2)
    body_before = {k: v.clone() for k, v in model.body.state_dict().items()}
    head_tuned = finetune(model, x, y, steps=5, lr=0.1, mode="head")
    all_tuned = finetune(model, x, y, steps=5, lr=0.1, mode="all")
    for k, v in head_tuned.body.state_dict().items():
        assert torch.equal(v, body_before[k]), k
    assert any(not torch.equal(v, body_before[k]) for k, v in all_tuned.body.state_dict().items())
    # The original model is never modified.
    for k, v in model.body.state_dict().items():
        assert torch.equal(v, body_before[k])


def test_fresh_head_for_new_classes():
    torch.manual_seed(0)
    model = MLP([2, 16, 10])
    x, y = blobs(classes=3)
    for mode in ("head", "linear_probe"):
        tuned = finetune(model, x, y, steps=30, lr=0.5, mode=mode)
        assert tuned.head.out_features == 3
        assert (tuned(x).argmax(1) == y).float().mean() > 0.9
    tuned = finetune(model, x, y, steps=1, lr=0.1, mode="all", ways=3)
    assert tuned.head.out_features == 3 and model.head.out_features == 10


def test_linear_probe_regression_is_least_squares():
    torch.manual_seed(0)
    model = MLP([1, 8, 1])
    x = torch.linspace(-1, 1, 20).unsqueeze(1)
    y = torch.sin(3 * x)
    tuned = finetune(model, x, y, steps=0, lr=0.0, mode="linear_probe", loss=F.mse_loss)
    features = torch.cat([tuned.body(x), torch.ones(20, 1)], 1).detach()
    best = torch.linalg.lstsq(features, y).solution
    assert F.mse_loss(tuned(x), y) <= F.mse_loss(features @ best, y) + 1e-5


def test_pretrain_reduces_the_loss_on_a_dataset():
    torch.manual_seed(0)
    model = MLP([2, 16, 3])
    x, y = blobs()
    losses = pretrain(model, TensorDataset(x, y), steps=60, lr=1e-2, batch_size=10, progress=False)
    assert len(losses) == 60 and sum(losses[-10:]) < 0.5 * sum(losses[:10])


def test_pretrain_callback_sees_every_step_and_the_model_as_trained_so_far():
    torch.manual_seed(0)
    model = MLP([2, 16, 3])
    x, y = blobs()
    seen = []
    losses = pretrain(model, TensorDataset(x, y), steps=5, lr=1e-2, batch_size=10, progress=False,
                      callback=lambda done, so_far: seen.append((done, len(so_far), so_far[-1])))
    assert [(done, count) for done, count, _ in seen] == [(k, k) for k in range(1, 6)]
    assert [last for _, _, last in seen] == losses


def test_bad_arguments():
    model = MLP([2, 4, 3])
    x, y = blobs()
    with pytest.raises(ValueError, match="mode"):
        finetune(model, x, y, 1, 0.1, mode="body")
    with pytest.raises(ValueError, match="steps"):
        pretrain(model, TensorDataset(x, y), steps=0)
    with pytest.raises(ValueError, match="fewer than one batch"):
        pretrain(model, TensorDataset(x[:3], y[:3]), steps=1, batch_size=8, progress=False)


def test_a_model_without_body_and_head_gets_a_clear_error():
    model = torch.nn.Sequential(torch.nn.Linear(1, 4), torch.nn.ReLU(), torch.nn.Linear(4, 1))
    x = torch.randn(5, 1)
    with pytest.raises(TypeError, match="`body` and a `head`"):
        finetune(model, x, x, steps=1, lr=0.1, mode="head", loss=F.mse_loss)
    tuned = finetune(model, x, x, steps=1, lr=0.1, mode="all", loss=F.mse_loss)  # "all" needs no head
    assert isinstance(tuned, torch.nn.Sequential)


# -- the ridge probe for regression ------------------------------------------------------------------

def test_ridge_solution_matches_the_normal_equations_in_float64_in_both_forms():
    from mtlcode.learners.finetune import ridge_solution

    g = torch.Generator().manual_seed(0)
    for points, width in ((30, 8), (10, 41)):  # primal (more points) and dual (more features)
        x = torch.randn(points, width, generator=g, dtype=torch.float64)
        y = torch.randn(points, 2, generator=g, dtype=torch.float64)
        w, b = ridge_solution(x, y, ridge=0.3)
        # reference: minimise |[x 1][w; b] - y|^2 + 0.3 |w|^2 through its normal equations
        design = torch.cat([x, torch.ones(points, 1, dtype=torch.float64)], 1)
        penalty = torch.diag(torch.cat([torch.full((width,), 0.3, dtype=torch.float64),
                                        torch.zeros(1, dtype=torch.float64)]))
        reference = torch.linalg.solve(design.T @ design + penalty, design.T @ y)
        torch.testing.assert_close(w, reference[:-1])
        torch.testing.assert_close(b, reference[-1])


def test_ridge_zero_is_the_minimum_norm_least_squares_fit_and_a_larger_ridge_shrinks_the_weights():
    from mtlcode.learners.finetune import ridge_solution

    g = torch.Generator().manual_seed(1)
    x = torch.randn(10, 41, generator=g, dtype=torch.float64)  # fewer points than features
    y = torch.randn(10, 1, generator=g, dtype=torch.float64)
    w0, b0 = ridge_solution(x, y, 0.0)
    torch.testing.assert_close(x @ w0 + b0, y)  # interpolates the points
    xc = x - x.mean(0)
    torch.testing.assert_close(w0, torch.linalg.lstsq(xc, y - y.mean(), driver="gelsd").solution)
    norms = [ridge_solution(x, y, r)[0].norm().item() for r in (0.0, 1.0, 10.0, 100.0)]
    assert norms == sorted(norms, reverse=True) and norms[-1] < 0.5 * norms[0], norms


@pytest.mark.parametrize("ridge", [-1.0, float("nan"), float("inf")])
def test_ridge_must_be_a_finite_non_negative_number(ridge):
    from mtlcode.learners.finetune import ridge_solution

    with pytest.raises(ValueError, match="ridge"):
        ridge_solution(torch.randn(5, 3), torch.randn(5, 1), ridge)


def test_finetune_probe_takes_ridge_for_regression_only():
    from mtlcode.models import MLP

    model = MLP([1, 8, 1])
    x, y = torch.randn(6, 1), torch.randn(6, 1)
    loose = finetune(model, x, y, steps=0, lr=0.1, mode="linear_probe", loss=F.mse_loss)
    tight = finetune(model, x, y, steps=0, lr=0.1, mode="linear_probe", loss=F.mse_loss, ridge=10.0)
    assert tight.head.weight.norm() < loose.head.weight.norm()
    with pytest.raises(ValueError, match="ridge"):
        finetune(model, x, y, steps=1, lr=0.1, mode="all", loss=F.mse_loss, ridge=1.0)
