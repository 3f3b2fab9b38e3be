"""Meta-SGD (Li, Zhou, Chen & Li, 2017): MAML that learns its inner step size, one per parameter.

MAML's inner step ``theta - alpha * grad`` uses one hand-picked ``alpha``. Meta-SGD makes
``alpha`` a tensor shaped like ``theta``, element by element, and meta-learns it with ``theta``:
the outer loop differentiates the query loss after adaptation with respect to both. The step
sizes start at ``inner_lr``, so at initialisation Meta-SGD computes exactly MAML's meta-loss;
training then learns which directions to move fast, which slowly, and which backwards (a step
size may become negative).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor, nn

from mtlcode.learners.base import Learner
from mtlcode.learners.maml import MAML, Params, Strategy

__all__ = ["MetaSGD"]


def _key(name: str) -> str:
    return name.replace(".", "__")  # ParameterDict keys may not contain dots


class MetaSGD(MAML):
    """MAML with a learned step size per parameter element, initialised to ``inner_lr``.

    ``parameters()`` yields the model's parameters, then the step sizes, so one outer optimiser
    trains both; checkpoints hold both (``state_dict``). Meta-SGD is second order by design
    (the step sizes get their gradient through the inner step).
    """

    def __init__(self, model: nn.Module, inner_lr: float, *, loss: Callable[[Tensor, Tensor], Tensor],
                 inner_steps: int = 1, strategy: Strategy = "auto", chunk_size: int | None = None) -> None:
        super().__init__(model, inner_lr, loss=loss, inner_steps=inner_steps, strategy=strategy,
                         chunk_size=chunk_size)
        self.step_sizes = nn.ParameterDict({
            _key(name): nn.Parameter(torch.full_like(p, self.inner_lr, requires_grad=True))
            for name, p in model.named_parameters()})

    def update(self, params: Params, grads: Params) -> Params:
        """``theta - alpha * grad``, element by element, with the learned ``alpha``."""
        return {name: p - self.step_sizes[_key(name)] * grads[name] for name, p in params.items()}

    def parameters(self) -> Iterator[nn.Parameter]:
        yield from self.model.parameters()
        yield from self.step_sizes.values()

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "step_sizes": self.step_sizes.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if set(state) != {"model", "step_sizes"}:
            raise ValueError("not a MetaSGD state (expected the keys 'model' and 'step_sizes'); was the checkpoint "
                             "written by another learner?")
        self.model.load_state_dict(state["model"])
        self.step_sizes.load_state_dict(state["step_sizes"])

    def to(self, device: torch.device | str) -> Learner:
        self.model.to(device)
        self.step_sizes.to(device)
        return self
