"""Parameter-efficient fine-tuning: freeze the pre-trained body, train a few added or chosen parameters.

Fine-tuning every weight (``finetune(mode="all")``) stores a whole network per task and can
overfit a five-shot support set; training the head alone (``mode="head"``) cannot touch the
features. The three methods here sit in between: the body's pre-trained weights stay frozen
and a small set of parameters is trained with the task's head.

* **LoRA** (Hu et al., 2022, "LoRA: Low-Rank Adaptation of Large Language Models", ICLR) adds a
  low-rank update to each weight matrix of the body::

      h = (W + (alpha / r) B A) x + b,    A: [r, in],  B: [out, r],  W and b frozen.

  ``A`` is drawn from N(0, 1/in) and ``B`` starts at zero, as in the paper, so ``B A = 0`` and the
  adapted network is the pre-trained one until the first step (B moves first: A's gradient is
  ``B^T (...)``, zero at the start). ``alpha / r`` keeps the update's size from growing with r;
  Hu et al. set alpha to the first r they tried and keep it fixed; here 4, the default rank.
  A convolution's kernel ``[out, in, k, k]`` is the matrix ``[out, in*k*k]`` applied to every
  ``in*k*k`` patch, so the same update ``(alpha/r) B A``, with ``A: [r, in*k*k]``, is reshaped to
  the kernel's shape: one convolution with the merged kernel ``W + (alpha/r) B A``, the simplest
  form that is exactly LoRA (the merge costs ``out * in*k*k * r`` per call, nothing for the small
  networks of this book). Per layer: ``r * (in + out)`` parameters, ``r * (in*k*k + out)`` for a
  convolution.
* **BitFit** (Ben Zaken, Goldberg & Ravfogel, 2022, "BitFit: Simple Parameter-efficient
  Fine-tuning for Transformer-based Masked Language-models", ACL) trains the biases only:
  ``h = W x + b`` with ``W`` frozen; no module is added. Every bias of the body counts, the
  normalisation layers' shifts included, as Ben Zaken et al. train LayerNorm's. In Conv4 each
  convolution is followed by batch norm, which subtracts the per-channel mean and with it the
  convolution's bias: that bias gets no gradient, and batch norm's shifts do the adapting.
* **FiLM** (Perez et al., 2018, "FiLM: Visual Reasoning with a General Conditioning Layer", AAAI)
  scales and shifts each feature (each channel of a feature map): ``FiLM(h) = gamma * h + beta``,
  with ``gamma = 1`` and ``beta = 0`` at the start. Perez et al. predict gamma and beta from the
  conditioning input with a generator network; fine-tuning on one task learns them directly.
  They go where Perez et al. put them, before the non-linearity: after each ``nn.Linear`` and
  ``nn.Conv2d`` of the body or, when a batch norm follows it, after the batch norm, which would
  otherwise normalise the scale and shift away. (In Conv4 FiLM after batch norm can then do what
  retraining batch norm's own affine parameters would.) Per layer: ``2 * out`` parameters.

The adapted network computes exactly the pre-trained function at initialisation (``W + 0``,
``h * 1 + 0``). The adapters touch ``model.body`` only: the head is the caller's
(:func:`mtlcode.learners.finetune.finetune` trains a fresh head with them).
:func:`count_adapted` counts what each fine-tuning mode trains, for plots of accuracy against
the number of parameters adapted.
"""

from __future__ import annotations

import copy
import itertools
import math
from collections import OrderedDict
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

AdapterMode = Literal["lora", "bitfit", "film"]
ADAPTER_MODES = ("lora", "bitfit", "film")
COUNTED_MODES = ("all", "head", "linear_probe", *ADAPTER_MODES)  # every mode of finetune
DEFAULT_RANK = 4
DEFAULT_ALPHA = 4.0  # alpha = the default rank: a scale alpha / r of 1 there
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)

__all__ = ["ADAPTER_MODES", "FiLM", "LoRA", "adapter_options", "add_adapters", "add_bitfit", "add_film",
           "add_lora", "check_adaptable", "count_adapted"]


def _check_rank(rank: object) -> int:
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise ValueError(f"rank must be an int >= 1 (the rank of LoRA's update B A), got {rank!r}")
    return rank


def _check_alpha(alpha: object) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not (math.isfinite(alpha) and alpha > 0):
        raise ValueError(f"alpha must be a finite number > 0 (LoRA scales B A by alpha / rank), got {alpha!r}")
    return float(alpha)


def adapter_options(mode: str, rank: int | None = None, alpha: float | None = None) -> dict[str, float]:
    """LoRA's ``rank`` and ``alpha`` for ``mode="lora"`` (defaults filled in, checked); ``{}`` for any other mode.

    Giving ``rank`` or ``alpha`` with another mode is a mistake (they would be ignored), so it raises.
    """
    if mode != "lora":
        if rank is not None or alpha is not None:
            raise ValueError(f"rank and alpha are LoRA's options (mode='lora'); mode={mode!r} takes neither")
        return {}
    return {"rank": _check_rank(DEFAULT_RANK if rank is None else rank),
            "alpha": _check_alpha(DEFAULT_ALPHA if alpha is None else alpha)}


def check_adaptable(model: nn.Module) -> nn.Module:
    """``model.body``, after checking that ``model`` has a ``body`` and a ``head`` module."""
    if not all(isinstance(getattr(model, part, None), nn.Module) for part in ("body", "head")):
        raise ValueError(f"model must have a `body` and a `head` nn.Module (as mtlcode.models have) to put adapters "
                         f"in its body; got a {type(model).__name__}: split it so, or fine-tune with mode='all'")
    return model.body


class LoRA(nn.Module):
    """A frozen ``nn.Linear`` or ``nn.Conv2d`` whose weight becomes ``W + (alpha / rank) B A``.

    ``A`` (``[rank, fan_in]``, ``fan_in`` = ``in`` or ``in*k*k``) is drawn from N(0, 1/fan_in) with
    ``generator`` (torch's global RNG when None), on the generator's device (the CPU by default)
    so that a seed gives the same ``A`` on every device; ``B`` (``[out, rank]``) is zero.
    ``base`` is frozen in place and kept as ``self.base``.
    """

    def __init__(self, base: nn.Linear | nn.Conv2d, rank: int = DEFAULT_RANK, alpha: float = DEFAULT_ALPHA,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        if not isinstance(base, (nn.Linear, nn.Conv2d)):
            raise ValueError(f"base must be an nn.Linear or nn.Conv2d for LoRA, got {type(base).__name__}")
        self.rank, self.alpha = _check_rank(rank), _check_alpha(alpha)
        self.scale = self.alpha / self.rank
        self.base = base.requires_grad_(False)
        weight = base.weight
        fan_in = weight[0].numel()
        a = torch.randn(rank, fan_in, generator=generator, dtype=weight.dtype,
                        device=generator.device if generator is not None else "cpu")
        self.A = nn.Parameter(a.to(weight.device) / math.sqrt(fan_in))
        self.B = nn.Parameter(torch.zeros(weight.shape[0], rank, dtype=weight.dtype, device=weight.device))

    def delta_weight(self) -> Tensor:
        """The update ``(alpha / rank) B A``, shaped like the base's weight (a kernel for a convolution)."""
        return (self.scale * self.B @ self.A).view_as(self.base.weight)

    def forward(self, x: Tensor) -> Tensor:
        weight = self.base.weight + self.delta_weight()
        if isinstance(self.base, nn.Linear):
            return F.linear(x, weight, self.base.bias)
        # The convolution's own forward with another kernel: its stride, padding (mode) and groups hold.
        return self.base._conv_forward(x, weight, self.base.bias)

    def extra_repr(self) -> str:
        return f"rank={self.rank}, alpha={self.alpha}"


class FiLM(nn.Module):
    """Perez et al.'s feature-wise affine map ``gamma * h + beta``: one ``gamma`` and one ``beta`` per feature.

    ``dim`` is the features' axis of ``h``: -1 after a linear layer, 1 for a feature map's channels
    (and after batch norm). ``gamma`` starts at 1 and ``beta`` at 0, which leaves ``h`` unchanged.
    """

    def __init__(self, features: int, dim: int = 1, device: torch.device | str | None = None,
                 dtype: torch.dtype | None = None) -> None:
        super().__init__()
        if isinstance(features, bool) or not isinstance(features, int) or features < 1:
            raise ValueError(f"features must be an int >= 1 (one gamma and beta each), got {features!r}")
        self.features, self.dim = features, dim
        self.gamma = nn.Parameter(torch.ones(features, device=device, dtype=dtype))
        self.beta = nn.Parameter(torch.zeros(features, device=device, dtype=dtype))

    def forward(self, h: Tensor) -> Tensor:
        if h.dim() < 2 or h.shape[self.dim] != self.features:
            raise ValueError(f"FiLM of {self.features} features (axis {self.dim}) got an input shaped {tuple(h.shape)}")
        shape = [1] * h.dim()
        shape[self.dim] = self.features
        return h * self.gamma.view(shape) + self.beta.view(shape)

    def extra_repr(self) -> str:
        return f"features={self.features}, dim={self.dim}"


def _fresh_body(model: nn.Module) -> nn.Module:
    """``model.body``, checked to exist and to carry no LoRA or FiLM yet (adapters on adapters nest)."""
    body = check_adaptable(model)
    if any(isinstance(m, (LoRA, FiLM)) for m in body.modules()):
        raise ValueError("model.body already has adapters (LoRA or FiLM); add them to a fresh copy of the "
                         "pre-trained model")
    return body


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    """Put ``new`` where ``model.body``'s submodule ``name`` (``""``: the body itself) was."""
    parent, _, child = ("body" + (f".{name}" if name else "")).rpartition(".")
    setattr(model.get_submodule(parent), child, new)


def _like(module: nn.Module) -> dict:
    """The device and dtype of ``module``'s first tensor, for new parameters that live beside it."""
    tensor = next(itertools.chain(module.parameters(), module.buffers()), None)
    return {} if tensor is None else {"device": tensor.device, "dtype": tensor.dtype}


def add_lora(model: nn.Module, rank: int = DEFAULT_RANK, alpha: float = DEFAULT_ALPHA,
             generator: torch.Generator | None = None) -> nn.Module:
    """Wrap every ``nn.Linear`` and ``nn.Conv2d`` of ``model.body`` in :class:`LoRA`; freeze the rest of the body.

    Changes ``model`` in place (call it on a copy) and returns it; ``model.head`` is left as it is.
    """
    body = _fresh_body(model)
    rank, alpha = _check_rank(rank), _check_alpha(alpha)
    layers = [(name, m) for name, m in body.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    if not layers:
        raise ValueError("model.body has no nn.Linear or nn.Conv2d for LoRA to adapt; fine-tune with mode='head'")
    body.requires_grad_(False)
    for name, layer in layers:
        _replace(model, name, LoRA(layer, rank, alpha, generator))
    return model


def add_bitfit(model: nn.Module) -> nn.Module:
    """Freeze ``model.body`` except its biases (BitFit adds no module); in place, returns ``model``."""
    body = check_adaptable(model)
    biases = [p for name, p in body.named_parameters() if name.rpartition(".")[2] == "bias"]
    if not biases:
        raise ValueError("model.body has no bias for BitFit to train; fine-tune with mode='lora' or 'film'")
    body.requires_grad_(False)
    for bias in biases:
        bias.requires_grad_(True)
    return model


def _film_sites(body: nn.Module) -> list[tuple[str, int, int]]:
    """``(name, features, axis)`` of each module that a FiLM should follow, in the body's order.

    Each ``nn.Linear`` and ``nn.Conv2d``, except one followed by a batch norm in an
    ``nn.Sequential``: then the batch norm, which would normalise away a FiLM put before it.
    """
    before_norm = set()
    for parent_name, parent in body.named_modules():
        if isinstance(parent, nn.Sequential):
            children = list(parent.named_children())
            before_norm |= {f"{parent_name}.{name}".lstrip(".") for (name, _), (_, after) in zip(children, children[1:])
                            if isinstance(after, _NORMS)}
    sites = []
    for name, module in body.named_modules():
        if isinstance(module, nn.Linear) and name not in before_norm:
            sites.append((name, module.out_features, -1))
        elif isinstance(module, nn.Conv2d) and name not in before_norm:
            sites.append((name, module.out_channels, 1))
        elif isinstance(module, _NORMS):
            sites.append((name, module.num_features, 1))
    return sites


def add_film(model: nn.Module) -> nn.Module:
    """Follow each hidden layer of ``model.body`` with a :class:`FiLM`; freeze the rest of the body.

    A layer ``m`` becomes ``nn.Sequential(layer=m, film=FiLM(...))``, so its parameters keep
    their names under ``.layer``. In place (call it on a copy); returns ``model``.
    """
    body = _fresh_body(model)
    sites = _film_sites(body)
    if not sites:
        raise ValueError("model.body has no nn.Linear, nn.Conv2d or batch norm for FiLM to follow; fine-tune with "
                         "mode='head'")
    body.requires_grad_(False)
    for name, features, axis in sites:
        layer = body.get_submodule(name)
        film = FiLM(features, axis, **_like(layer))
        _replace(model, name, nn.Sequential(OrderedDict(layer=layer, film=film)))
    return model


def add_adapters(model: nn.Module, mode: AdapterMode, rank: int | None = None, alpha: float | None = None,
                 generator: torch.Generator | None = None) -> nn.Module:
    """Prepare ``model.body`` for fine-tuning in ``mode`` ("lora", "bitfit" or "film"): in place, returns ``model``.

    ``rank`` and ``alpha`` (LoRA's, defaults 4 and 4.0) and ``generator`` (LoRA's ``A``) apply to
    ``"lora"`` only. Afterwards the body's trainable parameters are exactly the adapters.
    """
    if mode not in ADAPTER_MODES:
        raise ValueError(f"mode must be one of {', '.join(map(repr, ADAPTER_MODES))}, got {mode!r}")
    options = adapter_options(mode, rank, alpha)
    if mode == "lora":
        return add_lora(model, generator=generator, **options)
    return add_bitfit(model) if mode == "bitfit" else add_film(model)


def _trainable(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def count_adapted(model: nn.Module, mode: str, rank: int | None = None, alpha: float | None = None,
                  head: bool = True) -> int:
    """How many parameters ``finetune(model, ..., mode=mode)`` trains: the x-axis "parameters adapted".

    ``"all"`` counts the trainable parameters of the body, ``"head"`` and ``"linear_probe"`` none
    of it, and the adapter modes their adapters (LoRA: ``rank * (fan_in + out)`` per layer;
    BitFit: the body's biases; FiLM: ``2 * features`` per FiLM). ``head=True`` adds the head's
    parameters, counted on ``model.head``: a task with another number of classes gets a fresh head
    of its own size. ``model`` is not changed, nor is torch's random state.
    """
    if mode not in COUNTED_MODES:
        raise ValueError(f"mode must be one of {', '.join(map(repr, COUNTED_MODES))}, got {mode!r}")
    if not isinstance(head, bool):
        raise ValueError(f"head must be True (count the head too) or False, got {head!r}")
    options = adapter_options(mode, rank, alpha)
    body = check_adaptable(model)
    if mode in ADAPTER_MODES:
        # Counted on the adapted copy itself, so the count is what fine-tuning trains; its own
        # generator keeps torch's RNG (and so the caller's next random draws) untouched.
        adapted = add_adapters(copy.deepcopy(model), mode, generator=torch.Generator().manual_seed(0), **options)
        adapted_body = _trainable(adapted.body)
    else:
        adapted_body = _trainable(body) if mode == "all" else 0
    return adapted_body + (sum(p.numel() for p in model.head.parameters()) if head else 0)
