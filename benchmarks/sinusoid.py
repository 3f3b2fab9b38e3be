"""Sinusoid regression with the MAML paper's protocol: MAML, first-order MAML, a pretrained baseline.

The protocol of Finn et al. (2017, section 5.1): tasks ``y = A sin(x - phase)`` with A in
[0.1, 5], phase in [0, pi], x in [-5, 5]; a 1-40-40-1 ReLU network; inner step size 0.01, one
inner step; Adam with 1e-3; meta-batches of 25 tasks; 70,000 iterations; trained with K=10.
The baseline pretrains one network on all tasks at once (regressing pooled points of random
sinusoids), then fine-tunes it at test time with plain gradient descent on the K points, its step
size tuned on separate validation tasks.

All methods are scored on the same 600 fresh tasks: MSE on 100 query points after 1, 5 and 10
gradient steps on K = 5, 10, 20 support points (mean with its 95% confidence interval over tasks,
the median, and how many tasks diverged: with a fixed step size, a few sharply curved tasks can
blow up, and one of them is enough to dominate a mean).

    python -m benchmarks.sinusoid           # full protocol, ~4-5 minutes on 2 CPU cores
    python -m benchmarks.sinusoid --quick   # tiny sizes, for the tests

The three trainings run in parallel worker processes (``--workers``, one thread each): the
network is so small that one thread per run is as fast as several.
"""

from __future__ import annotations

import math
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

import mtlcode
from benchmarks.common import parser, write_result
from mtlcode import MAML
from mtlcode.finetune import pretrain
from mtlcode.models import MLP
from mtlcode.tasks import Sinusoid, SinusoidBatch

METHODS = ("maml", "fomaml", "pretrained")
# Finn et al. (2017), K=5, MSE after 1 / 5 / 10 gradient steps (figure 3, as quoted in issue 4).
PUBLISHED = {"maml": {1: 0.67, 5: 0.38, 10: 0.35}, "pretrained": {1: 2.41, 5: 2.23, 10: 2.19}}
BASELINE_STEP_SIZES = (0.001, 0.003, 0.01, 0.03, 0.1)
DIVERGED_MSE = 100.0


@dataclass(frozen=True)
class Protocol:
    """Sizes of one run; the defaults are the paper's."""

    iterations: int = 70_000
    meta_batch: int = 25
    train_shots: int = 10
    inner_lr: float = 0.01
    meta_lr: float = 1e-3
    test_tasks: int = 600
    val_tasks: int = 100
    queries: int = 100
    shots: tuple[int, ...] = (5, 10, 20)
    steps: tuple[int, ...] = (1, 5, 10)


QUICK = Protocol(iterations=20, test_tasks=12, val_tasks=6, queries=10)


def network(seed: int) -> MLP:
    torch.manual_seed(seed)
    return MLP([1, 40, 40, 1])


def train(method: str, protocol: Protocol, seed: int, progress: bool = False) -> dict[str, Any]:
    """Train one method from the seeded initialisation; returns its weights and training time.

    MAML and first-order MAML meta-train with K=10 support and 10 query points per task. The
    baseline sees the same number of points per step (25 tasks x 20 points, pooled) and fits
    them directly: it learns the average sinusoid, which is close to zero everywhere.
    """
    torch.set_num_threads(1)
    started = time.perf_counter()
    model = network(seed)
    sinusoid = Sinusoid()
    shots, batch = protocol.train_shots, protocol.meta_batch
    if method in ("maml", "fomaml"):
        maml = MAML(model, protocol.inner_lr, first_order=method == "fomaml", loss=F.mse_loss)
        history = mtlcode.meta_train(maml, lambda g: sinusoid.sample(batch, shots, shots, generator=g),
                                     protocol.iterations, protocol.meta_lr, seed=seed, progress=progress)
        final_loss = sum(history["loss"][-100:]) / len(history["loss"][-100:])
    elif method == "pretrained":
        def pooled_points(generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
            tasks = sinusoid.sample(batch, 2 * shots, 1, generator=generator)
            return tasks.support_x.reshape(-1, 1), tasks.support_y.reshape(-1, 1)

        losses = pretrain(model, pooled_points, protocol.iterations, protocol.meta_lr, loss=F.mse_loss,
                          generator=torch.Generator().manual_seed(seed), progress=progress)
        final_loss = sum(losses[-100:]) / len(losses[-100:])
    else:
        raise ValueError(f"unknown method {method!r}; choose from {METHODS}")
    return {"method": method, "state": model.state_dict(), "train_seconds": time.perf_counter() - started,
            "final_train_loss": final_loss}


def mse_after(model: MLP, step_size: float, tasks: SinusoidBatch, shots: int,
              steps: int) -> mtlcode.evaluation.Evaluation:
    """Query MSE after ``steps`` full-batch gradient steps on the first ``shots`` support points.

    Fine-tuning every weight with plain gradient descent is exactly MAML's inner loop, so both
    MAML and the baseline are adapted by ``MAML.adapt`` (vectorised over the tasks).
    """
    adapter = MAML(model, step_size, inner_steps=steps, loss=F.mse_loss)
    return mtlcode.evaluate(adapter, _first_shots(tasks, shots), steps=steps)


def _first_shots(tasks: SinusoidBatch, shots: int) -> SinusoidBatch:
    return SinusoidBatch(tasks.support_x[:, :shots], tasks.support_y[:, :shots], tasks.query_x, tasks.query_y,
                         tasks.amplitude, tasks.phase)


def summary(score: mtlcode.evaluation.Evaluation) -> dict[str, Any]:
    """Mean and 95% CI over tasks, plus the median and the number of tasks where adaptation diverged.

    Gradient descent with a fixed step size can blow up on a task whose loss is too sharply
    curved for it; a single such task dominates the mean. Diverged: a query MSE above
    ``DIVERGED_MSE`` (predicting zero everywhere scores at most 12.5) or not finite. A mean that
    is not finite is written as null.
    """
    values = torch.tensor(score.values, dtype=torch.float64)
    finite = math.isfinite(score.mean) and math.isfinite(score.ci95)
    return {"mean": score.mean if finite else None, "ci95": score.ci95 if finite else None,
            "median": values.nanmedian().item(), "diverged": int((~(values <= DIVERGED_MSE)).sum())}


def tune_step_size(model: MLP, protocol: Protocol, shots: int, seed: int) -> float:
    """The baseline's test-time step size for K=``shots``: the best of a grid on validation tasks."""
    generator = torch.Generator().manual_seed(seed)
    tasks = Sinusoid().sample(protocol.val_tasks, shots, protocol.queries, generator=generator)
    scores = {lr: sum(mse_after(model, lr, tasks, shots, s).mean for s in protocol.steps) for lr in BASELINE_STEP_SIZES}
    scores = {lr: score for lr, score in scores.items() if math.isfinite(score)}  # diverged: not a candidate
    return min(scores, key=scores.get)


def plot(rows: list[dict[str, Any]], protocol: Protocol, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(protocol.shots), figsize=(4 * len(protocol.shots), 3.4), sharey=True)
    for ax, shots in zip(axes, protocol.shots):
        for method in METHODS:
            mine = [r for r in rows if r["method"] == method and r["K"] == shots]
            ax.plot([r["steps"] for r in mine], [r["median"] for r in mine], marker="o", label=method)
            if shots == 5 and method in PUBLISHED:
                ax.plot(list(PUBLISHED[method]), list(PUBLISHED[method].values()), "x--", color="grey",
                        label=f"{method} (paper, mean)")
        ax.set(title=f"K = {shots}", xlabel="gradient steps at test time", yscale="log")
    axes[0].set_ylabel("median query MSE over tasks")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = parser(__doc__.splitlines()[0], "sinusoid.json")
    p.add_argument("--quick", action="store_true", help="tiny sizes (for tests)")
    p.add_argument("--iterations", type=int, default=None, help="override the number of training steps")
    p.add_argument("--workers", type=int, default=min(3, os.cpu_count() or 1),
                   help="train the methods in this many processes (1: in this process)")
    args = p.parse_args(argv)
    started = time.perf_counter()
    protocol = QUICK if args.quick else Protocol()
    if args.iterations is not None:
        if args.iterations < 1:
            p.error("--iterations must be at least 1")
        protocol = Protocol(**{**asdict(protocol), "iterations": args.iterations})
    device = torch.device(args.device) if args.device else torch.device("cpu")
    mtlcode.seed_everything(args.seed)

    # Train every method from the same initialisation (seeded) in parallel worker processes.
    jobs = [(method, protocol, args.seed, not args.no_progress and args.workers == 1) for method in METHODS]
    if args.workers > 1:
        with ProcessPoolExecutor(args.workers, mp_context=get_context("spawn")) as pool:
            trained = list(pool.map(train, *zip(*jobs)))
    else:
        trained = [train(*job) for job in jobs]

    test = Sinusoid().sample(protocol.test_tasks, max(protocol.shots), protocol.queries,
                             generator=torch.Generator().manual_seed(args.seed + 1))
    rows, details = [], {}
    for result in trained:
        method = result["method"]
        model = network(args.seed)
        model.load_state_dict(result["state"])
        # MAML adapts with the step size it was meta-trained for; the baseline's is tuned per K.
        step_sizes = {shots: protocol.inner_lr if method != "pretrained" else
                      tune_step_size(model, protocol, shots, args.seed + 2) for shots in protocol.shots}
        details[method] = {"train_seconds": round(result["train_seconds"], 1), "test_step_size": step_sizes,
                           "final_train_loss": result["final_train_loss"]}
        for shots, step_size in step_sizes.items():
            for steps in protocol.steps:
                score = mse_after(model.to(device), step_size, test.to(device), shots, steps)
                rows.append({"method": method, "K": shots, "steps": steps, "metric": "mse", **summary(score)})
    published = [{"method": m, "K": 5, "steps": s, "metric": "mse", "mean": v, "source": "finn2017maml"}
                 for m, by_steps in PUBLISHED.items() for s, v in by_steps.items()]
    result = write_result(args.out, rows, started, 300.0, device, args.seed, "benchmarks.sinusoid", argv,
                          protocol=asdict(protocol), methods=details, published=published)
    plot(rows, protocol, args.out.with_suffix(".png"))
    if not args.no_progress:
        for r in rows:
            mean = f"{r['mean']:.3f} ± {r['ci95']:.3f}" if r["mean"] is not None else "not finite"
            print(f"{r['method']:>10}  K={r['K']:<3} steps={r['steps']:<3} MSE {mean}, median {r['median']:.3f}, "
                  f"{r['diverged']} diverged")
        print(f"wall time {result['wall_seconds']:.0f} s (budget {result['budget_seconds']:.0f} s) -> {args.out}")
    return result


if __name__ == "__main__":
    main()
