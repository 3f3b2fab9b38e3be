"""Omniglot v2: every method of the book on the same split and test tasks, several training seeds.

Small protocol (the default; the data this project ships with). The two small background sets
(8 alphabets, 242 characters) are split by alphabet into training, validation and test parts
(``--seed`` picks the split and the test tasks, the same for every method). Each method is
trained with every training seed (``--seeds``, default 0 1 2) on the training alphabets, with
every character's 90-degree rotations as extra classes (Finn et al., 2017):

* meta-learners: MAML, first-order MAML (``fomaml``), ANIL, Meta-SGD, Reptile (Conv4,
  20-way 1-shot episodes) and Prototypical Networks (``protonet``: 30-way 1-shot episodes,
  more ways than any test task, as Snell et al., 2017, recommend);
* transfer: the same Conv4 pre-trained with ordinary supervised learning on all training
  classes (``pretrained``), then fine-tuned on each test task's support set: a fresh head on
  the frozen body (``finetune_head``), every weight (``finetune_all``), or a linear classifier
  fitted to convergence on fixed features (``finetune_linear_probe``); and Baseline++
  (``baselinepp``, Chen et al., 2019): pre-trained and fine-tuned with a cosine classifier,
  ``logits = scale * cos(features, class weights)`` (:class:`mtlcode.learners.finetune.CosineHead`).

Every trained model is scored on

* ``heldout_5way1shot`` / ``heldout_5way5shot``: tasks of the test alphabets (accuracy);
* ``lake20``: the 20 runs of Lake et al.'s (2015) 20-way within-alphabet one-shot task, drawn
  from the evaluation alphabets that no method has seen (error, beside the published marks);
* ``digits_5way1shot`` / ``digits_5way5shot``: the same kind of tasks on scikit-learn's
  handwritten digits (:mod:`mtlcode.digits`): a cross-domain test, nothing tuned on digits.

Test-time settings (the meta-learners' number of steps, the fine-tuning step sizes) are picked
on 1-shot tasks of the validation alphabet with the same number of ways (5 or 20; digits use the
5-way choice). 20-way-trained heads answer 5-way tasks with their first five rows (labels are
shuffled in every training task, so the rows are interchangeable).

Lake's runs have a training of their own (``protonet_lake``, ``--lake-learners``): the learner
trained on *all* alphabets of the two small sets (the evaluation alphabets stay unseen), for
longer, scored on ``lake20`` and the digits only (it has seen the held-out alphabets).

Reported per method and benchmark: the per-seed scores with their intervals over test tasks
(``per_seed``, ``per_seed_ci95``), and their mean over seeds with a 95% t-interval over seeds
(``mean``, ``ci95``; ``"interval": "t"``). ``comparisons`` pairs the best meta-learner with the
best transfer method of each benchmark on the same test tasks (the best picked by test means,
which flatters it: v3, ``benchmarks/fair.py``, picks on validation instead): the mean paired difference per
seed (with its t-interval over tasks) and over seeds. ``lake20_marks`` gives each method's
distance to the published marks (Siamese ConvNet 8.0%, deep ConvNet 13.5%, people 4.5%).

Resumable: every finished (method, seed) part is written to ``<out>.partial/<job>-seed<k>.json``
(atomically); a rerun skips the finished ones and combines all of them into ``<out>.json``.

Time plan of the default run (``python -m benchmarks.omniglot --plan`` prints it): 27 parts (9
trainings x 3 seeds) on 2 worker processes of one thread each, 2 CPU cores. The rates are the
ones measured in the committed run (``omniglot_v2.json``, whose ``methods`` keep every part's
seconds), per seed:

=================  ==========  ==========  ==========  =========  ========
part               iterations  s / iter.   training s  scoring s  total s
=================  ==========  ==========  ==========  =========  ========
maml                      200       1.078         216         99       314
fomaml                    400       0.344         138         99       237
anil                      400       0.348         139         52       191
metasgd                   200       1.129         226        105       330
reptile                   120       1.527         183        181       365
protonet                1,200       0.199         238         26       264
pretrained              1,200       0.113         136        259       395
baselinepp              1,200       0.165         198         94       293
protonet_lake          12,000      (0.199)     (2,388)        11    (2,399)
=================  ==========  ==========  ==========  =========  ========

The first committed run took 90 minutes on two workers (the parts start longest first), with
6,000 episodes of ``protonet_lake`` at 0.184 s each (1,116 s per seed). Its 12,000 episodes,
with the learning rate halved every 3,000 (``LR_HALVING``), were then run alone, three parts at
once (``--workers 3``: 3,370 to 3,540 s each, 59 minutes); the bracketed rate is ProtoNet's on
the split. From scratch, about 4,790 s per seed, 14,370 s for three seeds, about 120 minutes on
two workers: inside the 150-minute budget.
These are a laptop's sizes, not the papers': a second-order meta-iteration of MAML or Meta-SGD
on four 20-way tasks costs about a second on one thread, so they get 200 iterations (the MAML
paper: 40,000 of 16 tasks) and their scores are those of undertrained networks; ProtoNet's
iteration is a forward pass, so the training for Lake's runs gets 12,000 of them.

Full protocol (``--full``): the same methods and seeds at the MAML paper's sizes (40,000
iterations, meta-batch 16, five inner steps of 0.1 for 20-way tasks, 600 test tasks) on the
complete archives, split as in the paper (1,200 training characters with rotations, the rest
for testing), scored 5- and 20-way, 1- and 5-shot, and on the digits; for a GPU. No ``lake20``
there: the paper's split puts evaluation alphabets into training. Without the full archives
it says so and exits cleanly.

    python -m benchmarks.omniglot            # small protocol, about 2 hours on 2 CPU cores
    python -m benchmarks.omniglot --plan     # the time plan, without running
    python -m benchmarks.omniglot --quick    # tiny sizes, for the tests
    python -m benchmarks.omniglot --full     # the paper's sizes (needs the full archives; GPU)
"""

from __future__ import annotations

import functools
import json
import os
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

import mtlcode
from benchmarks.common import RESULTS, Partials, check_seeds_and_workers, over_seeds, parser, run_parts, write_result
from mtlcode import ANIL, MAML, MetaSGD, ProtoNet, Reptile
from mtlcode.checkpoints import save_checkpoint
from mtlcode.data import Omniglot, lake_one_shot_runs, split_alphabets
from mtlcode.evaluation import Evaluation, ci95_half_width
from mtlcode.learners.base import Learner
from mtlcode.learners.finetune import CosineHead, finetune, pretrain
from mtlcode.models import Conv4
from mtlcode.tasks import NWayKShot, TaskBatch

SMALL_SETS = ("background_small1", "background_small2")
FULL_SETS = ("background", "evaluation")
META_LEARNERS = ("maml", "fomaml", "anil", "metasgd", "reptile", "protonet")
# Each transfer training (pre-training) and the fine-tuning methods scored from it.
TRANSFER = {"pretrained": ("finetune_head", "finetune_all", "finetune_linear_probe"), "baselinepp": ("baselinepp",)}
TRANSFER_METHODS = tuple(m for methods in TRANSFER.values() for m in methods)
LAKE = "_lake"  # suffix of a training on every alphabet of the small sets, for Lake's runs
# Published error on Lake's 20-way within-alphabet one-shot runs: (error, key in book/references.bib).
PUBLISHED_LAKE20 = {"people": (0.045, "lake2015omniglot"), "bayesian_program_learning": (0.033, "lake2015omniglot"),
                    "siamese_convnet": (0.080, "koch2015siamese"), "deep_convnet": (0.135, "lake2015omniglot")}
LAKE_MARKS = ("siamese_convnet", "deep_convnet", "people")
# Finn, Abbeel & Levine (2017), table 1: MAML accuracy with the full protocol.
PUBLISHED_FULL = {(5, 1): 0.987, (5, 5): 0.999, (20, 1): 0.958, (20, 5): 0.989}

ITERATIONS = {"maml": 200, "fomaml": 400, "anil": 400, "metasgd": 200, "reptile": 120, "protonet": 1200,
              "pretrained": 1200, "baselinepp": 1200, "protonet_lake": 12000}
# Trainings whose Adam learning rate is halved every so many iterations (Snell et al., 2017, halve
# ProtoNet's every 2,000 episodes); the others keep meta_lr throughout.
LR_HALVING = {"protonet_lake": 3000}
# Seconds per training iteration and per part's scoring, two workers on two CPU cores (the module
# docstring's plan): for --plan, and to start the longest parts first.
SECONDS_PER_ITERATION = {"maml": 1.08, "fomaml": 0.344, "anil": 0.348, "metasgd": 1.13, "reptile": 1.53,
                         "protonet": 0.199, "pretrained": 0.113, "baselinepp": 0.165}
SCORING_SECONDS = {"maml": 99, "fomaml": 99, "anil": 52, "metasgd": 105, "reptile": 181, "protonet": 26,
                   "pretrained": 259, "baselinepp": 94}
LAKE_SCORING_SECONDS = 11
BUDGET_SECONDS = 150 * 60.0
PER_TRAINING = ("iterations", "lr_halving")  # Protocol fields keyed by training: see own_settings


@dataclass(frozen=True)
class Protocol:
    """Sizes of one run. The defaults are the small protocol's (2 CPU cores, about 2 hours from scratch)."""

    image_size: int = 28
    hidden: int = 64
    split: tuple[int, int, int] = (5, 1, 2)        # alphabets for training, validation, test
    ways: int = 20                                 # MAML, first-order MAML, ANIL, Meta-SGD, Reptile
    shots: int = 1
    queries: int = 1                               # per class, in meta-training tasks
    meta_batch: int = 4                            # paper: 16 (20-way)
    inner_lr: float = 0.4
    inner_steps: int = 1
    meta_lr: float = 1e-3                          # Adam, every training (pre-training too)
    reptile_lr: float = 0.1                        # Reptile's inner SGD steps (support and query)
    reptile_steps: int = 3
    reptile_meta_batch: int = 4
    protonet_ways: int = 30                        # more ways than any test task
    protonet_queries: int = 2
    protonet_meta_batch: int = 1
    iterations: dict[str, int] = field(default_factory=lambda: dict(ITERATIONS))
    lr_halving: dict[str, int] = field(default_factory=lambda: dict(LR_HALVING))
    test_steps: tuple[int, ...] = (1, 5)           # MAML-family steps at test time, picked on validation
    reptile_test_steps: tuple[int, ...] = (3, 10)
    pretrain_batch: int = 64
    cosine_scale: float = 10.0                     # Baseline++'s heads (pre-training and fine-tuning)
    head_steps: int = 100
    head_lrs: tuple[float, ...] = (0.01, 0.1, 1.0)
    cosine_lrs: tuple[float, ...] = (0.01, 0.1, 1.0)
    all_steps: int = 10
    all_lrs: tuple[float, ...] = (0.01, 0.1)
    probe_steps: int = 100                         # L-BFGS iterations of the linear probe
    test_queries: int = 15                         # per class, held-out and digit tasks
    test_tasks: int = 100
    val_tasks: int = 20
    val_queries: int = 5                           # per class, validation tasks (5- and 20-way)
    eval_chunk: int = 50                           # tasks scored at once

    def __hash__(self) -> int:  # for caching what depends on the protocol (iterations is a dict)
        return hash(json.dumps(asdict(self), sort_keys=True))


QUICK = Protocol(hidden=8, meta_batch=2, reptile_steps=1, reptile_meta_batch=1, protonet_ways=20,
                 protonet_queries=1, iterations={name: 2 for name in ITERATIONS},
                 lr_halving={"protonet_lake": 1}, test_steps=(1, 2),
                 reptile_test_steps=(1, 2), pretrain_batch=16, head_steps=2, head_lrs=(0.1,), cosine_lrs=(0.1,),
                 all_steps=2, all_lrs=(0.1,), probe_steps=2, test_queries=2, test_tasks=4, val_tasks=2,
                 val_queries=2, eval_chunk=2)
# The MAML paper's sizes (20-way: meta-batch 16, five inner steps of 0.1, 40,000 iterations: the
# usage notes of the paper's code).
FULL_PROTOCOL = Protocol(meta_batch=16, inner_lr=0.1, inner_steps=5, reptile_steps=5, reptile_meta_batch=5,
                         iterations={name: 40_000 for name in ITERATIONS}, test_steps=(1, 5, 10),
                         reptile_test_steps=(10, 50), test_tasks=600, val_tasks=100, val_queries=15)


# -- data ----------------------------------------------------------------------------------------

@dataclass
class Splits:
    train: Dataset        # with rotations, classes 0..C-1
    val: Dataset
    test: Dataset
    alphabets: dict[str, list[str]]


def small_splits(protocol: Protocol, root: str | None, seed: int, download: bool = True) -> Splits:
    """Training, validation and test alphabets of the two small background sets."""
    everything = Omniglot(root, SMALL_SETS, protocol.image_size, download=download)
    train, val, test = split_alphabets(everything.alphabets, protocol.split, seed=seed)

    def part(names: list[str], rotations: bool) -> Omniglot:
        return Omniglot(root, SMALL_SETS, protocol.image_size, download=download, rotations=rotations, alphabets=names)

    return Splits(part(train, True), part(val, False), part(test, False),
                  {"train": train, "val": val, "test": test})


class Classes(Dataset):
    """The examples of some classes of a labelled dataset, relabelled ``0..len(classes)-1``."""

    def __init__(self, dataset: Omniglot, classes: list[int]) -> None:
        new_label = torch.full((dataset.num_classes,), -1, dtype=torch.long)
        new_label[torch.tensor(classes)] = torch.arange(len(classes))
        self.dataset = dataset
        self.indices = torch.nonzero(new_label[dataset.targets] >= 0).flatten()
        self.targets = new_label[dataset.targets[self.indices]]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        return self.dataset[int(self.indices[index])][0], int(self.targets[index])


def full_splits(protocol: Protocol, root: str | None, seed: int, download: bool,
                train_characters: int = 1200) -> Splits:
    """The MAML paper's split: 1,200 characters (any alphabet) for training, the rest for testing,
    rotations as extra classes everywhere; 100 of the test characters serve as validation."""
    data = Omniglot(root, FULL_SETS, protocol.image_size, download=download, rotations=True)
    n = data.num_characters
    order = list(range(n))
    random.Random(seed).shuffle(order)
    train_characters = min(train_characters, n - 2 * protocol.ways)
    val_characters = max(protocol.ways, min(100, (n - train_characters) // 4))
    parts = order[:train_characters], order[train_characters:train_characters + val_characters], \
        order[train_characters + val_characters:]

    def with_rotations(characters: list[int]) -> list[int]:
        return [c + r * n for r in range(4) for c in characters]

    return Splits(*(Classes(data, with_rotations(p)) for p in parts),
                  alphabets={"train": [], "val": [], "test": []})


def tasks(dataset: Dataset, ways: int, shots: int, queries: int, count: int, seed: int) -> TaskBatch:
    """``count`` seeded tasks (the same for every method)."""
    return NWayKShot(dataset, ways, shots, queries).sample(count, generator=torch.Generator().manual_seed(seed))


@dataclass
class Benchmark:
    """One set of test tasks: its name, size, metric (``accuracy`` or, on Lake's runs, ``error``)."""

    name: str
    ways: int
    shots: int
    metric: str
    tasks: TaskBatch


def lake_benchmark(root: str | None, protocol: Protocol, download: bool) -> Benchmark:
    runs = lake_one_shot_runs(root, protocol.image_size, download=download)
    batch = TaskBatch(*(torch.cat([getattr(run, f) for run in runs]) for f in
                        ("support_x", "support_y", "query_x", "query_y")))
    return Benchmark("lake20", 20, 1, "error", batch)


def digit_benchmarks(protocol: Protocol, seed: int) -> list[Benchmark]:
    """5-way 1- and 5-shot tasks on scikit-learn's digits, seeded (the same for every method)."""
    from mtlcode.digits import Digits

    digits = Digits(protocol.image_size)
    return [Benchmark(f"digits_5way{shots}shot", 5, shots, "accuracy",
                      tasks(digits, 5, shots, protocol.test_queries, protocol.test_tasks, seed + 200 + i))
            for i, shots in enumerate((1, 5))]


def held_out_benchmarks(test: Dataset, protocol: Protocol, seed: int, full: bool) -> list[Benchmark]:
    settings = [(w, s) for w in (5, 20) for s in (1, 5)] if full else [(5, 1), (5, 5)]
    prefix = "test" if full else "heldout"
    return [Benchmark(f"{prefix}_{w}way{s}shot", w, s, "accuracy",
                      tasks(test, w, s, protocol.test_queries, protocol.test_tasks, seed + 100 + i))
            for i, (w, s) in enumerate(settings)]


# -- methods -------------------------------------------------------------------------------------

def conv4(protocol: Protocol, ways: int, seed: int) -> Conv4:
    torch.manual_seed(seed)
    return Conv4(ways=ways, hidden=protocol.hidden, image_size=protocol.image_size)


def make_learner(name: str, model: Conv4, protocol: Protocol) -> Learner:
    """Meta-learner ``name`` around ``model`` with the protocol's settings (ProtoNet takes its body)."""
    p, ce = protocol, F.cross_entropy
    if name in ("maml", "fomaml"):
        return MAML(model, p.inner_lr, loss=ce, inner_steps=p.inner_steps, first_order=name == "fomaml")
    if name == "anil":
        return ANIL(model, p.inner_lr, loss=ce, inner_steps=p.inner_steps)
    if name == "metasgd":
        return MetaSGD(model, p.inner_lr, loss=ce, inner_steps=p.inner_steps)
    if name == "reptile":
        return Reptile(model, p.reptile_lr, loss=ce, inner_steps=p.reptile_steps)
    if name == "protonet":
        return ProtoNet(model.body)
    raise ValueError(f"unknown meta-learner {name!r}; choose from {META_LEARNERS}")


def episode_sizes(name: str, protocol: Protocol) -> tuple[int, int, int]:
    """``(ways, queries per class, meta-batch)`` of the training episodes of meta-learner ``name``."""
    if name == "protonet":
        return protocol.protonet_ways, protocol.protonet_queries, protocol.protonet_meta_batch
    if name == "reptile":
        return protocol.ways, protocol.queries, protocol.reptile_meta_batch
    return protocol.ways, protocol.queries, protocol.meta_batch


def first_rows(state: dict[str, Any], ways: int) -> dict[str, Any]:
    """``state`` with every head tensor (weights, biases, Meta-SGD's step sizes) cut to ``ways`` rows."""
    def cut(key: str, value: Any) -> Any:
        if isinstance(value, dict):
            return first_rows(value, ways)
        return value[:ways] if key.replace("__", ".") in ("head.weight", "head.bias") else value
    return {key: cut(key, value) for key, value in state.items()}


def for_ways(meta: Learner, name: str, ways: int, protocol: Protocol) -> Learner:
    """The meta-trained learner answering ``ways``-way tasks: its head's first ``ways`` rows."""
    if name == "protonet":
        return meta
    trained_ways = meta.model.head.out_features
    if ways == trained_ways:
        return meta
    if ways > trained_ways:
        raise ValueError(f"the model was meta-trained {trained_ways}-way; cannot answer {ways}-way tasks")
    smaller = make_learner(name, Conv4(ways=ways, hidden=protocol.hidden, image_size=protocol.image_size), protocol)
    smaller.load_state_dict(first_rows(meta.state_dict(), ways))
    return smaller.to(meta.model.head.weight.device)


def fine_tuner(model: Conv4, mode: str, steps: int, lr: float):
    """``(support_x, support_y, query_x) -> logits``: fine-tune a copy, then predict."""
    def adapt_and_predict(support_x: Tensor, support_y: Tensor, query_x: Tensor) -> Tensor:
        ways = int(support_y.max()) + 1
        tuned = finetune(model, support_x, support_y, steps, lr, mode=mode, ways=ways)
        with torch.no_grad():
            return tuned(query_x)
    return adapt_and_predict


def score(method: Learner | Callable, batch: TaskBatch, protocol: Protocol, device: str,
          steps: int | None = None) -> Evaluation:
    """Per-task accuracy of ``method`` on ``batch``, ``eval_chunk`` tasks at a time (bounded memory)."""
    chunks = [batch[i:i + protocol.eval_chunk] for i in range(0, len(batch), protocol.eval_chunk)]
    return mtlcode.evaluate(method, chunks, steps=steps, device=device)


def best_setting(options: Sequence[Any], accuracy: Callable[[Any], float]) -> tuple[Any, dict[Any, float]]:
    """The option with the highest validation accuracy (the first on ties), and every option's accuracy."""
    if len(options) == 1:
        return options[0], {}  # nothing to choose: skip the validation run
    scores = {option: accuracy(option) for option in options}
    return max(scores, key=scores.get), scores


Scorer = Callable[[Benchmark], Evaluation]


def meta_scorers(method: str, name: str, meta: Learner, val: dict[int, TaskBatch], protocol: Protocol,
                 device: str) -> tuple[dict[str, Scorer], dict[str, Any]]:
    """``{method: scorer}`` of meta-learner ``name``, its test-time steps per way count picked on ``val``.

    Without validation tasks (the Lake trainings have seen the validation alphabet) the learner
    adapts with its own training steps.
    """
    if name == "protonet":
        return {method: lambda b: score(meta, b.tasks, protocol, device)}, {}
    grid = protocol.reptile_test_steps if name == "reptile" else protocol.test_steps
    steps, accuracy = {}, {}
    for ways, batch in val.items():
        learner = for_ways(meta, name, ways, protocol)
        steps[ways], accuracy[ways] = best_setting(grid, _val_accuracy(learner, batch, protocol, device))

    def scorer(b: Benchmark) -> Evaluation:
        return score(for_ways(meta, name, b.ways, protocol), b.tasks, protocol, device, steps.get(b.ways))
    return {method: scorer}, {"test_steps": steps, "val_accuracy_by_steps": accuracy}


def _val_accuracy(learner: Learner, batch: TaskBatch, protocol: Protocol, device: str) -> Callable[[int], float]:
    return lambda steps: score(learner, batch, protocol, device, steps).mean


def _fine_tuning_accuracy(model: Conv4, mode: str, steps: int, batch: TaskBatch, protocol: Protocol,
                          device: str) -> Callable[[float], float]:
    return lambda lr: score(fine_tuner(model, mode, steps, lr), batch, protocol, device).mean


def transfer_scorers(name: str, model: Conv4, val: dict[int, TaskBatch], protocol: Protocol,
                     device: str) -> tuple[dict[str, Scorer], dict[str, Any]]:
    """Scorers of the fine-tuning methods of a pre-trained model, step sizes picked on ``val``."""
    p = protocol
    settings = {"finetune_head": ("head", p.head_steps, p.head_lrs), "finetune_all": ("all", p.all_steps, p.all_lrs),
                "finetune_linear_probe": ("linear_probe", p.probe_steps, (0.0,)),  # L-BFGS: no step size
                "baselinepp": ("head", p.head_steps, p.cosine_lrs)}
    scorers, info = {}, {}
    for method in TRANSFER[name]:
        mode, steps, lrs = settings[method]
        lr, accuracy = {}, {}
        for ways, batch in val.items():
            lr[ways], accuracy[ways] = best_setting(lrs, _fine_tuning_accuracy(model, mode, steps, batch, p, device))
        scorers[method] = _fine_tuning_scorer(model, mode, steps, lr, lrs[0], p, device)
        info[method] = {"mode": mode, "steps": steps, "lr": lr, "val_accuracy_by_lr": accuracy}
    return scorers, info


def _fine_tuning_scorer(model: Conv4, mode: str, steps: int, lr: dict[int, float], default_lr: float,
                        protocol: Protocol, device: str) -> Scorer:
    def scorer(b: Benchmark) -> Evaluation:
        return score(fine_tuner(model, mode, steps, lr.get(b.ways, default_lr)), b.tasks, protocol, device)
    return scorer


# -- one part: one training, one seed ------------------------------------------------------------

@dataclass(frozen=True)
class Job:
    name: str                        # a meta-learner, a transfer training, or "<meta-learner>_lake"
    seed: int                        # the training seed
    protocol: Protocol
    split_seed: int                  # the split and the test tasks: the same for every job
    partials: Partials
    root: str | None = None
    full: bool = False
    download: bool = False
    progress: bool = False
    device: str = "cpu"
    models: str | None = None        # a folder to save the trained weights in

    @property
    def learner(self) -> str:
        return self.name.removesuffix(LAKE)


def estimated_seconds(name: str, protocol: Protocol) -> float:
    """A part's expected seconds, two workers on two CPU cores (the module docstring's plan)."""
    base = name.removesuffix(LAKE)
    scoring = LAKE_SCORING_SECONDS if name.endswith(LAKE) else SCORING_SECONDS[base]
    return iterations_of(protocol, name) * SECONDS_PER_ITERATION[base] + scoring


def own_settings(protocol: Protocol, name: str) -> dict[str, int]:
    """What of the per-training settings job ``name``'s numbers depend on (its part's own fingerprint)."""
    own = {"iterations": iterations_of(protocol, name)}
    if name in protocol.lr_halving:  # absent when constant, so parts of constant-rate trainings stay valid
        own["lr_halving_every"] = protocol.lr_halving[name]
    return own


def iterations_of(protocol: Protocol, name: str) -> int:
    """Training iterations of job ``name``; a Lake training not listed takes its learner's."""
    return protocol.iterations.get(name, protocol.iterations[name.removesuffix(LAKE)])


def train_meta_learner(job: Job, data: Dataset) -> tuple[Learner, dict[str, Any]]:
    p = job.protocol
    ways, queries, meta_batch = episode_sizes(job.learner, p)
    meta = make_learner(job.learner, conv4(p, ways, job.seed), p)
    sampler = NWayKShot(data, ways, p.shots, queries)
    history = mtlcode.meta_train(meta, lambda g: sampler.sample(meta_batch, generator=g), iterations_of(p, job.name),
                                 p.meta_lr, lr_halving_every=p.lr_halving.get(job.name), seed=job.seed,
                                 progress=job.progress, device=job.device)
    last = history["metric"][-50:]
    return meta, {"episodes": {"ways": ways, "queries": queries, "meta_batch": meta_batch},
                  "final_train_accuracy": sum(last) / len(last)}


def pretrain_model(job: Job, data: Dataset) -> tuple[Conv4, dict[str, Any]]:
    """Supervised pre-training on every training class; Baseline++ with a cosine head."""
    p = job.protocol
    classes = int(data.targets.max()) + 1
    model = conv4(p, classes, job.seed)
    if job.name == "baselinepp":
        model.head = CosineHead(model.feature_dim, classes, p.cosine_scale)
    losses = pretrain(model, data, iterations_of(p, job.name), p.meta_lr, p.pretrain_batch,
                      generator=torch.Generator().manual_seed(job.seed), device=job.device, progress=job.progress)
    last = losses[-50:]
    return model, {"classes": classes, "final_train_loss": sum(last) / len(last)}


def save_model(job: Job, state: dict[str, Any]) -> None:
    if job.models is not None:
        save_checkpoint(Path(job.models) / f"{job.name}-seed{job.seed}.pt", state)


def task_rows(method: str, scorer: Scorer, benchmarks: list[Benchmark]) -> list[dict[str, Any]]:
    """One row per benchmark, with the per-task values (for paired comparisons across methods)."""
    rows = []
    for b in benchmarks:
        evaluation = scorer(b)
        values = evaluation.values if b.metric == "accuracy" else [1.0 - v for v in evaluation.values]
        rows.append({"method": method, "benchmark": b.name, "ways": b.ways, "shots": b.shots, "metric": b.metric,
                     "mean": sum(values) / len(values), "ci95": evaluation.ci95, "tasks": len(values),
                     "values": values})
    return rows


@functools.lru_cache(maxsize=2)
def shared_material(protocol: Protocol, split_seed: int, root: str | None, full: bool, download: bool,
                    lake_training: bool) -> tuple[Splits, Dataset, list[Benchmark], dict[int, TaskBatch]]:
    """``(splits, training data, benchmarks, validation tasks)``: the same for every part of a kind,
    so a worker process builds them once (they are seeded by ``split_seed`` alone)."""
    p = protocol
    splits = full_splits(p, root, split_seed, download) if full else small_splits(p, root, split_seed, download)
    benchmarks = [] if lake_training else held_out_benchmarks(splits.test, p, split_seed, full)
    if not full:
        benchmarks.append(lake_benchmark(root, p, download))
    benchmarks += digit_benchmarks(p, split_seed)
    # Settings are picked per way count on 1-shot tasks of the validation alphabet(s).
    val = {} if lake_training else {w: tasks(splits.val, w, 1, p.val_queries, p.val_tasks, split_seed + 99 + w)
                                    for w in sorted({b.ways for b in benchmarks})}
    if lake_training:  # every alphabet of the small sets; the evaluation alphabets stay unseen
        data = Omniglot(root, SMALL_SETS, p.image_size, download=download, rotations=True)
    else:
        data = splits.train
    return splits, data, benchmarks, val


def run_job(job: Job) -> dict[str, Any]:
    """Train one method with one seed, pick its test-time settings, score it, save the part."""
    torch.set_num_threads(1)
    started = time.perf_counter()
    p = job.protocol
    splits, data, benchmarks, val = shared_material(p, job.split_seed, job.root, job.full, job.download,
                                                    job.name.endswith(LAKE))
    if job.learner in TRANSFER:
        model, info = pretrain_model(job, data)
        save_model(job, model.state_dict())
        info["train_seconds"] = time.perf_counter() - started
        scorers, settings = transfer_scorers(job.name, model, val, p, job.device)
    else:
        meta, info = train_meta_learner(job, data)
        save_model(job, meta.state_dict())
        info["train_seconds"] = time.perf_counter() - started
        scorers, settings = meta_scorers(job.name, job.learner, meta, val, p, job.device)
    rows = [row for method, scorer in scorers.items() for row in task_rows(method, scorer, benchmarks)]
    info.update(settings=settings, seconds=time.perf_counter() - started, device=job.device)
    part = {"rows": rows, "info": info, "alphabets": splits.alphabets}
    job.partials.save(job.name, job.seed, part, own=own_settings(p, job.name))
    return part


# -- combining the parts -------------------------------------------------------------------------

def combine(parts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (method, benchmark): the per-seed scores and their mean with a t-interval over seeds."""
    cells: dict[tuple[str, str], list[tuple[int, dict[str, Any], str]]] = {}
    for part in parts:
        for row in part["rows"]:
            cells.setdefault((row["method"], row["benchmark"]), []).append((part["seed"], row, part["job"]))
    rows = []
    for (method, benchmark), found in cells.items():
        found.sort(key=lambda item: item[0])
        first = found[0][1]
        per_seed = [row["mean"] for _, row, _ in found]
        family = "transfer" if method in TRANSFER_METHODS else "meta-learning"
        rows.append({"method": method, "family": family, "benchmark": benchmark, "ways": first["ways"],
                     "shots": first["shots"], "metric": first["metric"], **over_seeds(per_seed), "per_seed": per_seed,
                     "per_seed_ci95": [row["ci95"] for _, row, _ in found],
                     "training_seeds": [seed for seed, _, _ in found], "tasks": first["tasks"],
                     "training": found[0][2]})
    return rows


def better(metric: str) -> Callable[[float], float]:
    """A key that ranks the best score highest: accuracy up, error down."""
    return (lambda v: -v) if metric == "error" else (lambda v: v)


def paired_difference(a: list[float], b: list[float]) -> dict[str, Any]:
    differences = [x - y for x, y in zip(a, b)]
    if len(a) != len(b):
        raise ValueError("paired scores need the same test tasks")
    return {"mean": sum(differences) / len(differences), "ci95": ci95_half_width(differences),
            "tasks": len(differences)}


def comparisons(rows: list[dict[str, Any]], parts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Best meta-learner against best transfer method on every benchmark, paired on the same tasks.

    Trainings of their own for Lake's runs are left out: they saw more alphabets than the rest.
    ``difference`` is meta-learner minus transfer (positive: the meta-learner is more accurate,
    or on ``lake20`` makes more errors). Per seed: the mean paired difference over tasks with
    its t-interval; over seeds: the mean of those with a t-interval over seeds.
    """
    transfer = set(TRANSFER_METHODS)
    values = {(row["method"], row["benchmark"], part["seed"]): row["values"] for part in parts for row in part["rows"]}
    out = []
    for benchmark in dict.fromkeys(row["benchmark"] for row in rows):
        here = [row for row in rows if row["benchmark"] == benchmark and row["mean"] is not None]
        meta = [row for row in here if row["method"] in META_LEARNERS]
        other = [row for row in here if row["method"] in transfer]
        if not meta or not other:
            continue
        key = better(here[0]["metric"])
        a, b = max(meta, key=lambda r: key(r["mean"])), max(other, key=lambda r: key(r["mean"]))
        seeds = sorted(set(a["training_seeds"]) & set(b["training_seeds"]))
        per_seed = [{"seed": seed, **paired_difference(values[a["method"], benchmark, seed],
                                                       values[b["method"], benchmark, seed])} for seed in seeds]
        out.append({"benchmark": benchmark, "metric": here[0]["metric"], "meta_learner": a["method"],
                    "transfer": b["method"], "difference": "meta_learner - transfer", "per_seed": per_seed,
                    **over_seeds([d["mean"] for d in per_seed])})
    return out


def lake_marks(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every method's lake20 error (mean over seeds) minus each published mark; negative: better."""
    marks = []
    for row in rows:
        if row["benchmark"] != "lake20" or row["mean"] is None:
            continue
        distance = {mark: row["mean"] - PUBLISHED_LAKE20[mark][0] for mark in LAKE_MARKS}
        marks.append({"method": row["method"], "error": row["mean"], "ci95": row["ci95"], "distance": distance})
    return sorted(marks, key=lambda m: m["error"])


def published_rows(full: bool) -> list[dict[str, Any]]:
    if full:
        return [{"method": "maml", "benchmark": f"test_{w}way{s}shot", "metric": "accuracy", "mean": v,
                 "source": "finn2017maml"} for (w, s), v in PUBLISHED_FULL.items()]
    return [{"method": m, "benchmark": "lake20", "metric": "error", "mean": v, "source": source}
            for m, (v, source) in PUBLISHED_LAKE20.items()]


# -- the run -------------------------------------------------------------------------------------

def trainings(args: Any) -> list[str]:
    """The jobs' names: the chosen methods' trainings on the split, then the Lake trainings."""
    names = list(args.methods)
    if not args.full:
        names += [f"{learner}{LAKE}" for learner in args.lake_learners]
    return names


def plan_table(names: list[str], seeds: list[int], protocol: Protocol, workers: int) -> str:
    """The expected seconds of every part and of the whole run (longest parts first on ``workers``)."""
    lines, loads = [], [0.0] * max(workers, 1)
    for name in names:
        seconds = estimated_seconds(name, protocol)
        lines.append(f"{name:>15}  {iterations_of(protocol, name):>6} iterations  {seconds:7.0f} s per seed")
    for seconds in sorted((estimated_seconds(n, protocol) for n in names for _ in seeds), reverse=True):
        loads[loads.index(min(loads))] += seconds
    lines.append(f"{len(names) * len(seeds)} parts: about {max(loads) / 60:.0f} min on {workers} worker(s) "
                 f"(budget {BUDGET_SECONDS / 60:.0f} min)")
    return "\n".join(lines)


def full_archives_missing(args: Any, protocol: Protocol) -> bool:
    try:
        Omniglot(args.root, FULL_SETS, protocol.image_size, download=not args.no_download)
    except (FileNotFoundError, RuntimeError) as error:
        print(f"The full Omniglot protocol needs {', '.join(f'images_{s}.zip' for s in FULL_SETS)}, which are not "
              f"available here:\n  {error}\nRun it where they can be downloaded (Colab, a GPU machine); "
              "the small protocol runs without them.", file=sys.stderr)
        return True
    return False


def run(args: Any, argv: list[str] | None, protocol: Protocol, started: float, device: torch.device) -> dict[str, Any]:
    """Run the missing parts, combine every part, write the result file."""
    names = trainings(args)
    # A part depends on the whole protocol, but of the per-training settings (iterations, learning
    # rate schedule) only on its own training's (checked per part): raising one training's
    # iterations recomputes that training's parts alone.
    shared = {k: v for k, v in asdict(protocol).items() if k not in PER_TRAINING}
    partials = Partials(args.out, {"protocol": shared, "split_seed": args.seed, "full": args.full,
                                   "sets": FULL_SETS if args.full else SMALL_SETS},
                        required=("info.seconds", "alphabets"), row_keys=("method", "benchmark", "values"))
    if not args.full:  # fetch the small sets and Lake's runs once, before the workers start
        small_splits(protocol, args.root, args.seed, download=not args.no_download)
        lake_one_shot_runs(args.root, protocol.image_size, download=not args.no_download)
    jobs = [Job(name, seed, protocol, args.seed, partials, args.root, args.full, not args.no_download,
                progress=not args.no_progress and args.workers <= 1, device=str(device), models=args.models)
            for name in names for seed in args.seeds]

    def finished(job: Job) -> dict[str, Any] | None:
        return partials.load(job.name, job.seed, own=own_settings(protocol, job.name))

    todo = [job for job in jobs if finished(job) is None]
    todo.sort(key=lambda job: estimated_seconds(job.name, protocol), reverse=True)
    run_parts(run_job, todo, args.workers, progress=not args.no_progress, desc="omniglot parts")
    parts = [finished(job) for job in jobs]
    rows = combine(parts)
    return write_result(
        args.out, rows, started, None if args.full else BUDGET_SECONDS, device, args.seed, "benchmarks.omniglot",
        argv, interval="t", seeds=list(args.seeds), protocol=asdict(protocol), alphabets=parts[0]["alphabets"],
        partial_dir=partials.folder.name, computed=[f"{j.name}-seed{j.seed}" for j in todo],
        compute_seconds=round(sum(part["info"]["seconds"] for part in parts), 1),
        methods={f"{part['job']}-seed{part['seed']}": part["info"] for part in parts},
        comparisons=comparisons(rows, parts), lake20_marks=lake_marks(rows) if not args.full else [],
        published=published_rows(args.full))


def plot(result: dict[str, Any], path: Path) -> None:
    """Every method on every benchmark (:func:`mtlcode.book.plots.benchmark_scores`), saved to ``path``."""
    import matplotlib.pyplot as plt

    fig = mtlcode.book.plots.benchmark_scores(result)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def print_table(result: dict[str, Any]) -> None:
    def pm(mean: float | None, ci95: float | None) -> str:
        return "n/a" if mean is None else f"{mean:.3f}" + ("" if ci95 is None else f" ± {ci95:.3f}")

    for row in result["rows"]:
        seeds = ", ".join(f"{v:.3f}" for v in row["per_seed"])
        print(f"{row['method']:>22}  {row['benchmark']:<18} {row['metric']:<8} {pm(row['mean'], row['ci95'])} "
              f"over {row['seeds']} seeds  [{seeds}]")
    for c in result["comparisons"]:
        print(f"{c['benchmark']:<18} {c['meta_learner']} - {c['transfer']}: {pm(c['mean'], c['ci95'])} (paired)")
    for m in result["lake20_marks"]:
        print(f"lake20 {m['method']:>22} error {m['error']:.3f}: " +
              ", ".join(f"{k} {v:+.3f}" for k, v in m["distance"].items()))
    print(f"wall time {result['wall_seconds']:.0f} s, parts computed now: {len(result['computed'])}, "
          f"compute of all parts {result['compute_seconds']:.0f} s")


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    p = parser(__doc__.splitlines()[0], "omniglot_v2.json")
    p.add_argument("--quick", action="store_true", help="tiny sizes (for tests)")
    p.add_argument("--full", action="store_true", help="the MAML paper's sizes on the full archives")
    p.add_argument("--plan", action="store_true", help="print the expected time of every part and exit")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds (default 0 1 2)")
    p.add_argument("--methods", nargs="+", default=[*META_LEARNERS, *TRANSFER], choices=[*META_LEARNERS, *TRANSFER],
                   help="trainings on the split (default: all)")
    p.add_argument("--lake-learners", nargs="*", default=["protonet"], choices=META_LEARNERS,
                   help="meta-learners also trained on every small-set alphabet for Lake's runs (default protonet)")
    p.add_argument("--root", default=None, help="Omniglot folder (default: $MTLCODE_DATA, then the user cache)")
    p.add_argument("--no-download", action="store_true", help="never download missing archives")
    p.add_argument("--iterations", type=int, default=None, help="override every training's iterations")
    p.add_argument("--models", default=None, help="save the trained weights (<job>-seed<k>.pt) in this folder")
    p.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1),
                   help="processes for the parts (1: in this process)")
    args = p.parse_args(argv)
    started = time.perf_counter()
    device = torch.device(args.device) if args.device else mtlcode.device()
    check_seeds_and_workers(p, args)  # before a device's override: --workers 0 is an error everywhere
    if device.type != "cpu":
        args.workers = 1  # one accelerator: the parts take turns on it
    protocol = QUICK if args.quick else (FULL_PROTOCOL if args.full else Protocol())
    if args.iterations is not None:
        if args.iterations < 1:
            p.error("--iterations must be at least 1")
        protocol = replace(protocol, iterations={name: args.iterations for name in protocol.iterations})
    if args.plan:
        print(plan_table(trainings(args), args.seeds, protocol, args.workers))
        return None
    if args.full:
        if args.out == RESULTS / "omniglot_v2.json":
            args.out = RESULTS / "omniglot_v2_full.json"
        if full_archives_missing(args, protocol):
            return None
    mtlcode.seed_everything(args.seed)
    result = run(args, argv, protocol, started, device)
    plot(result, args.out.with_suffix(".png"))
    if not args.no_progress:
        print_table(result)
    return result


if __name__ == "__main__":
    main()
