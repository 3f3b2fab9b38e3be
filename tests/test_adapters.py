"""Parameter-efficient fine-tuning: LoRA, BitFit and FiLM adapters, alone and through ``finetune``."""

from __future__ import annotations

import copy
import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from mtlcode.learners.adapters import ADAPTER_MODES, FiLM, LoRA, add_adapters, add_film, add_lora, count_adapted
from mtlcode.learners.finetune import finetune, pretrain
from mtlcode.models import MLP, Conv4, count_parameters

ADAPTER_PARAMETER = {"lora": r"\.(A|B)$", "bitfit": r"\.bias$", "film": r"\.(gamma|beta)$"}


def blobs(classes: int = 3, per_class: int = 10, seed: int = 0):
    """Gaussian clusters in the plane, one per class: a seeded classification task."""
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(classes, 2, generator=g) * 3
    y = torch.arange(classes).repeat_interleave(per_class)
    return centers[y] + 0.5 * torch.randn(len(y), 2, generator=g), y


def mlp_task():
    torch.manual_seed(0)
    return MLP([2, 16, 16, 5]), *blobs()


def conv_task():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    return Conv4(ways=5, hidden=8), torch.rand(10, 1, 28, 28, generator=g), torch.arange(5).repeat(2)


TASKS = {"MLP": mlp_task, "Conv4": conv_task}


def original_name(name: str) -> str:
    """The pre-trained model's name for a parameter of an adapted one (LoRA's ``.base``, FiLM's ``.layer``)."""
    return name.replace(".base.", ".").replace(".layer.", ".")


# -- initialisation: the adapted network is the pre-trained one ----------------------------------------

@pytest.mark.parametrize("mode", ADAPTER_MODES)
@pytest.mark.parametrize("kind", sorted(TASKS))
def test_an_adapted_network_starts_as_the_pretrained_one_bit_for_bit(kind, mode):
    model, x, y = TASKS[kind]()
    adapted = add_adapters(copy.deepcopy(model), mode)
    assert torch.equal(adapted(x), model(x))
    # through finetune: a fresh head, but the body's features are untouched before the first step
    assert torch.equal(finetune(model, x, y, steps=0, lr=0.1, mode=mode).body(x), model.body(x))


class ConvNoNorm(nn.Module):
    """A convolution without batch norm after it: FiLM goes right after the convolution."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 3, kernel_size=3), nn.ReLU(), nn.Flatten())
        self.head = nn.Linear(3 * 4 * 4, 2)

    def forward(self, x):
        return self.head(self.body(x))


def test_film_follows_each_layer_or_the_batch_norm_after_it():
    def placed(model):  # (the layer each FiLM follows, the FiLM's feature axis)
        adapted = add_film(copy.deepcopy(model))
        return [(type(m.layer).__name__, m.film.dim) for m in adapted.body.modules() if hasattr(m, "film")]

    assert placed(MLP([2, 5, 5, 3])) == [("Linear", -1)] * 2
    assert placed(Conv4(hidden=4)) == [("TaskBatchNorm2d", 1)] * 4  # not before: batch norm would undo it
    assert placed(ConvNoNorm()) == [("Conv2d", 1)]
    model, x = ConvNoNorm(), torch.randn(2, 1, 6, 6)
    assert torch.equal(add_film(copy.deepcopy(model))(x), model(x))
    assert count_adapted(ConvNoNorm(), "film", head=False) == 2 * 3


@pytest.mark.parametrize("mode", ADAPTER_MODES)
def test_adapters_take_the_dtype_of_their_layers(mode):
    model, x, _ = mlp_task()
    adapted = add_adapters(model.double(), mode)
    assert {p.dtype for p in adapted.parameters()} == {torch.float64}
    assert adapted(x.double()).dtype == torch.float64


# -- fine-tuning moves the adapters and the head, nothing else ------------------------------------------

@pytest.mark.parametrize("mode", ADAPTER_MODES)
@pytest.mark.parametrize("kind", sorted(TASKS))
def test_finetuning_changes_only_the_adapters_and_the_head(kind, mode):
    model, x, y = TASKS[kind]()
    pretrained = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(1)
    start = finetune(model, x, y, steps=0, lr=0.1, mode=mode)  # the same head and adapters, untrained
    torch.manual_seed(1)
    tuned = finetune(model, x, y, steps=5, lr=0.1, mode=mode)
    before = dict(start.named_parameters())
    for name, after in tuned.named_parameters():
        moved = (after - before[name]).abs().max().item()
        adapter = name.startswith("head.") or re.search(ADAPTER_PARAMETER[mode], name)
        assert after.requires_grad == bool(adapter), name
        if not adapter:  # frozen: the pre-trained value, bit for bit
            assert torch.equal(after, pretrained[original_name(name)]), name
        elif kind == "Conv4" and mode == "bitfit" and re.fullmatch(r"body\.\d\.0\.bias", name):
            # batch norm subtracts the channel mean and the conv bias with it: no gradient
            assert moved < 1e-5, name
        else:
            assert moved > 1e-5, f"{name} did not train"
    for k, v in model.state_dict().items():  # the pre-trained model is never modified
        assert torch.equal(v, pretrained[k]), k
    assert not any(isinstance(m, (LoRA, FiLM)) for m in model.modules())


# -- LoRA: the formula, the rank, the gradients ----------------------------------------------------------

def lora_with_a_nonzero_b(base: nn.Module, rank: int = 2, alpha: float = 3.0) -> LoRA:
    layer = LoRA(base, rank=rank, alpha=alpha, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():  # B = 0 would hide any mistake in how B A enters the weight
        layer.B.copy_(torch.randn(layer.B.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64))
    return layer


def test_lora_forward_is_the_formula_written_out_in_float64():
    torch.manual_seed(0)
    linear = nn.Linear(5, 3, dtype=torch.float64)
    layer = lora_with_a_nonzero_b(linear)
    x = torch.randn(4, 5, dtype=torch.float64)
    expected = x @ (linear.weight + (3.0 / 2) * layer.B @ layer.A).T + linear.bias
    torch.testing.assert_close(layer(x), expected)
    assert [name for name, p in layer.named_parameters() if p.requires_grad] == ["A", "B"]  # W, b frozen

    # A convolution is its kernel as a matrix [out, in*k*k] applied to every patch (F.unfold).
    conv = nn.Conv2d(2, 3, kernel_size=3, padding=1, stride=2, dtype=torch.float64)
    layer = lora_with_a_nonzero_b(conv)
    images = torch.randn(2, 2, 7, 7, dtype=torch.float64)
    patches = F.unfold(images, kernel_size=3, padding=1, stride=2)  # [2, 2*3*3, 16]
    matrix = conv.weight.reshape(3, -1) + (3.0 / 2) * layer.B @ layer.A
    expected = (matrix @ patches + conv.bias[:, None]).reshape(2, 3, 4, 4)
    torch.testing.assert_close(layer(images), expected)


@pytest.mark.parametrize("base", [nn.Linear(4, 3), nn.Conv2d(2, 3, kernel_size=3, padding=1)], ids=["linear", "conv"])
def test_lora_gradients_pass_gradcheck_in_float64(base):
    torch.manual_seed(0)
    layer = lora_with_a_nonzero_b(base.double())
    x = torch.randn((3, 4) if isinstance(base, nn.Linear) else (2, 2, 5, 5), dtype=torch.float64, requires_grad=True)
    A, B = (layer.A.detach().clone().requires_grad_(), layer.B.detach().clone().requires_grad_())
    assert torch.autograd.gradcheck(lambda x, A, B: functional_call(layer, {"A": A, "B": B}, (x,)), (x, A, B))


@pytest.mark.parametrize("dim", [-1, 1])
def test_film_gradients_pass_gradcheck_in_float64(dim):
    film = FiLM(3, dim=dim, dtype=torch.float64)
    h = torch.randn((4, 3) if dim == -1 else (2, 3, 4, 4), dtype=torch.float64, requires_grad=True)
    gamma, beta = (torch.randn(3, dtype=torch.float64, requires_grad=True) for _ in range(2))
    assert torch.autograd.gradcheck(lambda h, g, b: functional_call(film, {"gamma": g, "beta": b}, (h,)),
                                    (h, gamma, beta))


@pytest.mark.parametrize("kind", sorted(TASKS))
def test_the_lora_update_after_finetuning_has_rank_at_most_r(kind):
    model, x, y = TASKS[kind]()
    model, x = model.double(), x.double()
    tuned = finetune(model, x, y, steps=5, lr=0.1, mode="lora", rank=2)
    layers = [m for m in tuned.body.modules() if isinstance(m, LoRA)]
    assert len(layers) == (2 if kind == "MLP" else 4)
    for layer in layers:
        delta = layer.delta_weight().reshape(len(layer.B), -1)  # [out, in] or [out, in*k*k]
        assert delta.dtype == torch.float64 and delta.abs().max() > 0
        assert torch.linalg.matrix_rank(delta).item() == min(2, *delta.shape)


# -- how many parameters each mode adapts -----------------------------------------------------------------

@pytest.mark.parametrize("rank", [1, 4, 8])
def test_parameter_counts_follow_the_formulas(rank):
    mlp = MLP([1, 40, 40, 1])
    assert count_adapted(mlp, "lora", rank=rank, head=False) == rank * (1 + 40) + rank * (40 + 40)
    conv = Conv4(in_channels=3, ways=5, hidden=6, image_size=28)
    assert count_adapted(conv, "lora", rank=rank, head=False) == rank * (3 * 9 + 6) + 3 * rank * (6 * 9 + 6)
    # BitFit: one bias per MLP layer; two per Conv4 block (the convolution's and batch norm's)
    for model, widths, biases, head in ((mlp, [40, 40], 40 + 40, 40 + 1), (conv, [6] * 4, 2 * 4 * 6, 6 * 5 + 5)):
        assert count_adapted(model, "bitfit", head=False) == biases
        assert count_adapted(model, "film", head=False) == 2 * sum(widths)
        assert count_adapted(model, "head", head=False) == count_adapted(model, "linear_probe", head=False) == 0
        assert count_adapted(model, "all", head=False) == count_parameters(model.body)
        assert count_adapted(model, "film") == 2 * sum(widths) + head


@pytest.mark.parametrize("mode", ["all", "head", *ADAPTER_MODES])
def test_the_count_is_what_finetune_trains_and_changes_nothing(mode):
    model, x, y = mlp_task()
    y = y % 5  # as many classes as the pre-trained head, whose size the count takes
    pretrained, rng = copy.deepcopy(model.state_dict()), torch.get_rng_state()
    count = count_adapted(model, mode)
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(torch.equal(v, pretrained[k]) for k, v in model.state_dict().items())
    tuned = finetune(model, x, y, steps=0, lr=0.1, mode=mode, ways=5)
    assert count == count_parameters(tuned)


# -- fine-tuning helps on a real task ---------------------------------------------------------------------

def test_every_mode_reduces_the_support_loss_and_the_adapters_beat_the_head_alone():
    torch.manual_seed(0)
    model = MLP([2, 32, 32, 5])
    source_x, source_y = blobs(classes=5, per_class=20, seed=1)
    pretrain(model, torch.utils.data.TensorDataset(source_x, source_y), steps=100, lr=1e-2, batch_size=20,
             progress=False)
    x, y = blobs(classes=3, per_class=5, seed=2)  # a new 3-way 5-shot task

    def support_loss(mode: str, steps: int) -> float:
        torch.manual_seed(3)  # the same fresh head (and LoRA's A) for every number of steps
        return F.cross_entropy(finetune(model, x, y, steps=steps, lr=0.1, mode=mode)(x), y).item()

    head = support_loss("head", 20)
    for mode in ADAPTER_MODES:
        before, after = support_loss(mode, 0), support_loss(mode, 20)
        assert before == support_loss("head", 0)  # adapters start as the identity
        assert after < 0.5 * before, (mode, before, after)
        # the adapters add to what the head alone does (here 0.18-0.19 against 0.26)
        assert after < 0.9 * head, (mode, after, head)


# -- strict inputs ----------------------------------------------------------------------------------------

def test_bad_arguments_are_named():
    model, x, y = mlp_task()
    cases = [
        (dict(mode="lora2"), "mode"),
        (dict(mode="lora", rank=0), "rank"),
        (dict(mode="lora", rank=1.5), "rank"),
        (dict(mode="lora", rank=True), "rank"),
        (dict(mode="lora", alpha=0.0), "alpha"),
        (dict(mode="lora", alpha=float("nan")), "alpha"),
        (dict(mode="film", rank=2), "rank and alpha are LoRA's"),
        (dict(mode="head", alpha=2.0), "rank and alpha are LoRA's"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            finetune(model, x, y, steps=1, lr=0.1, **kwargs)
    headless = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 3))
    for mode in ADAPTER_MODES:
        with pytest.raises(ValueError, match="`body` and a `head`"):
            finetune(headless, x, y, steps=1, lr=0.1, mode=mode)
    with pytest.raises(ValueError, match="mode"):
        add_adapters(copy.deepcopy(model), "head")
    with pytest.raises(ValueError, match="mode"):
        count_adapted(model, "everything")
    with pytest.raises(ValueError, match="head"):
        count_adapted(model, "lora", head=1)
    with pytest.raises(ValueError, match="base"):
        LoRA(nn.ReLU())
    with pytest.raises(ValueError, match="features"):
        FiLM(0)
    with pytest.raises(ValueError, match=r"shaped \(4, 5\)"):
        FiLM(3, dim=-1)(torch.randn(4, 5))


def test_what_cannot_be_adapted_is_refused():
    no_hidden_layer = MLP([2, 3])  # an empty body
    for mode in ADAPTER_MODES:
        with pytest.raises(ValueError, match="model.body has no"):
            add_adapters(copy.deepcopy(no_hidden_layer), mode)
    adapted = add_lora(MLP([2, 4, 3]))
    with pytest.raises(ValueError, match="already has adapters"):
        add_lora(adapted)
    with pytest.raises(ValueError, match="already has adapters"):
        add_film(adapted)
