"""Time one MAML meta-training step: mtlcode's strategies against a per-task loop, same run.

The reference is how learn2learn and higher compute a meta-gradient: for each task, clone the
parameters, adapt with ``torch.autograd.grad(create_graph=True)``, compute the query loss and call
``backward`` (``benchmarks/reference.py``). mtlcode runs the same maths either vectorised over
tasks with ``torch.func.vmap`` or as a loop of functional calls. Ratios (reference time / mtlcode
time) are what to read: seconds depend on the machine. The strategies of one setting are timed
round-robin, one call of each per round, so that other programs on a shared machine slow them
alike. On the CPU, ``reference_nchw`` times the reference once more with ``Conv4``'s channels-last
conversion taken out, to show what the memory layout alone is worth.

The rest of the family is timed on the same two workloads at the headline meta-batch sizes, each
learner's ``vmap`` strategy against its own ``loop`` (``speedup_vs_loop``: loop time / vmap time),
calling ``meta_backward`` as ``meta_train`` does: ANIL and Meta-SGD (second order), Reptile (one
inner step, first order by design; both strategies exist) and ProtoNet (Conv4's body only: it
classifies, so the sinusoid regression has a row that says why it is not timed). Their rows carry
``learner`` and methods named ``<learner>_<strategy>``; MAML's rows keep their names.

    python -m benchmarks.speed            # full run, writes benchmarks/results/speed.json + .png
    python -m benchmarks.speed --quick    # tiny sizes, for the tests

The full run takes about 19 minutes on one thread of a 2-core CPU (``OMP_NUM_THREADS=1``, as
recorded: on a shared machine two threads stall whenever another program holds a core).
"""

from __future__ import annotations

import functools
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

import mtlcode
from benchmarks.common import parser, synchronize, write_result
from benchmarks.reference import loop_meta_step
from mtlcode import ANIL, MAML, MetaSGD, ProtoNet, Reptile
from mtlcode.models import MLP, Conv4
from mtlcode.tasks import Sinusoid, TaskBatch


def sinusoid_problem(meta_batch: int, device: torch.device, generator: torch.Generator):
    """(a) the MAML paper's regression setting: 1-40-40-1 MLP, K=10, one inner step."""
    model = MLP([1, 40, 40, 1]).to(device)
    batch = Sinusoid().sample(meta_batch, 10, 10, generator=generator, device=device)
    return model, batch, dict(inner_lr=0.01, loss=F.mse_loss)


def omniglot_problem(meta_batch: int, device: torch.device, generator: torch.Generator, hidden: int = 64):
    """(b) Omniglot-shaped 5-way 1-shot tasks with 15 queries per class, Conv4, one inner step.

    Random images of the right shape: the step's cost does not depend on the pixels.
    """
    model = Conv4(ways=5, hidden=hidden).to(device)
    ways, shots, queries = 5, 1, 15
    batch = TaskBatch(
        torch.rand(meta_batch, ways * shots, 1, 28, 28, generator=generator),
        torch.arange(ways).repeat_interleave(shots).repeat(meta_batch, 1),
        torch.rand(meta_batch, ways * queries, 1, 28, 28, generator=generator),
        torch.arange(ways).repeat_interleave(queries).repeat(meta_batch, 1),
    ).to(device)
    return model, batch, dict(inner_lr=0.4, loss=F.cross_entropy)


class DefaultLayout(nn.Module):
    """``Conv4`` minus its channels-last conversion on the CPU: PyTorch's default NCHW layout.

    Timing the reference loop on it shows what the layout alone is worth.
    """

    def __init__(self, net: Conv4) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.head(nn.Sequential.forward(self.net.body, x))  # skips ConvBody's conversion


def step_function(strategy: str, model, batch: TaskBatch, first_order: bool, inner_lr: float,
                  loss) -> Callable[[], None]:
    """One full meta-gradient computation (forward and backward) with the given strategy."""
    if strategy == "reference_nchw":
        return step_function("reference", DefaultLayout(model), batch, first_order, inner_lr, loss)
    if strategy == "reference":
        def step() -> None:
            loop_meta_step(model, batch, inner_lr, 1, first_order, loss)
            model.zero_grad(set_to_none=True)
        return step
    vmap_chunk = {"vmap": None, "vmap_chunk4": 4, "vmap_chunk8": 8}
    maml = MAML(model, inner_lr, loss=loss, first_order=first_order,
                strategy="loop" if strategy == "loop" else "vmap", chunk_size=vmap_chunk.get(strategy))

    def step() -> None:
        maml.meta_backward(batch)  # what meta_train runs: the loop back-propagates task by task
        model.zero_grad(set_to_none=True)
    return step


# The rest of the family: the order each is timed in and a note for the JSON rows.
FAMILY = {"anil": "second", "metasgd": "second", "reptile": "first", "protonet": None}
NOTES = {
    "reptile": "inner_steps=1 as in MAML's rows; Reptile's inner step trains on support and query examples "
               "together, and meta_backward then scores the support adaptation, as meta_train runs it",
    "protonet": "ProtoNet on model.body: prototypes need no inner step, the step is a forward and a backward pass",
}
NOT_TIMED = {("protonet", "sinusoid_mlp"): "not applicable: ProtoNet classifies and the sinusoid tasks are regression"}


def family_learner(learner: str, model, inner_lr: float, loss, strategy: str = "auto"):
    """ANIL, Meta-SGD, Reptile or ProtoNet on ``model`` with the workload's inner step size and loss."""
    if learner == "anil":
        return ANIL(model, inner_lr, loss=loss, strategy=strategy)
    if learner == "metasgd":
        return MetaSGD(model, inner_lr, loss=loss, strategy=strategy)
    if learner == "reptile":
        return Reptile(model, inner_lr, inner_steps=1, loss=loss, strategy=strategy)
    if learner == "protonet":
        return ProtoNet(model.body, strategy=strategy)
    raise ValueError(f"unknown learner {learner!r}")


def family_step(learner: str, strategy: str, model, batch: TaskBatch, inner_lr: float, loss) -> Callable[[], None]:
    """One meta-gradient of ``learner`` with ``strategy`` ("loop" or "vmap"), as meta_train computes it."""
    algorithm = family_learner(learner, model, inner_lr, loss, strategy)
    trained = list(algorithm.parameters())  # Meta-SGD: the step sizes too

    def step() -> None:
        algorithm.meta_backward(batch)
        for p in trained:
            p.grad = None
    return step


def time_steps(steps: dict[str, Callable[[], None]], device: torch.device, repeats: int,
               min_seconds: float) -> dict[str, float]:
    """Median seconds of each step, timed round-robin after one warm-up call each.

    Each round calls every step once, so that a change in the machine's load (other programs on a
    shared machine) slows the steps of one setting alike and leaves their ratios alone. Rounds go
    on until there are ``repeats`` of them and every step has run ``min_seconds`` in total, or
    until ``10 * repeats`` rounds.
    """
    for step in steps.values():
        step()
        synchronize(device)
    times: dict[str, list[float]] = {name: [] for name in steps}
    while len(next(iter(times.values()))) < repeats or min(map(sum, times.values())) < min_seconds:
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            synchronize(device)
            times[name].append(time.perf_counter() - start)
        if len(times[name]) >= 10 * repeats:
            break
    return {name: statistics.median(t) for name, t in times.items()}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = parser(__doc__.splitlines()[0], "speed.json")
    p.add_argument("--quick", action="store_true", help="tiny sizes and one repeat (for tests)")
    p.add_argument("--repeats", type=int, default=3, help="timed calls per setting, at least")
    p.add_argument("--plot", default=None, help="figure path (default: next to --out, .png)")
    args = p.parse_args(argv)
    started = time.perf_counter()
    device = torch.device(args.device) if args.device else mtlcode.device()
    mtlcode.seed_everything(args.seed)

    problems = {"sinusoid_mlp": sinusoid_problem, "omniglot_conv4": omniglot_problem}
    headline = {"sinusoid_mlp": 25, "omniglot_conv4": 32}
    sweeps = {"sinusoid_mlp": [5, 10, 25, 50, 100], "omniglot_conv4": [4, 8, 16, 32]}
    strategies = ["reference", "loop", "vmap", "vmap_chunk4", "vmap_chunk8"]
    repeats, min_seconds = (1, 0.0) if args.quick else (args.repeats, 2.0)
    if args.quick:  # a smoke test of the whole script: tiny sizes, a narrow network
        headline = {"sinusoid_mlp": 4, "omniglot_conv4": 2}
        sweeps = {"sinusoid_mlp": [2, 4], "omniglot_conv4": [2]}
        problems["omniglot_conv4"] = functools.partial(omniglot_problem, hidden=4)

    # One setting: a problem, a meta-batch size and an order; its strategies are timed together.
    settings = []
    for problem in problems:
        for meta_batch in sorted(set(sweeps[problem]) | {headline[problem]}):
            for first_order in (False, True):
                if first_order and meta_batch != headline[problem]:
                    continue  # first order only at the headline size
                nchw = ["reference_nchw"] if problem == "omniglot_conv4" and device.type == "cpu" else []
                settings.append(("maml", problem, meta_batch, first_order, strategies + nchw))
    settings += [(learner, problem, headline[problem], FAMILY[learner] == "first", ["loop", "vmap"])
                 for problem in problems for learner in FAMILY if (learner, problem) not in NOT_TIMED]

    rows = []
    for learner, problem, meta_batch, first_order, methods in tqdm(settings, desc="speed",
                                                                  disable=args.no_progress):
        steps = {}
        for strategy in methods:
            generator = torch.Generator().manual_seed(args.seed)
            torch.manual_seed(args.seed)
            model, batch, options = problems[problem](meta_batch, device, generator)
            if learner == "maml":
                steps[strategy] = step_function(strategy, model, batch, first_order, **options)
            else:
                steps[f"{learner}_{strategy}"] = family_step(learner, strategy, model, batch, **options)
        order = ("first" if first_order else "second") if learner == "maml" else FAMILY[learner]
        for method, seconds in time_steps(steps, device, repeats, min_seconds).items():
            rows.append({"learner": learner, "problem": problem, "meta_batch": meta_batch, "order": order,
                         "method": method, "metric": "seconds_per_step", "mean": seconds})

    # Ratios: reference time over each strategy's time, same problem, size and order.
    keys = ("learner", "problem", "meta_batch", "order", "method")
    reference = {(r["problem"], r["meta_batch"], r["order"]): r["mean"] for r in rows if r["method"] == "reference"}
    for r in list(rows):
        if r["learner"] == "maml" and r["method"] != "reference" and r["mean"] and r["metric"] == "seconds_per_step":
            ref = reference[(r["problem"], r["meta_batch"], r["order"])]
            rows.append({k: r[k] for k in keys} | {"metric": "speedup_vs_reference", "mean": ref / r["mean"]})
    # Every learner's vmap against its own loop, same problem, size and order (MAML's "loop"/"vmap" included).
    seconds = {(r["learner"], r["problem"], r["meta_batch"], r["order"], r["method"]): r["mean"] for r in rows
               if r["metric"] == "seconds_per_step"}
    for (learner, problem, meta_batch, order, method), vmap_seconds in list(seconds.items()):
        prefix = "" if learner == "maml" else f"{learner}_"
        if method == f"{prefix}vmap" and vmap_seconds:
            loop_seconds = seconds[(learner, problem, meta_batch, order, f"{prefix}loop")]
            row = dict(zip(keys, (learner, problem, meta_batch, order, method)))
            rows.append(row | {"metric": "speedup_vs_loop", "mean": loop_seconds / vmap_seconds}
                        | ({"note": NOTES[learner]} if learner in NOTES else {}))
    for (learner, problem), note in NOT_TIMED.items():
        if problem in problems:
            rows.append({"learner": learner, "problem": problem, "meta_batch": headline[problem],
                         "order": FAMILY[learner], "method": f"{learner}_vmap", "metric": "speedup_vs_loop",
                         "mean": None, "note": note})

    auto = {}
    for name, problem in problems.items():
        model, _, options = problem(2, device, torch.Generator())
        auto[name] = MAML(model, **options).resolved_strategy()
    summary = {}
    for problem in problems:
        for order in ("second", "first"):
            key = (problem, headline[problem], order)
            chosen = auto[problem]
            ratio = next((r["mean"] for r in rows if r["metric"] == "speedup_vs_reference"
                          and (r["problem"], r["meta_batch"], r["order"]) == key and r["method"] == chosen), None)
            summary[f"{problem}/{order}"] = {"meta_batch": headline[problem], "auto_strategy": chosen,
                                             "speedup_vs_reference": ratio}
    for name, s in summary.items():
        ratio = f"{s['speedup_vs_reference']:.2f}x" if s["speedup_vs_reference"] else "n/a"
        print(f"{name:28s} meta-batch {s['meta_batch']:3d}  auto={s['auto_strategy']:5s}  "
              f"speed-up over the per-task loop: {ratio}")

    # The family at the headline sizes: which strategy "auto" picks, and what vmap gains over the loop.
    family = {}
    for problem in problems:
        for learner in ("maml", *FAMILY):
            order = "second" if learner == "maml" else FAMILY[learner]
            method = "vmap" if learner == "maml" else f"{learner}_vmap"
            row = next(r for r in rows if r["metric"] == "speedup_vs_loop" and r["learner"] == learner
                       and r["problem"] == problem and r["meta_batch"] == headline[problem] and r["method"] == method)
            if row["mean"] is None:
                continue
            model, _, options = problems[problem](2, device, torch.Generator())
            chosen = (MAML(model, **options) if learner == "maml"
                      else family_learner(learner, model, **options)).resolved_strategy()
            family[f"{learner}/{problem}"] = {"meta_batch": headline[problem], "order": order,
                                              "auto_strategy": chosen, "vmap_speedup_vs_loop": row["mean"]}
    for name, s in family.items():
        print(f"{name:28s} meta-batch {s['meta_batch']:3d}  auto={s['auto_strategy']:5s}  "
              f"vmap over the learner's loop: {s['vmap_speedup_vs_loop']:.2f}x")

    result = write_result(args.out, rows, started, None, device, args.seed, "benchmarks.speed", argv,
                          summary=summary, family=family)
    plot(rows, args.plot or args.out.with_suffix(".png"))
    return result


def plot(rows: list[dict[str, Any]], path) -> None:
    """MAML's step time against meta-batch size, one line per strategy, one panel per problem; then
    a panel of every learner's vmap speed-up over its own loop at the headline size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    problems = sorted({r["problem"] for r in rows})
    fig, axes = plt.subplots(1, len(problems) + 1, figsize=(5 * (len(problems) + 1), 3.6), squeeze=False)
    for ax, problem in zip(axes[0], problems):
        for method in ["reference_nchw", "reference", "loop", "vmap", "vmap_chunk4", "vmap_chunk8"]:
            points = sorted((r["meta_batch"], r["mean"]) for r in rows if r["problem"] == problem
                            and r.get("learner", "maml") == "maml"
                            and r["method"] == method and r["order"] == "second"
                            and r["metric"] == "seconds_per_step" and r["mean"])
            if points:
                ax.plot(*zip(*points), "o-", label=method)
        ax.set_title(f"{problem} (second order)")
        ax.set_xlabel("meta-batch size (tasks)")
        ax.set_ylabel("seconds per meta-step")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.legend(fontsize="small")
    ax = axes[0][-1]
    headline = {r["problem"]: r["meta_batch"] for r in rows if r["metric"] == "speedup_vs_loop"
                and r.get("learner", "maml") != "maml"}
    learners = list(dict.fromkeys(r.get("learner", "maml") for r in rows if r["metric"] == "speedup_vs_loop"))
    width = 0.8 / max(len(problems), 1)
    for i, problem in enumerate(problems):
        ratios = {r.get("learner", "maml"): r["mean"] for r in rows if r["metric"] == "speedup_vs_loop"
                  and r["problem"] == problem and r["meta_batch"] == headline.get(problem) and r["mean"]
                  and r["method"].endswith("vmap") and (r.get("learner", "maml") != "maml" or r["order"] == "second")}
        positions = [j + (i - (len(problems) - 1) / 2) * width for j, name in enumerate(learners) if name in ratios]
        bars = ax.bar(positions, [ratios[name] for name in learners if name in ratios], width,
                      label=f"{problem}, meta-batch {headline.get(problem)}")
        ax.bar_label(bars, fmt="%.2g", fontsize="x-small")
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(learners)), learners)
    ax.set_yscale("log")
    low, high = ax.get_ylim()
    ax.set_ylim(low, high * 4)  # room for the legend above the bars
    ax.yaxis.set_major_locator(matplotlib.ticker.LogLocator(base=2))
    ax.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%gx"))
    ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_ylabel("loop time / vmap time (> 1: vmap faster)")
    ax.set_title("vmap against each learner's own loop")
    ax.legend(fontsize="small", loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
