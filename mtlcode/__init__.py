"""mtlcode: the helper package of the mtl-book on meta-learning and transfer learning.

data -> tasks -> models -> algorithms (maml, finetune, rl) -> training / evaluation -> plots.
"""

from mtlcode import data, finetune, models, plots, rl, tasks, train
from mtlcode.maml import MAML
from mtlcode.train import evaluate, meta_train
from mtlcode.utils import device, seed_everything

__version__ = "0.1.0"

__all__ = [
    "MAML",
    "data",
    "device",
    "evaluate",
    "finetune",
    "meta_train",
    "models",
    "plots",
    "rl",
    "seed_everything",
    "tasks",
    "train",
]
