"""Linear CKA has the invariances it is used for, and layer_outputs reads the right activations."""

from __future__ import annotations

import pytest
import torch

from mtlcode.models import Conv4
from mtlcode.similarity import layer_outputs, linear_cka


def test_cka_is_one_for_rotations_and_scalings_and_low_for_unrelated():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 10, generator=g, dtype=torch.float64)
    rotation, _ = torch.linalg.qr(torch.randn(10, 10, generator=g, dtype=torch.float64))
    assert linear_cka(x, x) == pytest.approx(1.0)
    assert linear_cka(x, 3.0 * x @ rotation + 5.0) == pytest.approx(1.0)
    assert linear_cka(x, torch.randn(200, 10, generator=g, dtype=torch.float64)) < 0.2
    # Not invariant to arbitrary linear maps: stretching one direction lowers it.
    stretch = torch.ones(10, dtype=torch.float64)
    stretch[0] = 30.0
    assert linear_cka(x, x * stretch) < 0.9


def test_cka_matches_the_kernel_form_and_is_symmetric():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(50, 7, generator=g, dtype=torch.float64)
    y = torch.randn(50, 3, generator=g, dtype=torch.float64) + x[:, :3]
    centre = torch.eye(50, dtype=torch.float64) - 1 / 50
    k, l_ = centre @ x @ x.T @ centre, centre @ y @ y.T @ centre
    hsic = (k * l_).sum()
    expected = hsic / ((k * k).sum().sqrt() * (l_ * l_).sum().sqrt())
    assert linear_cka(x, y) == pytest.approx(expected.item())
    assert linear_cka(y, x) == pytest.approx(linear_cka(x, y).item())


def test_cka_refuses_mismatched_or_degenerate_inputs():
    with pytest.raises(ValueError, match="same number of inputs"):
        linear_cka(torch.randn(5, 2), torch.randn(6, 2))
    with pytest.raises(ValueError, match="constant"):
        linear_cka(torch.ones(5, 2), torch.randn(5, 2))


def test_layer_outputs_use_the_given_parameters():
    torch.manual_seed(0)
    model = Conv4(ways=3, hidden=4)
    x = torch.rand(6, 1, 28, 28)
    own = layer_outputs(model, ["body.0", "head"], x)
    assert own["body.0"].shape == (6, 4, 14, 14) and own["head"].shape == (6, 3)
    assert torch.allclose(own["head"], model(x))
    params = {name: p + 1.0 if name.startswith("head") else p for name, p in model.named_parameters()}
    moved = layer_outputs(model, ["body.0", "head"], x, params=params)
    assert torch.equal(moved["body.0"], own["body.0"])      # the body did not change
    assert not torch.allclose(moved["head"], own["head"])
    assert not model.body[0]._forward_hooks                  # hooks are removed
    with pytest.raises(ValueError, match="no submodules"):
        layer_outputs(model, ["body.9"], x)


def test_cka_of_wide_activations_equals_the_feature_space_formula():
    # The Gram-matrix form must give the textbook |Y^T X|^2 / (|X^T X| |Y^T Y|) exactly.
    g = torch.Generator().manual_seed(2)
    x = torch.randn(12, 300, generator=g, dtype=torch.float64)
    y = x[:, :50] @ torch.randn(50, 80, generator=g, dtype=torch.float64)
    xc, yc = x - x.mean(0), y - y.mean(0)
    expected = (yc.T @ xc).square().sum() / ((xc.T @ xc).square().sum().sqrt() * (yc.T @ yc).square().sum().sqrt())
    assert linear_cka(x, y) == pytest.approx(expected.item(), rel=1e-10)
