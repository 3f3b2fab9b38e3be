"""mtlcode: the helper package of the mtl-book on meta-learning and transfer learning.

data -> tasks -> models -> algorithms (maml, finetune, rl) -> training / evaluation -> plots.
"""

from typing import TYPE_CHECKING, Any

from mtlcode import data, exercises, finetune, models, plots, results, rl, tasks
from mtlcode.maml import MAML
from mtlcode.utils import device, seed_everything

if TYPE_CHECKING:
    from mtlcode import train
    from mtlcode.train import evaluate, meta_train

__version__ = "0.1.0"

__all__ = [
    "MAML",
    "data",
    "device",
    "evaluate",
    "exercises",
    "finetune",
    "meta_train",
    "models",
    "plots",
    "results",
    "rl",
    "seed_everything",
    "tasks",
    "train",
]


def __getattr__(name: str) -> Any:
    # mtlcode.train is imported on first use (PEP 562) rather than here: `python -m mtlcode.train`
    # (the training command) would otherwise run a module the package had already imported, which
    # Python warns about on every launch.
    if name in ("train", "evaluate", "meta_train"):
        import importlib

        train = importlib.import_module("mtlcode.train")
        return train if name == "train" else getattr(train, name)
    raise AttributeError(f"module 'mtlcode' has no attribute {name!r}")
