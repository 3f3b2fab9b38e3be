"""The networks: batch norm that vmap differentiates correctly, and the CPU channels-last layout."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from mtlcode.models import MLP, Conv4, TaskBatchNorm2d, channels_last, under_torch_func


def second_derivatives_autograd(norm: nn.Module, x: torch.Tensor, probe: torch.Tensor):
    """Output, d/dx, d/dweight and a second derivative of ``<probe, norm(x)^2>``, by plain autograd
    (the fused batch-norm kernel runs)."""
    x = x.clone().requires_grad_()
    out = norm(x)
    gx, gw = torch.autograd.grad((probe * out.pow(2)).sum(), (x, norm.weight), create_graph=True)
    (second,) = torch.autograd.grad(gx.pow(2).sum() + gw.sum(), x)
    return out, gx, gw, second


def second_derivatives_torch_func(norm: nn.Module, x: torch.Tensor, probe: torch.Tensor):
    """The same four quantities with torch.func, so that it can run under vmap."""
    weight = norm.weight

    def value(x, w):
        out = functional_call(norm, {"weight": w, "bias": norm.bias}, (x,))
        return (probe * out.pow(2)).sum()

    def first(x):
        gx, gw = grad(value, argnums=(0, 1))(x, weight)
        return gx.pow(2).sum() + gw.sum(), (gx, gw)

    second, (gx, gw) = grad(first, has_aux=True)(x)
    return functional_call(norm, {"weight": weight, "bias": norm.bias}, (x,)), gx, gw, second


def test_task_batch_norm_spelled_out_path_equals_the_fused_kernel():
    """Under vmap the module takes its mean/var path; outside it, PyTorch's kernel. Same maths,
    to second order."""
    torch.manual_seed(0)
    norm = TaskBatchNorm2d(3).double()
    with torch.no_grad():
        norm.weight.uniform_(0.5, 2.0)
        norm.bias.uniform_(-1.0, 1.0)
    x = torch.randn(2, 5, 3, 4, 4, dtype=torch.float64) * 3 + 1
    probe = torch.randn_like(x[0])
    fused = [second_derivatives_autograd(norm, task, probe) for task in x]
    spelled_out = vmap(lambda task: second_derivatives_torch_func(norm, task, probe))(x)
    for i, task_results in enumerate(fused):
        for expected, got in zip(task_results, spelled_out):
            torch.testing.assert_close(got[i], expected, rtol=1e-10, atol=1e-12)


def test_task_batch_norm_keeps_no_running_statistics():
    norm = TaskBatchNorm2d(4)
    assert isinstance(norm, nn.BatchNorm2d)
    assert list(dict(norm.named_buffers())) == []
    assert norm(torch.randn(6, 4, 3, 3)).mean().abs() < 1e-5


def test_under_torch_func_sees_vmap_only_inside_it():
    x = torch.randn(3, 2)
    assert not under_torch_func(x)
    assert vmap(lambda row: torch.tensor(under_torch_func(row)))(x).all()


@pytest.mark.parametrize("channels", [1, 3])
def test_channels_last_keeps_the_values_and_changes_the_layout(channels):
    images = torch.rand(4, channels, 8, 8)
    moved = channels_last(images)
    assert torch.equal(moved, images)
    out = nn.functional.conv2d(moved, torch.randn(5, channels, 3, 3), padding=1)
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert not out.is_contiguous()


def test_conv4_gives_the_same_outputs_and_gradients_in_either_layout():
    """Conv4 lays CPU inputs out channels-last; the maths must not change."""
    torch.manual_seed(0)
    model = Conv4(ways=3, hidden=8).double()
    x = torch.rand(6, 1, 28, 28, dtype=torch.float64)
    # The plain NCHW path: run the body as a plain Sequential, so that nothing is converted.
    expected = model.head(nn.Sequential.forward(model.body, x))
    layouts = []
    model.body[1].register_forward_hook(lambda module, inputs, output: layouts.append(
        inputs[0].is_contiguous(memory_format=torch.channels_last) and not inputs[0].is_contiguous()))
    got = model(x)
    model.body(x)
    assert layouts[-2:] == [True, True]  # model(x) and model.body(x) both run channels-last
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)
    g_expected = torch.autograd.grad(expected.sum(), list(model.parameters()))
    g_got = torch.autograd.grad(got.sum(), list(model.parameters()))
    for a, b in zip(g_got, g_expected):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


def test_model_arguments_are_checked():
    with pytest.raises(ValueError, match="sizes"):
        MLP([3])
    with pytest.raises(ValueError, match="hidden"):
        Conv4(hidden=0)
    with pytest.raises(ValueError, match="image_size"):
        Conv4(image_size=8)
    with pytest.raises(ValueError, match=r"\[batch, channels, height, width\]"):
        Conv4()(torch.rand(28, 28))


def test_mlp_takes_a_smooth_activation_and_refuses_an_instance():
    smooth = MLP([1, 8, 1], activation=nn.Tanh)
    assert isinstance(smooth.body[1], nn.Tanh)
    assert isinstance(MLP([1, 8, 1]).body[1], nn.ReLU)  # the default stays the paper's
    x = torch.linspace(-1, 1, 5).reshape(-1, 1)
    assert smooth(x).shape == (5, 1)
    for bad in (nn.Tanh(), "tanh", torch.tanh):
        with pytest.raises(TypeError, match="activation"):
            MLP([1, 8, 1], activation=bad)
