"""Transfer learning: pre-training and the three fine-tuning modes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from mtlcode.finetune import finetune, pretrain
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
