"""Omniglot v3, trends: R2-D2's ridge head and adapters on the pre-trained network, under protocol v3's rules.

The learners of chapter 8 ("Adapting a few parameters, measured", "Closed-form heads, measured")
as new trainings of protocol v3 (``benchmarks/README.md``, "Trends under v3"), declared there
before this script's first run. Everything but the methods is ``benchmarks.fair``'s: the split
and its material (validation and test tasks seeded by the split), the 60 CPU-second budget turned
into iterations with the measured cost of an iteration, the four checkpoints, two configurations
per training chosen on the validation alphabet (seed 0, split 0), three test-time options per
method chosen on validation tasks at every checkpoint, seeds 0, 1, 2 on split 0 and seed 0 on
splits 1 and 2. Only the methods differ (``METHODS``):

* ``r2d2``: R2-D2 (Bertinetto et al., 2019; ``mtlcode.R2D2``), a ridge-regression head solved in
  closed form on the Conv4-32 body, meta-trained through the solve on 5-way episodes as the
  inner-loop learners are (the benchmark's shots, ``Protocol.queries`` queries per class,
  ``Protocol.meta_batch`` tasks per step). Its two configurations are Adam's rate, 0.001 (v3's
  meta learning rate) or 0.003, as for ProtoNet; the ridge penalty is learned (from 1). Nothing
  to choose at test time: the head is solved exactly.
* ``pretrained``: the pre-training of ``benchmarks.fair`` (same configurations, same seeds, same
  iterations: the same networks), scored with the parameter-efficient fine-tuning modes of
  ``mtlcode.learners.adapters``: LoRA (rank 4), BitFit and FiLM, each with a fresh head and three
  step sizes of 20 SGD steps (``TEST_OPTIONS``).

The declared comparisons (``PAIRS``) pair the new methods with v3's own on the same test tasks,
read from v3's parts (``--v3-out``): a v3 part is used only when its fingerprint holds the same
protocol, which builds the same test tasks (they are seeded by the split and the protocol's
sizes), and its split the same alphabets; the comparisons cover whatever cells v3 has finished.

    python -m benchmarks.trends               # the whole run (see --plan for its time)
    python -m benchmarks.trends --plan        # the parts and their expected seconds
    python -m benchmarks.trends --measure     # R2-D2's CPU-seconds per iteration
    python -m benchmarks.trends --quick       # tiny sizes, for the tests
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

import mtlcode
from benchmarks import fair, fair_report
from benchmarks.common import RESULTS, Partials, write_result
from benchmarks.fair import Methods, Part, Protocol
from mtlcode import R2D2
from mtlcode.learners.adapters import count_adapted
from mtlcode.learners.finetune import finetune
from mtlcode.models import Conv4
from mtlcode.tasks import NWayKShot

ADAPTERS = ("finetune_lora", "finetune_bitfit", "finetune_film")
FAMILIES = {"meta-learning": ("r2d2",), "transfer": ADAPTERS}
TRAININGS = ("r2d2", "pretrained")
# Two configurations each: R2-D2 Adam's rate (as ProtoNet in v3); the pre-training exactly v3's.
GRIDS: dict[str, list[dict[str, float]]] = {"r2d2": [{"lr": 1e-3}, {"lr": 3e-3}],
                                             "pretrained": fair.GRIDS["pretrained"]}
# Three test-time options per adapter mode: 20 SGD steps (as v3's fine-tuning of every weight, whose
# validation chose 0.1 in every cell) of 0.03, 0.1 or 0.3. R2-D2 has nothing to choose.
ADAPTER_STEPS = 20
TEST_OPTIONS: dict[str, list[Any]] = {"r2d2": [None],
                                      **{m: [(ADAPTER_STEPS, lr) for lr in (0.03, 0.1, 0.3)] for m in ADAPTERS}}
FINE_TUNING_MODES = {"finetune_lora": "lora", "finetune_bitfit": "bitfit", "finetune_film": "film"}
# CPU-seconds per training iteration, (training, shots, configuration): one thread, Conv4 with 32
# channels. R2-D2: meta-batch 4 of 5-way episodes with 15 queries per class, measured with --measure
# on 2026-12-07 (process CPU time of 20 and of 40 iterations after 3 of warm-up, while two other
# benchmarks shared the two cores: 0.075 and 0.080 on 1-shot episodes, 0.110 and 0.108 on 5-shot
# ones, their means here; v3's ANIL measured alongside at 10% over its recorded cost, ProtoNet 30%
# under it). The rate does not change the cost. The pre-training: v3's.
SECONDS_PER_ITERATION = {
    **{("r2d2", 1, c): 0.078 for c in (0, 1)}, **{("r2d2", 5, c): 0.109 for c in (0, 1)},
    **{("pretrained", 0, c): fair.SECONDS_PER_ITERATION["pretrained", 0, c] for c in (0, 1)},
}
# Declared in benchmarks/README.md before the first run: (a, b), difference a - b on the same tasks.
PAIRS = (("r2d2", "protonet"), ("r2d2", "finetune_linear_probe"), ("finetune_lora", "finetune_all"),
         ("finetune_film", "finetune_head"), ("finetune_bitfit", "finetune_head"))
V3_PARTNERS = ("protonet", "finetune_linear_probe", "finetune_all", "finetune_head")
# Parameters each fine-tuning method trains on a 5-way task (the fresh head included).
COUNTED = {"finetune_head": "head", "finetune_linear_probe": "linear_probe", "finetune_all": "all",
           **FINE_TUNING_MODES}


def r2d2_learner(part: Part, protocol: Protocol) -> R2D2:
    """R2-D2 on the body of v3's Conv4 (the same initial weights as v3's learners of that seed)."""
    torch.manual_seed(part.seed)
    learner = R2D2(Conv4(ways=5, hidden=protocol.hidden, image_size=protocol.image_size).body)
    _LAST["learner"] = learner  # its learned scalars go into the part (TrendsPartials.save)
    return learner


# Fine-tunings that diverged in this process since the last saved part, by (mode, step size).
DIVERGED: Counter[str] = Counter()
_LAST: dict[str, Any] = {}


def adapter_tuner(model: torch.nn.Module, mode: str, steps: int, lr: float):
    """``(support_x, support_y, query_x) -> logits`` as ``benchmarks.omniglot.fine_tuner``, but a
    fine-tuning whose loss diverges answers no better than a guess (all logits 0, as chapter 8
    counts it) and is counted in the part's ``diverged`` instead of stopping the run."""
    def adapt_and_predict(support_x: torch.Tensor, support_y: torch.Tensor, query_x: torch.Tensor) -> torch.Tensor:
        ways = int(support_y.max()) + 1
        try:
            tuned = finetune(model, support_x, support_y, steps, lr, mode=mode, ways=ways)
        except FloatingPointError:
            DIVERGED[f"{mode}/{lr}"] += 1
            return torch.zeros(len(query_x), ways, device=query_x.device)
        with torch.no_grad():
            return tuned(query_x)
    return adapt_and_predict


METHODS = Methods(TRAININGS, {"pretrained": ADAPTERS}, GRIDS, TEST_OPTIONS, FINE_TUNING_MODES, SECONDS_PER_ITERATION,
                  learner=r2d2_learner, tuner=adapter_tuner)


class TrendsPartials(Partials):
    """v3's parts, plus what only these trainings have: the fine-tunings that diverged while the
    part was scored and, for R2-D2, its learned scalars at the end of training."""

    def save(self, job: str, seed: int, part: dict[str, Any], own: dict[str, Any] | None = None) -> None:
        extra: dict[str, Any] = {"diverged": dict(DIVERGED)}
        DIVERGED.clear()
        learner = _LAST.pop("learner", None)
        if part["part"]["training"] == "r2d2" and learner is not None:
            extra["r2d2_scalars"] = {"lambda": learner.lam.item(), "alpha": learner.scalars["alpha"].item(),
                                     "beta": learner.scalars["beta"].item()}
        super().save(job, seed, {**part, **extra}, own)


def trends_partials(out: Path, protocol: Protocol) -> TrendsPartials:
    """This run's parts, with a fingerprint of their own (``version`` ``v3-trends``)."""
    return TrendsPartials(out, {"protocol": asdict(protocol), "version": "v3-trends", "grids": GRIDS,
                                "test_options": TEST_OPTIONS, "step_multiples": fair.STEP_MULTIPLES,
                                "checkpoints": fair.CHECKPOINTS}, problem=fair.curve_problem)


# Scoring CPU-seconds of a part (all four checkpoints), for --plan and to start the longest first:
# R2-D2 like ProtoNet (one forward pass per task). A pre-training's three adapter modes: each costs
# about what v3's fine-tuning of every weight does (20 SGD steps through the network per task; timed
# on 2026-12-07 at 0.05, 0.2 and 0.35 CPU-seconds per 1-, 5- and 10-shot task for every mode),
# most of v3's 390 s for its pre-training: about 1,000 s for the three.
SCORING_SECONDS = {("r2d2", 1): 5, ("r2d2", 5): 8, ("pretrained", 0): 1000}


def expected_seconds(part: Part, protocol: Protocol) -> float:
    return protocol.budget + SCORING_SECONDS.get((part.training, part.shots), 60) * protocol.budget / 60.0


# -- v3's parts, for the pairs -------------------------------------------------------------------

def v3_parts(v3_out: Path, protocol: Protocol, seeds: list[int], splits: list[int],
             alphabets: dict[int, Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """v3's finished final parts of the partners' trainings (its chosen configurations), and a note
    of what was found. A part is read only with v3's fingerprint for ``protocol`` (so the same
    test tasks) and the same alphabets as this run's part of its split (``alphabets``)."""
    partials, trainings = fair.v3_partials(v3_out, protocol), ("protonet", "pretrained")
    tuning = [q for q in fair.tuning_parts() if q.training in trainings]
    tuned = [partials.load(q.name, q.seed, own=fair.own(q, protocol)) for q in tuning]
    if any(r is None for r in tuned):  # no choice of v3's to pair with
        return [], {"v3_out": str(v3_out), "found": [], "missing": [f"{q.name}-seed{q.seed}" for q in tuning]}
    choice = {t: fair.chosen_config(t, tuned) for t in trainings}
    wanted = [q for q in fair.final_parts({**{t: 0 for t in fair.TRAININGS}, **choice}, tuple(seeds), tuple(splits))
              if q.training in trainings]
    found, missing, refused = [], [], []
    for q in wanted:
        loaded = partials.load(q.name, q.seed, own=fair.own(q, protocol))
        if loaded is None:
            missing.append(f"{q.name}-seed{q.seed}")
        elif q.split in alphabets and loaded["alphabets"] != alphabets[q.split]:
            refused.append(f"{q.name}-seed{q.seed}")
        else:
            found.append(loaded)
    return found, {"v3_out": str(v3_out), "chosen_configs": choice,
                   "found": sorted(f"{p['job']}-seed{p['seed']}" for p in found), "missing": missing,
                   "refused_other_alphabets": refused}


def same_pretraining(finals: list[dict[str, Any]], v3_out: Path, protocol: Protocol) -> dict[str, bool]:
    """Per pre-training part of this run: whether v3's part of the same configuration, seed and split
    ended with the same training loss (the same network: the pre-training does not depend on what is
    scored at its checkpoints). Parts v3 has not finished are left out."""
    partials, out = fair.v3_partials(v3_out, protocol), {}
    for part in finals:
        if part["part"]["training"] != "pretrained":
            continue
        q = Part(**part["part"])
        theirs = partials.load(q.name, q.seed, own=fair.own(q, protocol))
        if theirs is not None:
            out[f"{q.name}-seed{q.seed}"] = theirs["final_train_loss"] == part["final_train_loss"]
    return out


def task_digest(material: fair.Material) -> dict[str, str]:
    """A hash of every test benchmark's tasks (images and labels), so that other runs can check
    that they scored the same tasks."""
    out = {}
    for name, batch in material.test.items():
        h = hashlib.sha256()
        for t in (batch.support_x, batch.support_y, batch.query_x, batch.query_y):
            h.update(t.contiguous().numpy().tobytes())
        out[name] = h.hexdigest()[:16]
    return out


def adapted_parameters(protocol: Protocol) -> dict[str, int]:
    """Parameters each fine-tuning method trains on a 5-way task (``count_adapted``, the head included)."""
    model = Conv4(ways=5, hidden=protocol.hidden, image_size=protocol.image_size)
    return {method: count_adapted(model, mode) for method, mode in COUNTED.items()}


def report(finals: list[dict[str, Any]], tuned: list[dict[str, Any]], choice: dict[str, int],
           partners: list[dict[str, Any]], seeds: list[int], splits: list[int]) -> dict[str, Any]:
    """Rows of the new methods (fair_report's: at validation's choice, over seeds and over splits),
    the declared pairs with v3's methods (at the chosen points and at equal budgets), anytime curves,
    and the tuning record (validation only)."""
    both = finals + partners
    comparisons = [{"kind": "declared pair", **found} for benchmark in fair_report.BENCHMARKS for a, b in PAIRS
                   if (found := fair_report.paired(both, a, b, benchmark, seeds, splits)) is not None]
    curves = fair_report.anytime(both, seeds, methods=(*FAMILIES["meta-learning"], *ADAPTERS, *V3_PARTNERS))
    tuning = [{"training": r["part"]["training"], "config": r["part"]["config"],
               "best_val_1shot": max(e["val"] for p in r["curve"] for k, e in p["scores"].items() if k.endswith("/1")),
               "chosen": choice[r["part"]["training"]] == r["part"]["config"]} for r in tuned]
    r2d2 = {f"{p['job']}-seed{p['seed']}": p["r2d2_scalars"] for p in finals if "r2d2_scalars" in p}
    diverged = {f"{p['job']}-seed{p['seed']}": p["diverged"] for p in finals + tuned if p.get("diverged")}
    return {"rows": fair_report.score_rows(finals, seeds, splits, families=FAMILIES), "comparisons": comparisons,
            "anytime": curves, "equal_budgets": fair_report.equal_budgets(curves, PAIRS), "tuning": tuning,
            "chosen_configs": choice, "r2d2_scalars": r2d2, "diverged": diverged,
            "compute_seconds": round(sum(p["curve"][-1]["cpu_seconds"] + p["scoring_cpu_seconds"] for p in finals), 1)}


# -- measuring R2-D2's cost ----------------------------------------------------------------------

def measure(protocol: Protocol, root: str | None, iterations: int = 20) -> dict[str, float]:
    """CPU-seconds per iteration of R2-D2 on 1- and 5-shot episodes, ``iterations`` after 3 of warm-up;
    in the same process and the same way v3's ANIL (one step) and ProtoNet, whose recorded costs
    (``fair.SECONDS_PER_ITERATION``) say how much a busy machine inflates the measurement."""
    torch.set_num_threads(1)
    material = fair.material_of(protocol, 0, root)
    out = {}
    for part in (Part("r2d2", 0, 1, 0, 0), Part("r2d2", 0, 5, 0, 0), Part("anil", 0, 1, 0, 0),
                 Part("anil", 0, 5, 0, 0), Part("protonet", 0, 1, 0, 0)):
        build = r2d2_learner if part.training == "r2d2" else fair.meta_learner
        ways, queries, meta_batch = fair.episodes(part, protocol)
        sample = NWayKShot(material.train, ways, part.shots, queries).sample
        tasks = lambda g, sample=sample, size=meta_batch: sample(size, generator=g)  # noqa: E731
        mtlcode.meta_train(build(part, protocol), tasks, 3, progress=False)  # warm-up
        learner = build(part, protocol)
        began = time.process_time()
        mtlcode.meta_train(learner, tasks, iterations, progress=False)
        key = f"{part.training}/{part.shots}"
        out[key] = round((time.process_time() - began) / iterations, 4)
        if part.training != "r2d2":
            out[f"{key} recorded in v3"] = fair.SECONDS_PER_ITERATION[part.training, part.shots, 0]
    _LAST.clear()
    return out


# -- the run -------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    p = fair.v3_parser(__doc__.splitlines()[0], "omniglot_v3_trends.json")
    p.add_argument("--measure", action="store_true", help="print R2-D2's CPU-seconds per iteration, then exit")
    p.add_argument("--measure-iterations", type=int, default=20, help="iterations timed by --measure")
    p.add_argument("--v3-out", type=Path, default=RESULTS / "omniglot_v3.json",
                   help="v3's result file; its parts (<v3-out>.partial/) are the partners of the pairs")
    args = fair.parse_v3_arguments(p, argv)
    protocol = fair.QUICK if args.quick else Protocol()
    if args.measure:
        print(measure(protocol, args.root, args.measure_iterations))
        return None
    if args.plan:
        print(fair.plan(protocol, args, METHODS, expected_seconds))
        return None
    started = time.perf_counter()
    partials = trends_partials(args.out, protocol)
    fair.small_splits(fair.replace_protocol(protocol), args.root, 0, download=True)  # fetch once, before workers

    def run(parts: list[Part]) -> list[dict[str, Any]]:
        return fair.run_missing(parts, protocol, partials, args.root, args.workers, not args.no_progress,
                                methods=METHODS, cost=expected_seconds, desc="trends parts")

    tuned = run(fair.tuning_parts(METHODS))
    choice = {t: fair.chosen_config(t, tuned) for t in TRAININGS}
    if args.tuning_only:
        print("chosen on validation:", choice)
        return None
    finals = run(fair.final_parts(choice, tuple(args.seeds), tuple(args.splits), METHODS))
    alphabets = {p["part"]["split"]: p["alphabets"] for p in finals}
    partners, found = v3_parts(args.v3_out, protocol, args.seeds, args.splits, alphabets)
    result = report(finals, tuned, choice, partners, args.seeds, args.splits)
    digests = {split: task_digest(fair.material_of(protocol, split, args.root)) for split in sorted(alphabets)}
    written = write_result(args.out, result.pop("rows"), started, None, torch.device("cpu"), 0, "benchmarks.trends",
                           argv, **result, protocol=asdict(protocol), grids=GRIDS, test_options=TEST_OPTIONS,
                           seconds_per_iteration={f"{t}/{k}/{c}": v for (t, k, c), v in SECONDS_PER_ITERATION.items()},
                           adapted_parameters=adapted_parameters(protocol), pairs=[list(pair) for pair in PAIRS],
                           v3_partners=found, same_pretraining_as_v3=same_pretraining(finals, args.v3_out, protocol),
                           test_task_digests={str(k): v for k, v in digests.items()}, seeds=args.seeds,
                           splits=args.splits)
    fair_report.plot(written, args.out.with_suffix(".png"))
    if not args.no_progress:
        print(f"wrote {args.out}")
    return written


if __name__ == "__main__":
    main()
