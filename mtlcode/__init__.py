"""mtlcode: the helper package of the mtl-book on meta-learning and transfer learning.

The layout follows the architecture: data -> tasks -> models -> learners (``learner``, ``maml``,
``anil``, ``metasgd``, ``reptile``, ``protonet``, ``rl``, ``finetune``) -> training
(``training``, ``checkpoints``, ``distributed``) and evaluation (``evaluation``) -> plots;
course tooling (``exercises``, ``student_edition``, ``grading``) and the book's plumbing
(``book``, ``results``) apart.

``import mtlcode`` loads torch and the core only. The submodules that pull in heavy libraries
(``data``: PIL and torchvision; ``plots``: matplotlib; ``rl``, ``exercises``, ...) load on first
use, as ``mtlcode.plots`` or ``from mtlcode.plots import ...``: every torchrun worker imports the
package, and most never plot.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from mtlcode.anil import ANIL
from mtlcode.evaluation import Evaluation, evaluate
from mtlcode.learner import Learner
from mtlcode.maml import MAML
from mtlcode.metasgd import MetaSGD
from mtlcode.protonet import ProtoNet
from mtlcode.reptile import Reptile
from mtlcode.training import meta_train
from mtlcode.utils import device, seed_everything

if TYPE_CHECKING:
    from mtlcode import book, data, distributed, exercises, finetune, models, plots, results, rl, similarity, tasks

__version__ = "0.1.0"

_LAZY_SUBMODULES = ("anil", "book", "checkpoints", "data", "digits", "distributed", "evaluation", "exercises",
                    "finetune", "learner", "maml", "metasgd", "models", "plots", "protonet", "reptile", "results",
                    "rl", "similarity", "student_edition", "tasks", "training", "utils")

__all__ = [
    "ANIL",
    "MAML",
    "MetaSGD",
    "ProtoNet",
    "Reptile",
    "Evaluation",
    "Learner",
    "book",
    "data",
    "device",
    "distributed",
    "evaluate",
    "exercises",
    "finetune",
    "meta_train",
    "models",
    "plots",
    "results",
    "rl",
    "seed_everything",
    "similarity",
    "tasks",
]


def __getattr__(name: str) -> Any:
    # PEP 562: `mtlcode.plots` imports mtlcode/plots.py the first time it is used.
    if name in _LAZY_SUBMODULES:
        return importlib.import_module(f"mtlcode.{name}")
    raise AttributeError(f"module 'mtlcode' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY_SUBMODULES))
