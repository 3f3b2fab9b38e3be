"""Lake's 20 one-shot runs, protocol v3: every setting chosen on validation runs, the test runs scored once.

Protocol v3 of ``benchmarks/README.md`` ("Lake's runs"), declared there before this script's first
run. Lake et al.'s (2015) runs are 20-way, one-shot and within one alphabet: one drawer's drawing
of each of 20 characters to learn from, another drawer's drawings to classify. Here:

* **Tuning** (``stage="tune"``): six of the eight alphabets of the two small background sets
  train (with rotations as extra classes); two alphabets are held out, and ``VAL_RUNS`` runs are
  built from them as Lake built his (:func:`mtlcode.data.lake_style_runs`: 20 characters of one
  alphabet, two drawers). Every training has two configurations (``GRIDS``) and is scored at four
  checkpoints (``CHECKPOINTS``) with three test-time options (``TEST_OPTIONS``); the configuration,
  the checkpoint and the option with the lowest validation error are chosen, per method.
* **Final** (``stage="final"``): the chosen configuration is trained again on all eight alphabets
  (seeds 0, 1, 2) for the same iterations, and Lake's 20 runs (alphabets none of the trainings has
  seen) are scored at every checkpoint with that checkpoint's chosen option. The reported error is
  the one at the checkpoint chosen in tuning; the others make the anytime curve.
* **Episodes as the runs ask**: 20-way one-shot episodes with 5 queries per class for ProtoNet,
  MAML and first-order MAML (the MAML paper's 20-way inner loop, five steps of 0.1, is one of the
  two configurations); the pre-trained network is scored with a linear probe or a fine-tuned head.
* **The same compute** for every training: ``Protocol.budget`` CPU-seconds on one thread, turned
  into iterations with the measured cost per iteration (``SECONDS_PER_ITERATION``).

No number of Lake's runs is read before the choice is made, and none is written in this code.

    python -m benchmarks.lake               # tuning, then the final trainings (see --plan)
    python -m benchmarks.lake --quick       # tiny sizes, for the tests
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

import mtlcode
from benchmarks.common import Checkpoints, Partials, over_seeds, parser, run_parts, write_result
from benchmarks.fair import CHECKPOINTS, INNER_LOOPS, STEP_MULTIPLES
from benchmarks.omniglot import PUBLISHED_LAKE20, SMALL_SETS, fine_tuner
from mtlcode import MAML, ProtoNet
from mtlcode.data import Omniglot, lake_one_shot_runs, lake_style_runs, split_alphabets
from mtlcode.learners.base import Learner
from mtlcode.learners.finetune import pretrain
from mtlcode.models import Conv4
from mtlcode.tasks import NWayKShot

TRAININGS = ("protonet", "maml", "fomaml", "pretrained")
PRETRAINED = ("finetune_linear_probe", "finetune_head")  # what is scored from the pre-trained network
METHODS = ("protonet", "maml", "fomaml", *PRETRAINED)
# Two configurations per training, as in omniglot v3 (benchmarks/fair.py).
GRIDS: dict[str, list[dict[str, float]]] = {
    "protonet": [{"lr": 1e-3}, {"lr": 3e-3}],
    "maml": INNER_LOOPS,
    "fomaml": INNER_LOOPS,
    "pretrained": [{"lr": 1e-3}, {"lr": 3e-3}],
}
# Three test-time options per method (ProtoNet has none): inner steps 1, 2, 4 times the training
# steps; the probe's L-BFGS iterations; the head's (steps, step size).
TEST_OPTIONS: dict[str, list[Any]] = {
    "protonet": [None],
    "finetune_linear_probe": [(10, 0.0), (30, 0.0), (100, 0.0)],
    "finetune_head": [(100, 0.01), (100, 0.1), (100, 1.0)],
}
FINE_TUNING_MODES = {"finetune_linear_probe": "linear_probe", "finetune_head": "head"}
# CPU-seconds per training iteration (one thread, Conv4 with 32 channels, 20-way 1-shot episodes with
# 5 queries per class, meta-batch 4; pre-training: 64 images), measured with --measure on 2026-12-07
# while another benchmark shared the two cores.
SECONDS_PER_ITERATION = {
    ("protonet", 0): 0.047, ("protonet", 1): 0.047,
    ("maml", 0): 0.206, ("maml", 1): 0.626,
    ("fomaml", 0): 0.118, ("fomaml", 1): 0.200,
    ("pretrained", 0): 0.015, ("pretrained", 1): 0.015,
}
VAL_SPLIT_SEED = 0  # which two alphabets are held out while tuning


@dataclass(frozen=True)
class Protocol:
    """Sizes of the run; the defaults fit 2 CPU cores (``--plan``)."""

    image_size: int = 28
    hidden: int = 32
    budget: float = 180.0                   # CPU-seconds of training per part
    ways: int = 20
    queries: int = 5                        # per class, in the training episodes
    meta_batch: int = 4                     # MAML's tasks per outer step (ProtoNet: one episode)
    meta_lr: float = 1e-3
    pretrain_batch: int = 64
    val_alphabets: int = 2
    val_runs: int = 20
    iterations: dict[str, int] = field(default_factory=dict)  # overrides (the tests)


QUICK = Protocol(hidden=8, budget=1.0, ways=5, queries=2, meta_batch=2, pretrain_batch=16, val_runs=2,
                 iterations={name: 8 for name in TRAININGS})  # 8: four distinct checkpoints


@dataclass(frozen=True)
class Part:
    """One training: ``training`` with configuration ``config``, seed ``seed``, ``stage`` tune or final."""

    training: str
    config: int
    seed: int
    stage: str

    @property
    def name(self) -> str:
        return f"lake-{self.stage}-{self.training}-c{self.config}"


def iterations(protocol: Protocol, part: Part) -> int:
    if part.training in protocol.iterations:
        return protocol.iterations[part.training]
    return max(8, round(protocol.budget / SECONDS_PER_ITERATION[part.training, part.config]))


def methods_of(training: str) -> tuple[str, ...]:
    return PRETRAINED if training == "pretrained" else (training,)


def test_options(method: str, config: int) -> list[Any]:
    if method in TEST_OPTIONS:
        return TEST_OPTIONS[method]
    return [GRIDS[method][config]["inner_steps"] * m for m in STEP_MULTIPLES]


# -- data ----------------------------------------------------------------------------------------

def held_out_alphabets(root: str | None, protocol: Protocol) -> tuple[list[str], list[str]]:
    """(training, validation) alphabets of the tuning stage: the validation ones have at least
    ``ways`` characters, so that runs can be built from them."""
    everything = Omniglot(root, SMALL_SETS, protocol.image_size, download=False)
    counts = {a: everything.alphabet_of.count(a) for a in everything.alphabets}
    usable = [a for a in everything.alphabets if counts[a] >= protocol.ways]
    _, val, _ = split_alphabets(usable, (len(usable) - protocol.val_alphabets, protocol.val_alphabets, 0),
                                seed=VAL_SPLIT_SEED)
    return [a for a in everything.alphabets if a not in val], val


class Material:
    """The stage's training data and the runs it is scored on."""

    def __init__(self, protocol: Protocol, stage: str, root: str | None) -> None:
        size = protocol.image_size
        if stage == "tune":
            train, val = held_out_alphabets(root, protocol)
            held_out = Omniglot(root, SMALL_SETS, size, download=False, alphabets=val)
            self.runs = lake_style_runs(held_out, protocol.val_runs, seed=VAL_SPLIT_SEED, ways=protocol.ways)
        else:
            train, val = None, []
            self.runs = lake_one_shot_runs(root, size, download=False)
            if protocol.ways != 20:  # --quick: the first ways characters of each run
                self.runs = [_fewer_ways(run, protocol.ways) for run in self.runs[:protocol.val_runs]]
        self.train = Omniglot(root, SMALL_SETS, size, download=False, rotations=True, alphabets=train)
        self.alphabets = {"train": self.train.alphabets, "val": val}


def _fewer_ways(run: Any, ways: int) -> Any:
    keep = run.query_y[0] < ways
    return type(run)(support_x=run.support_x[:, :ways], support_y=run.support_y[:, :ways],
                     query_x=run.query_x[:, keep], query_y=run.query_y[:, keep])


_MATERIAL: dict[tuple[str, str, str | None], Material] = {}


def material_of(protocol: Protocol, stage: str, root: str | None) -> Material:
    key = (repr(protocol), stage, root)
    if key not in _MATERIAL:
        _MATERIAL[key] = Material(protocol, stage, root)
    return _MATERIAL[key]


# -- one part ------------------------------------------------------------------------------------

def meta_learner(part: Part, protocol: Protocol) -> Learner:
    torch.manual_seed(part.seed)
    model = Conv4(ways=protocol.ways, hidden=protocol.hidden, image_size=protocol.image_size)
    if part.training == "protonet":
        return ProtoNet(model.body)
    config = GRIDS[part.training][part.config]
    return MAML(model, config["inner_lr"], loss=F.cross_entropy, inner_steps=config["inner_steps"],
                first_order=part.training == "fomaml")


def errors(method: str, trained: Any, option: Any, runs: list[Any]) -> list[float]:
    """The error on each run (fraction of its queries answered wrong)."""
    if method in FINE_TUNING_MODES:
        steps, lr = option
        scored, option = fine_tuner(trained, FINE_TUNING_MODES[method], steps, lr), None
    else:
        scored = trained
    return [round(1 - v, 4) for v in mtlcode.evaluate(scored, runs, steps=option).values]


def checkpoint_scores(part: Part, trained: Any, material: Material, chosen_options: dict[str, Any]) -> dict[str, Any]:
    """Tuning: every option's validation error. Final: the error with the option chosen in tuning."""
    out = {}
    for method in methods_of(part.training):
        if part.stage == "tune":
            by_option = {str(o): errors(method, trained, o, material.runs) for o in test_options(method, part.config)}
            out[method] = {"val_by_option": {o: sum(v) / len(v) for o, v in by_option.items()}}
        else:
            option = chosen_options[method]
            out[method] = {"option": option, "test": errors(method, trained, option, material.runs)}
    return out


def run_part(job: tuple[Part, Protocol, str | None, Partials, dict[str, Any]]) -> dict[str, Any]:
    """Train one part, scoring it at every checkpoint; save and return it."""
    part, protocol, root, partials, chosen = job
    torch.set_num_threads(1)
    material = material_of(protocol, part.stage, root)
    total = iterations(protocol, part)

    def score(step: int, trained: Any) -> dict[str, Any]:
        index = str(score_at.marks.index(step))  # the checkpoint's options, chosen in tuning
        options = {m: chosen.get(m, {}).get("options", {}).get(index) for m in methods_of(part.training)}
        return checkpoint_scores(part, trained, material, options)

    score_at = Checkpoints(total, CHECKPOINTS, score)

    if part.training == "pretrained":
        classes = int(material.train.targets.max()) + 1
        torch.manual_seed(part.seed)
        model = Conv4(ways=classes, hidden=protocol.hidden, image_size=protocol.image_size)
        losses = pretrain(model, material.train, total, GRIDS["pretrained"][part.config]["lr"], protocol.pretrain_batch,
                          generator=torch.Generator().manual_seed(part.seed), progress=False,
                          callback=lambda step, _: score_at(step, model, protocol.pretrain_batch))
        final = {"final_train_loss": sum(losses[-50:]) / len(losses[-50:])}
    else:
        learner = meta_learner(part, protocol)
        batch = 1 if part.training == "protonet" else protocol.meta_batch
        sampler = NWayKShot(material.train, protocol.ways, 1, protocol.queries)
        lr = GRIDS[part.training][part.config].get("lr", protocol.meta_lr)
        history = mtlcode.meta_train(learner, lambda g: sampler.sample(batch, generator=g), total, lr, seed=part.seed,
                                     progress=False, callback=lambda step, _: score_at(
                                         step, learner, batch * protocol.ways * (1 + protocol.queries)))
        final = {"final_train_accuracy": sum(history["metric"][-50:]) / len(history["metric"][-50:])}
    result = {"part": asdict(part), "iterations": total, "curve": score_at.curve, **final,
              "alphabets": material.alphabets, "scoring_cpu_seconds": round(score_at.scoring, 1)}
    partials.save(part.name, part.seed, result, own={"iterations": total, "chosen": chosen})
    return result


# -- the choice (validation runs only) and the report ---------------------------------------------

def choose(tuned: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per method: the configuration, checkpoint and option with the lowest mean validation error.

    The pre-trained network's configuration is chosen by the best of its methods (it is one
    training); ties go to the first configuration and the later checkpoint. Returns, per method,
    ``config``, ``checkpoint`` (index into ``CHECKPOINTS``), ``option`` there, ``val_error``, and
    ``options``: the best option at every checkpoint of that configuration (for the anytime curve).
    """
    out: dict[str, dict[str, Any]] = {}
    for training in TRAININGS:
        mine = sorted((r for r in tuned if r["part"]["training"] == training), key=lambda r: r["part"]["config"])

        def best(result: dict[str, Any], methods: tuple[str, ...]) -> tuple[float, int, str, str]:
            cands = [(err, -i, method, option) for i, point in enumerate(result["curve"]) for method in methods
                     for option, err in point["scores"][method]["val_by_option"].items()]
            return min(cands, key=lambda c: (c[0], c[1]))

        config_of = min(range(len(mine)), key=lambda i: (best(mine[i], methods_of(training))[0], i))
        result = mine[config_of]
        for method in methods_of(training):
            err, neg_index, _, option = best(result, (method,))
            options = {}
            for i, point in enumerate(result["curve"]):
                by_option = point["scores"][method]["val_by_option"]
                options[str(i)] = _option(min(by_option, key=lambda o: by_option[o]))
            out[method] = {"config": result["part"]["config"], "checkpoint": -neg_index, "option": _option(option),
                           "val_error": err, "options": options}
    return out


def _option(text: str) -> Any:
    """An option back from its string key: None, an int, or a [steps, lr] pair (a list, as in JSON)."""
    import ast

    value = ast.literal_eval(text)
    return list(value) if isinstance(value, tuple) else value


def report(finals: list[dict[str, Any]], chosen: dict[str, dict[str, Any]], seeds: list[int],
           queries: int = 20) -> dict[str, Any]:
    """Rows per method (test error at the checkpoint chosen in tuning, over seeds), anytime curves,
    the declared paired differences on the same 20 runs, and the published marks."""
    def runs_of(method: str, seed: int, checkpoint: int | None = None) -> list[float]:
        part = next(p for p in finals if p["part"]["seed"] == seed and method in methods_of(p["part"]["training"]))
        index = chosen[method]["checkpoint"] if checkpoint is None else checkpoint
        return part["curve"][index]["scores"][method]["test"]

    def mean(values: list[float]) -> float:
        return sum(values) / len(values)

    rows = []
    for method in METHODS:
        per_seed = [mean(runs_of(method, s)) for s in seeds]
        rows.append({"method": method, "benchmark": "lake20", "metric": "error", **over_seeds(per_seed),
                     "per_seed": per_seed, "errors": sum(round(queries * e) for s in seeds for e in runs_of(method, s)),
                     "answers": sum(queries * len(runs_of(method, s)) for s in seeds),
                     **{k: chosen[method][k] for k in ("config", "checkpoint", "option", "val_error")}})
    pairs = []
    for a, b in PAIRS:
        diffs = [mean(runs_of(a, s)) - mean(runs_of(b, s)) for s in seeds]
        pairs.append({"a": a, "b": b, "difference": "a - b (error)", **over_seeds(diffs), "per_seed": diffs})
    curves = []
    for method in METHODS:
        parts = [p for p in finals if method in methods_of(p["part"]["training"])]
        for index in range(len(CHECKPOINTS)):
            values = [mean(p["curve"][index]["scores"][method]["test"]) for p in parts]
            curves.append({"method": method, "checkpoint": index, **over_seeds(values),
                           "cpu_seconds": mean([p["curve"][index]["cpu_seconds"] for p in parts]),
                           "examples": parts[0]["curve"][index]["examples"]})
    published = [{"method": m, "mean": v, "source": s} for m, (v, s) in PUBLISHED_LAKE20.items()]
    return {"rows": rows, "pairs": pairs, "anytime": curves, "published": published, "chosen": chosen}


# Declared in benchmarks/README.md before the first run: (a, b), difference of errors a - b.
PAIRS = (("protonet", "finetune_linear_probe"), ("maml", "finetune_linear_probe"), ("fomaml", "maml"))


def measure(protocol: Protocol, root: str | None) -> dict[str, float]:
    """CPU-seconds per iteration of every (training, configuration), 10 iterations after 2 of warm-up."""
    torch.set_num_threads(1)
    material = material_of(protocol, "final", root)
    out = {}
    for training in TRAININGS:
        for config in range(len(GRIDS[training])):
            part = Part(training, config, 0, "final")
            _train_for(part, protocol, material, 2)  # warm-up
            began = time.process_time()
            _train_for(part, protocol, material, 10)
            out[f"{training}/{config}"] = round((time.process_time() - began) / 10, 3)
    return out


def _train_for(part: Part, protocol: Protocol, material: Material, steps: int) -> None:
    if part.training == "pretrained":
        classes = int(material.train.targets.max()) + 1
        model = Conv4(ways=classes, hidden=protocol.hidden, image_size=protocol.image_size)
        pretrain(model, material.train, steps, 1e-3, protocol.pretrain_batch,
                 generator=torch.Generator().manual_seed(0), progress=False)
        return
    learner, batch = meta_learner(part, protocol), 1 if part.training == "protonet" else protocol.meta_batch
    sampler = NWayKShot(material.train, protocol.ways, 1, protocol.queries)
    mtlcode.meta_train(learner, lambda g: sampler.sample(batch, generator=g), steps, 1e-3, progress=False)


def part_problem(part: dict[str, Any]) -> str:
    """Why a saved part cannot be used ("" when it can): it needs a curve with scores at every checkpoint."""
    curve = part.get("curve")
    if not isinstance(curve, list) or len(curve) != len(CHECKPOINTS):
        return f"a curve of {len(CHECKPOINTS)} checkpoints (got {type(curve).__name__})"
    for point in curve:
        for method, entry in point.get("scores", {}).items():
            values = [*entry.get("val_by_option", {}).values(), *entry.get("test", [])]
            if not values or not all(isinstance(v, (int, float)) and 0 <= v <= 1 for v in values):
                return f"an error rate missing or outside [0, 1] ({method}, step {point.get('step')})"
    return ""


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    p = parser(__doc__.splitlines()[0], "lake_v3.json")
    p.add_argument("--quick", action="store_true", help="tiny sizes (for tests)")
    p.add_argument("--plan", action="store_true", help="print the parts and their expected time, then exit")
    p.add_argument("--measure", action="store_true", help="print CPU-seconds per iteration, then exit")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds of the final stage")
    p.add_argument("--root", default=None, help="Omniglot folder (default: $MTLCODE_DATA, then the user cache)")
    p.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    args = p.parse_args(argv)
    if any(s < 0 for s in args.seeds) or len(set(args.seeds)) != len(args.seeds):
        p.error(f"--seeds must be distinct and non-negative, got {args.seeds}")
    if args.workers < 1:
        p.error(f"--workers must be at least 1, got {args.workers}")
    protocol = QUICK if args.quick else Protocol()
    if args.measure:
        print(measure(protocol, args.root))
        return None
    tuning = [Part(t, c, 0, "tune") for t in TRAININGS for c in range(len(GRIDS[t]))]
    if args.plan:
        seconds = protocol.budget * (len(tuning) + len(TRAININGS) * len(args.seeds))
        print(f"{len(tuning)} tuning parts, then {len(TRAININGS) * len(args.seeds)} final parts: about "
              f"{seconds / 60:.0f} CPU-minutes of training (scoring adds a little), "
              f"{seconds / 60 / args.workers:.0f} min on {args.workers} worker(s)")
        return None
    started = time.perf_counter()
    Omniglot(args.root, SMALL_SETS, protocol.image_size, download=True)  # fetch once, before the workers
    lake_one_shot_runs(args.root, protocol.image_size, download=True)
    partials = Partials(args.out, {"protocol": asdict(protocol), "version": "lake-v3", "grids": GRIDS,
                                   "test_options": TEST_OPTIONS, "step_multiples": STEP_MULTIPLES,
                                   "checkpoints": CHECKPOINTS}, problem=part_problem)

    def run(parts: list[Part], chosen: dict[str, Any]) -> list[dict[str, Any]]:
        def own(q: Part) -> dict[str, Any]:
            return {"iterations": iterations(protocol, q), "chosen": mine(q, chosen)}
        todo = [q for q in parts if partials.load(q.name, q.seed, own=own(q)) is None]
        todo.sort(key=lambda q: SECONDS_PER_ITERATION.get((q.training, q.config), 0), reverse=True)
        jobs = [(q, protocol, args.root, partials, mine(q, chosen)) for q in todo]
        run_parts(run_part, jobs, args.workers, progress=not args.no_progress, desc="lake parts")
        return [partials.load(q.name, q.seed, own=own(q)) for q in parts]

    chosen = choose(run(tuning, {}))
    finals = [Part(t, chosen[methods_of(t)[0]]["config"], s, "final") for t in TRAININGS for s in args.seeds]
    result = report(run(finals, chosen), chosen, args.seeds, queries=protocol.ways)
    written = write_result(args.out, result.pop("rows"), started, None, torch.device("cpu"), 0, "benchmarks.lake",
                           argv, protocol=asdict(protocol), grids=GRIDS, test_options=TEST_OPTIONS, seeds=args.seeds,
                           seconds_per_iteration={f"{t}/{c}": v for (t, c), v in SECONDS_PER_ITERATION.items()},
                           **result)
    if not args.no_progress:
        print(f"wrote {args.out}")
    return written


def mine(part: Part, chosen: dict[str, Any]) -> dict[str, Any]:
    """What a final part needs of the choice: its methods' chosen options (tuning parts need none)."""
    return {m: chosen[m] for m in methods_of(part.training)} if part.stage == "final" else {}


if __name__ == "__main__":
    main()
