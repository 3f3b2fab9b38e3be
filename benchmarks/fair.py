"""Omniglot v3, the fair comparison: every method at its best, chosen on validation, against compute.

Protocol v3 of ``benchmarks/README.md`` (declared there before any of its runs), on the two small
background sets (8 alphabets), split by alphabet into 5 for training, 1 for validation and 2 for
testing. In short:

* **Episodes as the benchmark asks.** The inner-loop meta-learners (MAML, first-order MAML, ANIL,
  Meta-SGD, Reptile) train on 5-way episodes with 15 queries per class: 1-shot episodes for the
  1-shot benchmarks, 5-shot episodes for the 5- and 10-shot ones. ProtoNet trains 20-way (Snell
  et al., 2017: more ways than the test tasks) with the benchmark's shots. The transfer methods
  pre-train once on the same training alphabets (``pretrained``: then a fine-tuned head, every
  weight fine-tuned, or a linear probe; ``baselinepp``: a cosine head, Chen et al., 2019).
* **The same compute for every training**: ``budget`` CPU-seconds (one thread), turned into
  iterations with each training's measured cost per iteration (``SECONDS_PER_ITERATION``).
  Every training is scored at ``CHECKPOINTS`` log-spaced fractions of its iterations, on
  validation tasks and on test tasks, with the CPU-seconds spent training up to there and the
  examples seen: the anytime curves. Equal budgets are equal checkpoints.
* **One tuning rule.** Every training has the same number of configurations (``GRIDS``: two
  values of its main step size), each trained with seed 0 on split 0 and scored on the
  validation alphabet; every test-time method has the same number of test-time options
  (``TEST_OPTIONS``: three values of its steps or step size). A configuration, a checkpoint and
  an option are chosen by validation accuracy alone; the test tasks never choose anything.
* **Intervals** over training seeds 0, 1, 2 (split 0 fixed) and over alphabet splits 0, 1, 2
  (seed 0 fixed), and the comparisons declared in the README, paired on the same test tasks.

Resumable: each training is one part in ``<out>.partial/`` (see ``benchmarks.common.Partials``);
the parts after the tuning phase need its choice, so the run first finishes the tuning parts.

    python -m benchmarks.fair               # the whole protocol (see --plan for its time)
    python -m benchmarks.fair --plan        # the parts and their expected seconds
    python -m benchmarks.fair --quick       # tiny sizes, for the tests
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

import mtlcode
from benchmarks.common import Checkpoints, Partials, parser, run_parts, write_result
from benchmarks.fair_report import META, TRANSFER, plot, report
from benchmarks.omniglot import digit_benchmarks, fine_tuner, small_splits, tasks
from mtlcode import ANIL, MAML, MetaSGD, ProtoNet, Reptile
from mtlcode.learners.base import Learner
from mtlcode.learners.finetune import CosineHead, pretrain
from mtlcode.models import Conv4
from mtlcode.tasks import NWayKShot

PRETRAININGS = {"pretrained": ("finetune_head", "finetune_all", "finetune_linear_probe"), "baselinepp": ("baselinepp",)}
# The pre-trainings and the fine-tuning methods scored from each (META, TRANSFER: fair_report).
assert tuple(m for methods in PRETRAININGS.values() for m in methods) == TRANSFER
TRAININGS = (*META, *PRETRAININGS)
# Two configurations per training. The inner-loop learners: the MAML paper's two Omniglot inner
# loops (5-way: one step of 0.4; 20-way: five steps of 0.1; Finn et al., 2017), Reptile: three
# steps of 0.1 or ten of 0.03; the others: Adam's rate. (First-order MAML needs the second: see
# benchmarks/README.md, "Why v2's first-order MAML did not learn".)
INNER_LOOPS = [{"inner_lr": 0.4, "inner_steps": 1}, {"inner_lr": 0.1, "inner_steps": 5}]
GRIDS: dict[str, list[dict[str, float]]] = {
    **{name: INNER_LOOPS for name in ("maml", "fomaml", "anil", "metasgd")},
    "reptile": [{"inner_lr": 0.1, "inner_steps": 3}, {"inner_lr": 0.03, "inner_steps": 10}],
    **{name: [{"lr": 1e-3}, {"lr": 3e-3}] for name in ("protonet", "pretrained", "baselinepp")},
}
# Three test-time options per method: for the inner-loop learners 1, 2 and 4 times their training
# steps; for fine-tuning (steps, step size); the probe is fitted by L-BFGS, its option is the
# number of iterations. ProtoNet has nothing to choose.
STEP_MULTIPLES = (1, 2, 4)
TEST_OPTIONS: dict[str, list[Any]] = {
    "protonet": [None],
    "finetune_head": [(100, 0.01), (100, 0.1), (100, 1.0)],
    "finetune_all": [(20, 0.003), (20, 0.01), (20, 0.1)],
    "finetune_linear_probe": [(10, 0.0), (30, 0.0), (100, 0.0)],
    "baselinepp": [(100, 0.01), (100, 0.1), (100, 1.0)],
}
FINE_TUNING_MODES = {"finetune_head": "head", "finetune_all": "all", "finetune_linear_probe": "linear_probe",
                     "baselinepp": "head"}
# CPU-seconds per training iteration, (training, shots, configuration): one thread, Conv4 with 32
# channels, meta-batch 4 (ProtoNet: one 20-way episode; pre-training: 64 images); measured here
# on 2026-12-07, the second configurations while other jobs shared the two cores.
SECONDS_PER_ITERATION = {
    ("maml", 1, 0): 0.112, ("maml", 5, 0): 0.211, ("maml", 1, 1): 0.224, ("maml", 5, 1): 0.676,
    ("fomaml", 1, 0): 0.076, ("fomaml", 5, 0): 0.090, ("fomaml", 1, 1): 0.095, ("fomaml", 5, 1): 0.166,
    ("anil", 1, 0): 0.076, ("anil", 5, 0): 0.089, ("anil", 1, 1): 0.098, ("anil", 5, 1): 0.158,
    ("metasgd", 1, 0): 0.111, ("metasgd", 5, 0): 0.220, ("metasgd", 1, 1): 0.211, ("metasgd", 5, 1): 0.677,
    ("reptile", 1, 0): 0.242, ("reptile", 5, 0): 0.557, ("reptile", 1, 1): 0.716, ("reptile", 5, 1): 1.010,
    **{("protonet", 1, c): 0.041 for c in (0, 1)}, **{("protonet", 5, c): 0.046 for c in (0, 1)},
    **{("pretrained", 0, c): 0.014 for c in (0, 1)}, **{("baselinepp", 0, c): 0.016 for c in (0, 1)},
}
SHOTS = (1, 5, 10)
CHECKPOINTS = (1 / 8, 1 / 4, 1 / 2, 1.0)  # fractions of a training's iterations


@dataclass(frozen=True)
class Protocol:
    """Sizes of the v3 run; the defaults fit 2 CPU cores (``--plan``)."""

    image_size: int = 28
    hidden: int = 32
    split: tuple[int, int, int] = (5, 1, 2)
    budget: float = 60.0                    # CPU-seconds of training per part
    meta_batch: int = 4
    queries: int = 15                       # per class, inner-loop learners' training episodes
    protonet_ways: int = 20
    protonet_queries: int = 5
    meta_lr: float = 1e-3
    pretrain_batch: int = 64
    cosine_scale: float = 10.0
    val_tasks: int = 20
    val_queries: int = 5
    test_tasks: int = 100
    test_queries: int = 10                  # Omniglot has 20 drawings per character: 10 shots + 10
    eval_chunk: int = 25
    iterations: dict[str, int] = field(default_factory=dict)  # overrides (the tests)


QUICK = Protocol(hidden=8, budget=1.0, meta_batch=2, queries=2, protonet_ways=5, protonet_queries=2,
                 pretrain_batch=16, val_tasks=2, val_queries=2, test_tasks=3, test_queries=2, eval_chunk=3,
                 iterations={name: 4 for name in TRAININGS})


@dataclass(frozen=True)
class Part:
    """One training: ``training`` with configuration ``config`` on ``shots``-shot episodes (0: not
    episodic), seed ``seed``, alphabet split ``split``."""

    training: str
    config: int
    shots: int
    seed: int
    split: int

    @property
    def name(self) -> str:
        return f"{self.training}-c{self.config}-k{self.shots}-split{self.split}"


@dataclass(frozen=True)
class Methods:
    """What a run under protocol v3 trains and how it scores it.

    ``V3`` is this script's own; ``benchmarks.trends`` runs other trainings under the same rules
    with its own. ``pretrainings`` maps each pre-training to the fine-tuning methods scored from
    it (every other training is a meta-learner, scored as itself); ``fine_tuning_modes`` maps those
    methods to ``finetune``'s modes. ``learner(part, protocol)`` builds a meta-learner (default
    :func:`meta_learner`); ``tuner(model, mode, steps, lr)`` is the fine-tuning function scored
    (default ``benchmarks.omniglot.fine_tuner``).
    """

    trainings: tuple[str, ...]
    pretrainings: dict[str, tuple[str, ...]]
    grids: dict[str, list[dict[str, float]]]
    test_options: dict[str, list[Any]]
    fine_tuning_modes: dict[str, str]
    seconds_per_iteration: dict[tuple[str, int, int], float]
    learner: Callable[[Part, Protocol], Learner] | None = None
    tuner: Callable[..., Any] | None = None


V3 = Methods(TRAININGS, PRETRAININGS, GRIDS, TEST_OPTIONS, FINE_TUNING_MODES, SECONDS_PER_ITERATION)


def iterations(protocol: Protocol, part: Part, methods: Methods = V3) -> int:
    if part.training in protocol.iterations:
        return protocol.iterations[part.training]
    return max(8, round(protocol.budget / methods.seconds_per_iteration[part.training, part.shots, part.config]))


def methods_of(training: str, methods: Methods = V3) -> tuple[str, ...]:
    return methods.pretrainings.get(training, (training,))


def test_options(method: str, config: int, methods: Methods = V3) -> list[Any]:
    """The test-time options of ``method`` trained with configuration ``config``."""
    if method in methods.test_options:
        return methods.test_options[method]
    return [methods.grids[method][config]["inner_steps"] * m for m in STEP_MULTIPLES]


def shots_of(part: Part) -> tuple[int, ...]:
    """The benchmark shots a part is scored on: its episodes' for meta-learners, all for transfer."""
    return {0: SHOTS, 1: (1,), 5: (5, 10)}[part.shots]


# -- building and adapting the models ------------------------------------------------------------

def meta_learner(part: Part, protocol: Protocol) -> Learner:
    torch.manual_seed(part.seed)
    model = Conv4(ways=5, hidden=protocol.hidden, image_size=protocol.image_size)
    config, ce = GRIDS[part.training][part.config], F.cross_entropy
    if part.training in ("maml", "fomaml"):
        return MAML(model, config["inner_lr"], loss=ce, inner_steps=config["inner_steps"],
                    first_order=part.training == "fomaml")
    if part.training == "anil":
        return ANIL(model, config["inner_lr"], loss=ce, inner_steps=config["inner_steps"])
    if part.training == "metasgd":
        return MetaSGD(model, config["inner_lr"], loss=ce, inner_steps=config["inner_steps"])
    if part.training == "reptile":
        return Reptile(model, config["inner_lr"], loss=ce, inner_steps=config["inner_steps"])
    return ProtoNet(model.body)


def episodes(part: Part, protocol: Protocol) -> tuple[int, int, int]:
    """``(ways, queries per class, meta-batch)`` of ``part``'s training episodes."""
    if part.training == "protonet":
        return protocol.protonet_ways, protocol.protonet_queries, 1
    return 5, protocol.queries, protocol.meta_batch


def adapter(method: str, trained: Any, option: Any, methods: Methods = V3):
    """What :func:`mtlcode.evaluate` scores: a learner (with its steps) or a fine-tuning function."""
    if method not in methods.fine_tuning_modes:  # a meta-learner
        return trained, option
    steps, lr = option
    return (methods.tuner or fine_tuner)(trained, methods.fine_tuning_modes[method], steps, lr), None


def accuracy(method: str, trained: Any, option: Any, batch, protocol: Protocol,
             methods: Methods = V3) -> mtlcode.evaluation.Evaluation:
    scored, steps = adapter(method, trained, option, methods)
    chunks = [batch[i:i + protocol.eval_chunk] for i in range(0, len(batch), protocol.eval_chunk)]
    return mtlcode.evaluate(scored, chunks, steps=steps)


# -- one part ------------------------------------------------------------------------------------

class Material:
    """The split's training data, validation tasks and test benchmarks (seeded by the split alone)."""

    def __init__(self, protocol: Protocol, split: int, root: str | None) -> None:
        p = protocol
        splits = small_splits(replace_protocol(p), root, split, download=False)
        self.train, self.alphabets = splits.train, splits.alphabets
        self.val = {k: tasks(splits.val, 5, k, p.val_queries, p.val_tasks, 1000 * split + 99 + k) for k in SHOTS}
        self.test = {f"heldout_5way{k}shot": tasks(splits.test, 5, k, p.test_queries, p.test_tasks,
                                                    1000 * split + 100 + k) for k in SHOTS}
        digits = digit_benchmarks(replace_protocol(p), 1000 * split)  # 1- and 5-shot
        self.test.update({b.name: b.tasks for b in digits})


_MATERIAL: dict[tuple[str, int, str | None], Material] = {}


def material_of(protocol: Protocol, split: int, root: str | None) -> Material:
    """The split's material, built once per process (its parts share it; it is seeded by the split)."""
    key = (repr(protocol), split, root)
    if key not in _MATERIAL:
        _MATERIAL[key] = Material(protocol, split, root)
    return _MATERIAL[key]


def replace_protocol(protocol: Protocol):
    """The v2 protocol object that ``benchmarks.omniglot``'s data helpers read (sizes only)."""
    from benchmarks.omniglot import Protocol as V2

    return replace(V2(), image_size=protocol.image_size, split=protocol.split, test_queries=protocol.test_queries,
                   test_tasks=protocol.test_tasks)


def benchmark_shots(name: str) -> int:
    return int(name.split("way")[1].removesuffix("shot"))


def checkpoint_scores(part: Part, trained: Any, material: Material, protocol: Protocol,
                      with_test: bool, methods: Methods = V3) -> dict[str, Any]:
    """Validation accuracy of every method and option; test accuracy with the validation's choice."""
    out = {}
    for method in methods_of(part.training, methods):
        for k in shots_of(part):
            options = test_options(method, part.config, methods)
            val = {str(option): accuracy(method, trained, option, material.val[k], protocol, methods).mean
                   for option in options}
            best = max(options, key=lambda o: val[str(o)])
            entry: dict[str, Any] = {"val_by_option": val, "option": best, "val": val[str(best)]}
            if with_test:
                entry["test"] = {name: [round(v, 4) for v in accuracy(method, trained, best, batch, protocol,
                                                                      methods).values]
                                 for name, batch in material.test.items() if benchmark_shots(name) == k}
            out[f"{method}/{k}"] = entry
    return out


def run_part(job: tuple[Any, ...]) -> dict[str, Any]:
    """Train one part, scoring it at every checkpoint; save and return it.

    ``job``: ``(part, protocol, root, partials, with_test)``, and optionally the :class:`Methods`
    (default ``V3``)."""
    part, protocol, root, partials, with_test, *rest = job
    methods: Methods = rest[0] if rest else V3
    torch.set_num_threads(1)
    material = material_of(protocol, part.split, root)
    total = iterations(protocol, part, methods)
    score_at = Checkpoints(total, CHECKPOINTS, lambda step, trained: checkpoint_scores(
        part, trained, material, protocol, with_test, methods))

    if part.training in methods.pretrainings:
        losses = _pretrain(part, protocol, material, total, score_at, methods)
        final = {"final_train_loss": sum(losses[-50:]) / len(losses[-50:])}
    else:
        learner = (methods.learner or meta_learner)(part, protocol)
        ways, queries, meta_batch = episodes(part, protocol)
        sampler = NWayKShot(material.train, ways, part.shots, queries)
        history = mtlcode.meta_train(
            learner, lambda g: sampler.sample(meta_batch, generator=g), total,
            methods.grids[part.training][part.config].get("lr", protocol.meta_lr), seed=part.seed, progress=False,
            callback=lambda step, _: score_at(step, learner, meta_batch * ways * (part.shots + queries)))
        last = history["metric"][-50:]
        final = {"final_train_accuracy": sum(last) / len(last)}
    result = {"part": asdict(part), "iterations": total, "curve": score_at.curve, **final,
              "alphabets": material.alphabets, "scoring_cpu_seconds": round(score_at.scoring, 1)}
    partials.save(part.name, part.seed, result, own={"iterations": total})
    return result


def _pretrain(part: Part, protocol: Protocol, material: Material, total: int, score_at,
              methods: Methods = V3) -> list[float]:
    classes = int(material.train.targets.max()) + 1
    torch.manual_seed(part.seed)
    model = Conv4(ways=classes, hidden=protocol.hidden, image_size=protocol.image_size)
    if part.training == "baselinepp":
        model.head = CosineHead(model.feature_dim, classes, protocol.cosine_scale)
    # Fine-tuning sees the model in training mode, as in v2 (batch statistics of the task's images).
    lr = methods.grids[part.training][part.config]["lr"]
    return pretrain(model, material.train, total, lr, protocol.pretrain_batch,
                    generator=torch.Generator().manual_seed(part.seed), progress=False,
                    callback=lambda step, _: score_at(step, model, protocol.pretrain_batch))


def curve_problem(part: dict[str, Any]) -> str:
    """Why a saved part cannot be a result ("" when it can): its curve must hold accuracies in [0, 1]."""
    curve = part.get("curve")
    if not isinstance(curve, list) or not curve:
        return "no curve (a part always has one)"
    for point in curve:
        scores = point.get("scores") if isinstance(point, dict) else None
        if not isinstance(scores, dict) or not scores:
            return f"a checkpoint without scores: {str(point)[:80]}"
        for key, entry in scores.items():
            numbers = [entry.get("val"), *entry.get("val_by_option", {}).values(),
                       *(v for values in entry.get("test", {}).values() for v in values)]
            if not all(isinstance(v, (int, float)) and 0 <= v <= 1 for v in numbers):
                return f"an accuracy outside [0, 1] ({key}, step {point.get('step')})"
    return ""


# -- the plan: tuning first, then the chosen configurations --------------------------------------

def tuning_parts(methods: Methods = V3) -> list[Part]:
    """Every configuration, seed 0, split 0 (meta-learners on 1-shot episodes)."""
    return [Part(t, c, 0 if t in methods.pretrainings else 1, 0, 0) for t in methods.trainings
            for c in range(len(methods.grids[t]))]


def chosen_config(training: str, tuned: list[dict[str, Any]]) -> int:
    """The configuration with the best validation accuracy on 1-shot tasks (any checkpoint, option,
    and, for a pre-training, any of its fine-tuning methods); the first on ties."""
    def best(result: dict[str, Any]) -> float:
        return max(entry["val"] for point in result["curve"] for key, entry in point["scores"].items()
                   if key.endswith("/1"))
    mine = [r for r in tuned if r["part"]["training"] == training]
    return max(mine, key=lambda r: (best(r), -r["part"]["config"]))["part"]["config"]


def final_parts(choice: dict[str, int], seeds: tuple[int, ...], splits: tuple[int, ...],
                methods: Methods = V3) -> list[Part]:
    """The chosen configurations with every seed on split 0, and seed 0 on every split."""
    cells = [(seed, 0) for seed in seeds] + [(0, split) for split in splits if split != 0]
    parts = []
    for t in methods.trainings:
        for shots in ((0,) if t in methods.pretrainings else (1, 5)):
            parts += [Part(t, choice[t], shots, seed, split) for seed, split in cells]
    return parts


# CPU-seconds of scoring one part at its four checkpoints, measured in the first v3 run (one thread):
# for --plan and to start the longest parts first. Scoring a pre-training costs more than training
# it: three fine-tuning methods, three options each, on validation and test tasks.
SCORING_SECONDS = {("pretrained", 0): 390, ("baselinepp", 0): 62, ("protonet", 1): 3, ("protonet", 5): 5,
                   ("anil", 5): 85}
SCORING_SECONDS_BY_SHOTS = {1: 30, 5: 210}


def expected_seconds(part: Part, protocol: Protocol) -> float:
    """A part's CPU-seconds: its training budget plus its measured scoring time."""
    scoring = SCORING_SECONDS.get((part.training, part.shots), SCORING_SECONDS_BY_SHOTS.get(part.shots, 60))
    return protocol.budget + scoring * protocol.budget / 60.0


def v3_partials(out: Path, protocol: Protocol) -> Partials:
    """The parts of this script's run at ``out`` (``<out>.partial/``), with its fingerprint."""
    # A part's numbers depend on the protocol, the grids and options, and its own iterations.
    return Partials(out, {"protocol": asdict(protocol), "version": "v3", "grids": GRIDS,
                          "test_options": TEST_OPTIONS, "step_multiples": STEP_MULTIPLES,
                          "checkpoints": CHECKPOINTS}, problem=curve_problem)


def own(part: Part, protocol: Protocol, methods: Methods = V3) -> dict[str, int]:
    """What a part's numbers depend on besides the run's fingerprint: its iterations."""
    return {"iterations": iterations(protocol, part, methods)}


def run_missing(parts: list[Part], protocol: Protocol, partials: Partials, root: str | None, workers: int,
                progress: bool, with_test: bool = True, methods: Methods = V3,
                cost: Callable[[Part, Protocol], float] | None = None, desc: str = "parts") -> list[dict[str, Any]]:
    """Train the parts not finished yet (the longest first, by ``cost``: default
    :func:`expected_seconds`), then return every part, loaded from ``partials``."""
    todo = [q for q in parts if partials.load(q.name, q.seed, own=own(q, protocol, methods)) is None]
    todo.sort(key=lambda q: (cost or expected_seconds)(q, protocol), reverse=True)
    jobs = [(q, protocol, root, partials, with_test, methods) for q in todo]
    run_parts(run_part, jobs, workers, progress=progress, desc=desc)
    return [partials.load(q.name, q.seed, own=own(q, protocol, methods)) for q in parts]


def v3_parser(description: str, out_name: str) -> argparse.ArgumentParser:
    """The options of a run under protocol v3 (this script's, and ``benchmarks.trends``'s)."""
    p = parser(description, out_name)
    p.add_argument("--quick", action="store_true", help="tiny sizes (for tests)")
    p.add_argument("--plan", action="store_true", help="print the parts and their expected time, then exit")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds on split 0")
    p.add_argument("--splits", type=int, nargs="+", default=[0, 1, 2], help="alphabet splits (seed 0)")
    p.add_argument("--tuning-only", action="store_true", help="stop after the tuning parts")
    p.add_argument("--root", default=None, help="Omniglot folder (default: $MTLCODE_DATA, then the user cache)")
    p.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    return p


def parse_v3_arguments(p: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """``p``'s arguments, refused with a message when the seeds, splits or workers cannot run."""
    args = p.parse_args(argv)
    if any(s < 0 for s in [*args.seeds, *args.splits]) or 0 not in args.seeds or 0 not in args.splits:
        p.error("--seeds and --splits must be non-negative and include 0 (the tuning parts use seed 0, split 0)")
    if args.workers < 1:
        p.error(f"--workers must be at least 1, got {args.workers}")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    p = v3_parser(__doc__.splitlines()[0], "omniglot_v3.json")
    args = parse_v3_arguments(p, argv)
    started = time.perf_counter()
    protocol = QUICK if args.quick else Protocol()
    partials = v3_partials(args.out, protocol)
    if args.plan:
        print(plan(protocol, args))
        return None
    small_splits(replace_protocol(protocol), args.root, 0, download=True)  # fetch once, before workers

    def run(parts: list[Part], with_test: bool) -> list[dict[str, Any]]:
        return run_missing(parts, protocol, partials, args.root, args.workers, not args.no_progress,
                           with_test=with_test, desc="v3 parts")

    tuned = run(tuning_parts(), with_test=True)
    choice = {t: chosen_config(t, tuned) for t in TRAININGS}
    if args.tuning_only:
        print("chosen on validation:", choice)
        return None
    finals = run(final_parts(choice, tuple(args.seeds), tuple(args.splits)), with_test=True)
    result = report(finals, tuned, choice, protocol=asdict(protocol), grids=GRIDS, test_options=TEST_OPTIONS,
                    seeds=args.seeds, splits=args.splits)
    written = write_result(args.out, result.pop("rows"), started, None, torch.device("cpu"), 0, "benchmarks.fair",
                           argv, **result)
    plot(written, args.out.with_suffix(".png"))
    if not args.no_progress:
        print(f"wrote {args.out}")
    return written


def plan(protocol: Protocol, args: Any, methods: Methods = V3,
         expected: Callable[[Part, Protocol], float] = expected_seconds) -> str:
    """The number of parts of ``methods`` and their expected CPU time (``expected``, per part)."""
    trainings = methods.trainings
    parts = tuning_parts(methods) + final_parts({t: 0 for t in trainings}, tuple(args.seeds), tuple(args.splits),
                                                methods)
    unique = {(q.name, q.seed): q for q in parts}.values()
    seconds = sum(expected(q, protocol) for q in unique)
    return (f"{len(unique)} parts (at most; the tuning choice can reuse one per training), about "
            f"{seconds / 60:.0f} CPU-minutes, {seconds / 60 / args.workers:.0f} min on {args.workers} worker(s)")


if __name__ == "__main__":
    main()
