"""Meta-steps per second of data-parallel meta-training with 1 and 2 processes under torchrun.

For each workload the script launches ``torchrun --standalone --nproc_per_node=N`` for N = 1 and
N = 2 on the same global meta-batch; each run calls ``mtlcode.meta_train`` (which splits the
meta-batch across the processes and all-reduces the meta-gradient) and times whole meta-steps
after a warm-up, excluding start-up. Every process runs one OpenMP thread, so N processes use N
cores: the ratio says how well the work splits, on this machine and at its current load.

    python -m benchmarks.distributed            # full run, writes benchmarks/results/distributed.json
    python -m benchmarks.distributed --quick    # tiny sizes (for the tests)

Workloads: ``sinusoid_mlp`` (the MAML paper's 1-40-40-1 regressor, little compute per task, so
communication and Python overhead show) and ``omniglot_conv4`` (Conv4 on 5-way 1-shot tasks with
15 queries per class, random 28x28 images: the cost of a step does not depend on the pixels).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]

# name -> (meta-batch, warm-up steps, timed steps per window, windows); --quick shrinks them.
WORKLOADS = {"sinusoid_mlp": (32, 20, 150, 3), "omniglot_conv4": (8, 2, 8, 2)}
QUICK = {"sinusoid_mlp": (4, 1, 3, 1)}


# -- the worker: one process of a torchrun job -------------------------------------------------

def _problem(workload: str, meta_batch: int, shards: int, quick: bool):
    """(model, sample_tasks, MAML options) for a workload; ``sample_tasks`` draws one shard."""
    from mtlcode.models import MLP, Conv4
    from mtlcode.tasks import Sinusoid, TaskBatch

    per_shard = meta_batch // shards
    if workload == "sinusoid_mlp":
        family = Sinusoid()
        return (MLP([1, 40, 40, 1]), lambda g: family.sample(per_shard, 10, 10, generator=g),
                dict(inner_lr=0.01, loss=F.mse_loss))
    ways, shots, queries = 5, 1, 15

    def sample(g: torch.Generator) -> TaskBatch:
        labels = torch.arange(ways)
        return TaskBatch(torch.rand(per_shard, ways * shots, 1, 28, 28, generator=g),
                         labels.repeat_interleave(shots).repeat(per_shard, 1),
                         torch.rand(per_shard, ways * queries, 1, 28, 28, generator=g),
                         labels.repeat_interleave(queries).repeat(per_shard, 1))
    return Conv4(ways=ways, hidden=8 if quick else 64), sample, dict(inner_lr=0.4, loss=F.cross_entropy)


def worker(args: argparse.Namespace) -> None:
    """Time ``meta_train`` in this process of a torchrun job; rank 0 writes the timings."""
    from mtlcode import MAML, distributed, meta_train, seed_everything

    device = distributed.init(args.device)
    try:
        world = distributed.world_size()
        seed_everything(args.seed)
        model, sample_tasks, options = _problem(args.workload, args.meta_batch, world, args.quick)
        maml = MAML(model.to(device), inner_steps=1, **options)

        def run(steps: int) -> float:
            distributed.barrier()
            start = time.perf_counter()
            meta_train(maml, sample_tasks, steps, seed=args.seed, device=device, progress=False)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            distributed.barrier()  # the step rate of the job is the rate of its slowest rank
            return time.perf_counter() - start

        run(args.warmup)
        seconds = [run(args.steps) for _ in range(args.windows)]
        if distributed.is_main_process():
            Path(args.result).write_text(json.dumps({
                "steps_per_second": [args.steps / s for s in seconds], "world_size": world,
                "backend": torch.distributed.get_backend() if distributed.is_distributed() else None,
                "device": str(device), "threads": torch.get_num_threads()}))
    finally:
        distributed.cleanup()


# -- the driver: launches the torchrun jobs and writes the result ------------------------------

def launch(workload: str, processes: int, sizes: tuple[int, int, int, int], args: argparse.Namespace) -> dict[str, Any]:
    """Run one torchrun job of ``processes`` workers; returns rank 0's timings."""
    meta_batch, warmup, steps, windows = sizes
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "timing.json"
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
                   "-m", "benchmarks.distributed", "--worker", "--workload", workload, "--meta-batch", str(meta_batch),
                   "--warmup", str(warmup), "--steps", str(steps), "--windows", str(windows),
                   "--seed", str(args.seed), "--result", str(result)]
        if args.device:
            command += ["--device", args.device]
        if args.quick:
            command.append("--quick")
        # One thread per process: N processes then use N cores, and the comparison is fair.
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}")
        return json.loads(result.read_text())


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from benchmarks.common import parser, write_result

    p = parser(__doc__.splitlines()[0], "distributed.json")
    p.add_argument("--quick", action="store_true", help="tiny sizes, one window (for tests)")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--workload", choices=sorted(WORKLOADS), help=argparse.SUPPRESS)
    p.add_argument("--meta-batch", type=int, help=argparse.SUPPRESS)
    p.add_argument("--warmup", type=int, help=argparse.SUPPRESS)
    p.add_argument("--steps", type=int, help=argparse.SUPPRESS)
    p.add_argument("--windows", type=int, help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(args)
        return {}

    started = time.perf_counter()
    workloads = QUICK if args.quick else WORKLOADS
    jobs = [(w, n) for w in workloads for n in (1, 2)]
    rows, load = [], {}
    for workload, processes in tqdm(jobs, desc="distributed", disable=args.no_progress):
        load_before = os.getloadavg()[0]
        timing = launch(workload, processes, workloads[workload], args)
        values = timing["steps_per_second"]
        rows.append({"workload": workload, "meta_batch": workloads[workload][0],
                     "method": "1_process" if processes == 1 else f"{processes}_processes",
                     "metric": "meta_steps_per_second", "mean": statistics.mean(values),
                     "std": statistics.stdev(values) if len(values) > 1 else None, "values": values,
                     "steps_per_window": workloads[workload][2], "backend": timing["backend"],
                     "device": timing["device"], "threads_per_process": timing["threads"]})
        load[f"{workload}/{processes}"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    for workload in workloads:
        one, two = (next(r["mean"] for r in rows if r["workload"] == workload and r["method"] == m)
                    for m in ("1_process", "2_processes"))
        rows.append({"workload": workload, "meta_batch": workloads[workload][0], "method": "2_processes",
                     "metric": "speedup_vs_1_process", "mean": two / one})
        print(f"{workload:16s} meta-batch {workloads[workload][0]:3d}: {one:8.2f} steps/s with 1 process, "
              f"{two:8.2f} with 2 ({two / one:.2f}x)")
    device = torch.device(rows[0]["device"])
    return write_result(args.out, rows, started, None, device, args.seed, "benchmarks.distributed", argv,
                        cpu_cores=os.cpu_count(), load_average_1min_before_after=load,
                        note="Each process runs one thread; N processes use N cores. On a machine with "
                             "2 cores, 2 processes can at best double the rate. When other jobs load the "
                             "cores (see load_average_1min_before_after), the scheduler shares them per "
                             "process, so 2 processes also win a larger share of the CPU than 1 does: "
                             "read a speed-up under load as an upper bound.")


if __name__ == "__main__":
    main()
