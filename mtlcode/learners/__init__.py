"""The learners: how a network is adapted to a new task, and how that adaptation is learned.

All share one interface (:class:`Learner`, in ``base``), so one training loop, one evaluation and
one command line serve them all:

* ``maml``: MAML and first-order MAML, the inner loop every gradient-based learner builds on;
* ``anil``, ``metasgd``, ``reptile``: MAML's family (adapt the head only; learn per-parameter step
  sizes; move towards the adapted weights instead of differentiating through them);
* ``protonet``: prototypical networks, which adapt by averaging, without a gradient step;
* ``ridge``: R2-D2, a ridge-regression head solved in closed form for each task and
  differentiated through;
* ``incontext``: a conditional neural process (CNP), which learns in context: one forward pass
  reads the support set and predicts the queries, without a gradient step;
* ``rl``: MAML on reinforcement-learning tasks (policy gradients);
* ``adapters``: parameter-efficient fine-tuning (LoRA, BitFit, FiLM), used by ``finetune``'s modes
  "lora", "bitfit" and "film";
* ``finetune``: the transfer-learning side, pre-training then fine-tuning (functions, not a
  learner: it has no meta-training).
"""

from __future__ import annotations

from mtlcode._aliases import lazy_submodules
from mtlcode.learners.anil import ANIL
from mtlcode.learners.base import Learner
from mtlcode.learners.incontext import CNP
from mtlcode.learners.maml import MAML
from mtlcode.learners.metasgd import MetaSGD
from mtlcode.learners.protonet import ProtoNet
from mtlcode.learners.reptile import Reptile
from mtlcode.learners.ridge import R2D2

__all__ = ["ANIL", "CNP", "MAML", "Learner", "MetaSGD", "ProtoNet", "R2D2", "Reptile"]

__getattr__ = lazy_submodules(__name__, ("adapters", "finetune", "rl"))
