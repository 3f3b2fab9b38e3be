"""What mtlcode costs besides the maths: the time ``import mtlcode`` takes, and the peak memory of
one Conv4 meta-step against the per-task reference.

Every torchrun worker imports the package, so its import time is paid once per process; the
target is at most 1.3x ``import torch``, measured as fresh interpreters alternating between the
two. Peak memory: one second-order MAML step on Omniglot-shaped 5-way 1-shot tasks with 15
queries per class and a meta-batch of 32, each method in a fresh process. On the CPU it is the
peak resident memory during the step above the resident memory before it (sampled every 0.2 ms,
with glibc told to return freed blocks at once: see ``EXACT_MALLOC``);
on CUDA, ``torch.cuda.max_memory_allocated``. The target: mtlcode's loop (what ``meta_train``
runs on the CPU) no higher than the reference.

    python -m benchmarks.footprint           # writes benchmarks/results/footprint.json
    python -m benchmarks.footprint --quick   # tiny sizes, for the tests
"""

from __future__ import annotations

import multiprocessing
import os
import statistics
import subprocess
import sys
import threading
import time
from typing import Any

import torch

from benchmarks.common import parser, write_result

IMPORT_TARGET = 1.3
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def import_seconds(module: str) -> float:
    """Wall time of ``python -c "import MODULE"`` in a fresh interpreter, start-up excluded."""
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT,
                          env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    return float(done.stdout.strip())


def _resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak_during(step, device: torch.device) -> int:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        step()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - before
    before, peak, running = _resident_bytes(), [0], [True]

    def sample() -> None:
        while running[0]:
            peak[0] = max(peak[0], _resident_bytes())
            time.sleep(0.0002)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        step()
    finally:
        running[0] = False
        sampler.join()
    return max(peak[0], _resident_bytes()) - before


def _measure_memory(method: str, meta_batch: int, hidden: int, device_name: str, seed: int, queue) -> None:
    """In a fresh process: build the problem, warm up, then the peak of one more step."""
    import gc

    torch.set_num_threads(1)
    from benchmarks.speed import omniglot_problem, step_function

    device = torch.device(device_name)
    torch.manual_seed(seed)
    model, batch, options = omniglot_problem(meta_batch, device, torch.Generator().manual_seed(seed), hidden=hidden)
    step = step_function(method, model, batch, False, **options)
    step()  # warm-up: one-off allocations (kernels, caches) are not the step's
    gc.collect()
    queue.put(_peak_during(step, device))


# glibc keeps freed memory for reuse, so resident memory tracks what was once allocated, not what
# is live, and varies by tens of MB between identical runs. With every block of 64 kB or more
# mapped on its own and unmapped when freed, it tracks the live tensors (measured: the same step
# within 1 MB from run to run).
EXACT_MALLOC = {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}


def peak_memory(method: str, meta_batch: int, hidden: int, device: torch.device, seed: int) -> int:
    """Peak bytes of one meta-step of ``method`` (see the module docstring), in a fresh process."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_measure_memory, args=(method, meta_batch, hidden, str(device), seed, queue))
    saved = {k: os.environ.get(k) for k in EXACT_MALLOC}
    os.environ.update(EXACT_MALLOC)  # the child reads them when it starts
    try:
        process.start()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    peak = queue.get(timeout=600)
    process.join()
    return peak


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = parser(__doc__.splitlines()[0], "footprint.json")
    p.add_argument("--quick", action="store_true", help="tiny sizes and few repeats (for tests)")
    p.add_argument("--repeats", type=int, default=15, help="fresh interpreters per module, and processes per method")
    args = p.parse_args(argv)
    started = time.perf_counter()
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    repeats = 2 if args.quick else args.repeats
    meta_batch, hidden = (2, 4) if args.quick else (32, 64)

    rows: list[dict[str, Any]] = []
    times: dict[str, list[float]] = {"torch": [], "mtlcode": []}
    for _ in range(repeats):  # alternate, so that a busy moment of the machine hits both alike
        for module in times:
            times[module].append(import_seconds(module))
    for module, seconds in times.items():
        rows.append({"method": f"import {module}", "metric": "import_seconds", "mean": statistics.median(seconds),
                     "min": min(seconds), "max": max(seconds), "repeats": repeats})
    import_ratio = statistics.median(times["mtlcode"]) / statistics.median(times["torch"])
    rows.append({"method": "import mtlcode", "metric": "ratio_to_import_torch", "mean": import_ratio})

    peaks: dict[str, float] = {}
    for method in ("reference", "loop", "vmap"):
        measured = [peak_memory(method, meta_batch, hidden, device, args.seed) for _ in range(max(1, repeats // 5))]
        peaks[method] = statistics.median(measured)
        rows.append({"method": method, "problem": "omniglot_conv4", "meta_batch": meta_batch, "order": "second",
                     "metric": "peak_memory_mb", "mean": peaks[method] / 2**20, "repeats": len(measured)})
    for method in ("loop", "vmap"):
        rows.append({"method": method, "problem": "omniglot_conv4", "meta_batch": meta_batch, "order": "second",
                     "metric": "memory_ratio_to_reference", "mean": peaks[method] / peaks["reference"]})
    summary = {"import_ratio": import_ratio, "import_target": IMPORT_TARGET,
               "loop_memory_ratio": peaks["loop"] / peaks["reference"]}
    return write_result(args.out, rows, started, None, device, args.seed, "benchmarks.footprint", argv,
                        summary=summary)


if __name__ == "__main__":
    main()
