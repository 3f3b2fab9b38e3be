"""Time one MAML meta-training step: mtlcode's strategies against a per-task loop, same run.

The reference is how learn2learn and higher compute a meta-gradient: for each task, clone the
parameters, adapt with ``torch.autograd.grad(create_graph=True)``, compute the query loss and call
``backward`` (``benchmarks/reference.py``). mtlcode runs the same maths either vectorised over
tasks with ``torch.func.vmap`` or as a loop of functional calls. Ratios (reference time / mtlcode
time) are what to read: seconds depend on the machine. On the CPU, ``reference_nchw`` times the
reference once more with ``Conv4``'s channels-last conversion taken out, to show what the memory
layout alone is worth.

    python -m benchmarks.speed            # full run, writes benchmarks/results/speed.json + .png
    python -m benchmarks.speed --quick    # tiny sizes, for the tests
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
from mtlcode import MAML
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


def time_step(step: Callable[[], None], device: torch.device, repeats: int, min_seconds: float) -> float:
    """Median seconds of ``step`` after one warm-up call; at least ``repeats`` calls."""
    step()
    synchronize(device)
    times: list[float] = []
    while len(times) < repeats or sum(times) < min_seconds:
        start = time.perf_counter()
        step()
        synchronize(device)
        times.append(time.perf_counter() - start)
        if len(times) >= 10 * repeats:
            break
    return statistics.median(times)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = parser(__doc__.splitlines()[0], "speed.json")
    p.add_argument("--quick", action="store_true", help="tiny sizes and one repeat (for tests)")
    p.add_argument("--repeats", type=int, default=5)
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

    jobs = []
    for problem in problems:
        for meta_batch in sorted(set(sweeps[problem]) | {headline[problem]}):
            for first_order in (False, True):
                if first_order and meta_batch != headline[problem]:
                    continue  # first order only at the headline size
                for strategy in strategies:
                    jobs.append((problem, meta_batch, first_order, strategy))
                if problem == "omniglot_conv4" and device.type == "cpu":
                    jobs.append((problem, meta_batch, first_order, "reference_nchw"))

    rows = []
    for problem, meta_batch, first_order, strategy in tqdm(jobs, desc="speed", disable=args.no_progress):
        row = {"problem": problem, "meta_batch": meta_batch, "order": "first" if first_order else "second",
               "method": strategy, "metric": "seconds_per_step"}
        generator = torch.Generator().manual_seed(args.seed)
        torch.manual_seed(args.seed)
        model, batch, options = problems[problem](meta_batch, device, generator)
        step = step_function(strategy, model, batch, first_order, **options)
        rows.append({**row, "mean": time_step(step, device, repeats, min_seconds)})

    # Ratios: reference time over each strategy's time, same problem, size and order.
    reference = {(r["problem"], r["meta_batch"], r["order"]): r["mean"] for r in rows if r["method"] == "reference"}
    for r in list(rows):
        if r["method"] != "reference" and r["mean"] and r["metric"] == "seconds_per_step":
            ref = reference[(r["problem"], r["meta_batch"], r["order"])]
            rows.append({k: r[k] for k in ("problem", "meta_batch", "order", "method")}
                        | {"metric": "speedup_vs_reference", "mean": ref / r["mean"]})

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

    result = write_result(args.out, rows, started, None, device, args.seed, "benchmarks.speed", argv,
                          summary=summary)
    plot(rows, args.plot or args.out.with_suffix(".png"))
    return result


def plot(rows: list[dict[str, Any]], path) -> None:
    """Step time against meta-batch size, one line per strategy, one panel per problem."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    problems = sorted({r["problem"] for r in rows})
    fig, axes = plt.subplots(1, len(problems), figsize=(5 * len(problems), 3.6), squeeze=False)
    for ax, problem in zip(axes[0], problems):
        for method in ["reference_nchw", "reference", "loop", "vmap", "vmap_chunk4", "vmap_chunk8"]:
            points = sorted((r["meta_batch"], r["mean"]) for r in rows if r["problem"] == problem
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
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
