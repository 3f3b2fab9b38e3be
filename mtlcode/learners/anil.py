"""ANIL, "almost no inner loop" (Raghu, Raghu, Bengio & Vinyals, 2020): MAML that adapts only the head.

Raghu et al. found that after MAML's meta-training, the inner loop barely changes the body of the
network: its features are *reused*, and adaptation is mostly the last layer fitting the new
task. ANIL makes that the algorithm. The inner loop adapts ``model.head`` alone, which is
fine-tuning the head from a meta-learned start; the outer loop still trains body and head,
differentiating through the head's adaptation.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from mtlcode.learners.maml import MAML, Params, Strategy

__all__ = ["ANIL"]


class ANIL(MAML):
    """MAML whose inner loop adapts only ``model.head`` (the models' ``body``/``head`` split).

    Args are those of :class:`~mtlcode.learners.maml.MAML`; ``model`` must have a ``head`` submodule
    with parameters (``MLP`` and ``Conv4`` do).
    """

    def __init__(self, model: nn.Module, inner_lr: float, *, loss: Callable[[Tensor, Tensor], Tensor],
                 inner_steps: int = 1, first_order: bool = False, strategy: Strategy = "auto",
                 chunk_size: int | None = None) -> None:
        head = getattr(model, "head", None)
        if not isinstance(head, nn.Module) or not any(True for _ in head.parameters()):
            raise ValueError(f"ANIL adapts model.head, but {type(model).__name__} has no head with parameters; "
                             "split the network into body and head (as mtlcode.models.MLP and Conv4 do)")
        super().__init__(model, inner_lr, loss=loss, inner_steps=inner_steps, first_order=first_order,
                         strategy=strategy, chunk_size=chunk_size)
        self._head = {f"head.{name}" for name, _ in head.named_parameters()}

    def adapted_names(self, params: Params) -> list[str]:
        """The head's parameters: the body is reused as it is."""
        return [name for name in params if name in self._head]
