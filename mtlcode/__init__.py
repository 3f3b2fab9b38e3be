"""mtlcode: the helper package of the mtl-book on meta-learning and transfer learning.

Three groups, each in its own place, each using only the groups above it in this list:

* **the library** a reader imports, at the top of the package and in :mod:`mtlcode.learners`:
  data (``data``, ``digits``) -> tasks (``tasks``) -> models (``models``) -> learners
  (``learners``: MAML and its family, ProtoNet, R2-D2, a conditional neural process, fine-tuning,
  meta-RL) -> training (``training``, ``checkpoints``, ``distributed``, the command line
  ``python -m mtlcode``) and evaluation
  (``metrics``, ``evaluation``, ``similarity``);
* **the book's tools**, :mod:`mtlcode.book`: ``glue`` and ``claim`` for the chapters, the
  figures (``plots``), the benchmark results they quote (``results``), the notebooks and the
  Chinese edition (``notebooks``, ``translation``, ``language_switch``);
* **the course's tools**, :mod:`mtlcode.course`: the exercises' checks (``exercises``), the
  student edition, the grader and the nbgrader export (``python -m mtlcode.course``).

``import mtlcode`` loads torch and the core only. The submodules that pull in heavy libraries
(``data``: PIL and torchvision; ``book.plots``: matplotlib; ...) load on first use, as
``mtlcode.data`` or ``from mtlcode.data import ...``: every torchrun worker imports the package,
and most never plot. The module names of version 0.1 (``mtlcode.maml``, ``mtlcode.exercises``,
...) still work (:mod:`mtlcode._aliases`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mtlcode import _aliases
from mtlcode.evaluation import Evaluation, evaluate
from mtlcode.learners import ANIL, CNP, MAML, R2D2, Learner, MetaSGD, ProtoNet, Reptile
from mtlcode.training import meta_train
from mtlcode.utils import device, seed_everything

if TYPE_CHECKING:
    from mtlcode import data, distributed, learners, models, similarity, tasks

__version__ = "0.2.0"

_aliases.install()

_LAZY_SUBMODULES = ("book", "checkpoints", "course", "data", "digits", "distributed", "evaluation", "learners",
                    "metrics", "models", "similarity", "tasks", "training", "utils",
                    # the names of version 0.1, for `mtlcode.plots` and the like
                    *(old.removeprefix("mtlcode.") for old in _aliases.MOVED))

__all__ = [
    "ANIL",
    "CNP",
    "MAML",
    "MetaSGD",
    "ProtoNet",
    "R2D2",
    "Reptile",
    "Evaluation",
    "Learner",
    "book",
    "course",
    "data",
    "device",
    "distributed",
    "evaluate",
    "learners",
    "meta_train",
    "models",
    "seed_everything",
    "similarity",
    "tasks",
]

__getattr__ = _aliases.lazy_submodules("mtlcode", _LAZY_SUBMODULES)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY_SUBMODULES))
