"""Shared plumbing of the benchmark scripts: arguments, timing, the JSON result files, and (for the
multi-seed benchmarks) statistics over seeds, resumable parts and parallel workers."""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import torch

RESULTS = Path(__file__).resolve().parent / "results"


def parser(description: str, out_name: str) -> argparse.ArgumentParser:
    """An argument parser with the options every benchmark takes."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None, help="cpu, cuda, mps (default: the best available)")
    p.add_argument("--out", type=Path, default=RESULTS / out_name, help="where to write the JSON result")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return p


def write_result(path: Path, rows: list[dict[str, Any]], started: float, budget_seconds: float | None,
                 device: torch.device, seed: int, script: str, argv: list[str] | None, **extra: Any) -> dict[str, Any]:
    """Write the standard result object (see benchmarks/README.md) atomically and return it.

    ``script`` is the module name (``benchmarks.speed``); ``argv`` its arguments (None: the
    command line), so the recorded command reproduces the run.
    """
    argv = sys.argv[1:] if argv is None else argv
    result = {
        "command": " ".join(shlex.quote(a) for a in ["python", "-m", script, *argv]),
        "seed": seed,
        "torch": torch.__version__,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
        or platform.machine(),
        "threads": torch.get_num_threads(),
        "wall_seconds": round(time.perf_counter() - started, 2),
        "budget_seconds": budget_seconds,
        **extra,
        "rows": rows,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, path)
    return result


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# -- multi-seed benchmarks: statistics over seeds, resumable parts, parallel workers ------------

def write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as JSON atomically: a temporary file beside ``path``, then ``os.replace``.

    A run killed mid-write leaves the old file (or none), never half of one.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1) + "\n")
    os.replace(tmp, path)


def over_seeds(values: Sequence[float | None]) -> dict[str, Any]:
    """Mean over seeds with the half-width of its 95% t-interval (``seeds - 1`` degrees of freedom).

    A seed whose value is missing or not finite makes both None (a mean over the other seeds
    would hide it); one seed gives no interval (``ci95`` None).
    """
    from mtlcode.evaluation import ci95_half_width

    finite = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not values or len(finite) < len(values):
        return {"mean": None, "ci95": None, "seeds": len(values)}
    interval = ci95_half_width(finite) if len(finite) > 1 else None
    return {"mean": sum(finite) / len(finite), "ci95": interval, "seeds": len(finite)}


class Partials:
    """The finished parts (one per job and training seed) of a benchmark, so that a rerun resumes.

    Part ``(job, seed)`` lives in ``<out>.partial/<job>-seed<seed>.json`` beside the result
    file ``<out>.json``, written atomically when the part ends. Each part carries the run's
    ``fingerprint`` (the protocol and whatever else decides its numbers); a part with another
    fingerprint is stale (written with other sizes) and is recomputed, never mixed in.
    """

    def __init__(self, out: Path, fingerprint: dict[str, Any], required: tuple[str, ...] = (),
                 row_keys: tuple[str, ...] = (), problem: Callable[[dict[str, Any]], str] | None = None) -> None:
        """``required``: keys (``"info.seconds"`` for one inside ``info``) that every part must hold,
        beyond its rows; ``row_keys``: keys every row must hold. A part without one is refused by
        name, not a ``KeyError`` when the parts are combined. ``problem(part)`` says why a part
        cannot be a result ("" when it can); default :func:`part_problem`, for parts with ``rows``."""
        self.folder = out.with_suffix(".partial")
        self.fingerprint = json.loads(json.dumps(fingerprint))  # tuples -> lists, as read back
        self.required, self.row_keys = tuple(required), tuple(row_keys)
        self.problem = problem or part_problem

    def path(self, job: str, seed: int) -> Path:
        return self.folder / f"{job}-seed{seed}.json"

    def _fingerprint(self, own: dict[str, Any] | None) -> dict[str, Any]:
        return {**self.fingerprint, **json.loads(json.dumps(own or {}))}

    def load(self, job: str, seed: int, own: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """The finished part, or None when it is missing, unreadable or stale.

        ``own`` holds what only this job's numbers depend on (say its number of iterations).
        """
        path = self.path(job, seed)
        try:
            part = json.loads(path.read_text())
        except (OSError, ValueError):  # missing or cut short: computed (again)
            return None
        if not isinstance(part, dict) or part.get("fingerprint") != self._fingerprint(own):
            return None
        problem = self.problem(part)
        if not problem:
            problem = _missing(part, self.required)
        if not problem:
            problem = next((f"a row without {key!r}: {str(row)[:80]}" for row in part.get("rows", [])
                            for key in self.row_keys if key not in row), "")
        if not problem and (part.get("job"), part.get("seed")) != (job, seed):
            problem = (f"holds job {part.get('job')!r} seed {part.get('seed')!r} (a file copied or renamed?), "
                       f"not {job!r} seed {seed}")
        if problem:
            raise ValueError(f"{path} has the right fingerprint but {problem}; it is not used. Delete it to "
                             "recompute that part")
        return part

    def save(self, job: str, seed: int, part: dict[str, Any], own: dict[str, Any] | None = None) -> None:
        write_json(self.path(job, seed), {**part, "job": job, "seed": seed, "fingerprint": self._fingerprint(own)})


def _missing(part: dict[str, Any], required: tuple[str, ...]) -> str:
    for key in required:
        value: Any = part
        for name in key.split("."):
            if not isinstance(value, dict) or name not in value:
                return f"no {key!r} (every part of this benchmark holds one)"
            value = value[name]
    return ""


# Metrics that are fractions of answers: anything outside [0, 1] is damage, not a result.
FRACTIONS = {"accuracy", "error"}


def part_problem(part: dict[str, Any]) -> str:
    """Why a saved part cannot be a result of the benchmark ("" when it can)."""
    rows = part.get("rows")
    if not isinstance(rows, list) or not rows:
        return "no rows (a part always has some)"
    if "info" in part and not isinstance(part["info"], dict):
        return "an 'info' that is not an object"
    for row in rows:
        if not isinstance(row, dict) or "metric" not in row or "mean" not in row:
            return f"a row without its metric or mean: {str(row)[:80]}"
        values = row.get("values", [])
        if not isinstance(values, list):
            return f"values that are not a list ({row.get('method')}, {row.get('benchmark')})"
        numbers = [row["mean"], *values]
        if not all(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in numbers):
            return f"a value of {row['metric']} that is not a number ({row.get('method')}, {row.get('benchmark')})"
        if row["metric"] in FRACTIONS and not all(isinstance(v, (int, float)) and 0 <= v <= 1 for v in numbers):
            return f"a value of {row['metric']} outside [0, 1] ({row.get('method')}, {row.get('benchmark')})"
        if not all(v is None or (isinstance(v, (int, float)) and not v < 0) for v in numbers):
            return f"a negative {row['metric']} ({row.get('method')})"
    return ""


def check_seeds_and_workers(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """The multi-seed benchmarks' shared argument rules (``p.error`` exits with the message)."""
    if any(seed < 0 for seed in args.seeds):
        p.error(f"--seeds must be non-negative, got {args.seeds}")
    if len(set(args.seeds)) != len(args.seeds):
        p.error("--seeds must be distinct")
    if args.workers < 1:
        p.error(f"--workers must be at least 1, got {args.workers}")


def run_parts(work: Callable[[Any], Any], jobs: Sequence[Any], workers: int, progress: bool,
              desc: str = "parts") -> list[Any]:
    """``[work(job) for job in jobs]``, in ``workers`` spawned processes (1: in this process).

    A progress bar counts finished jobs. When a job fails, the others still finish (and save
    their parts); the first error is raised at the end.
    """
    from tqdm import tqdm

    results: list[Any] = [None] * len(jobs)
    errors: list[BaseException] = []
    with tqdm(total=len(jobs), desc=desc, disable=not progress) as bar:
        if workers <= 1:
            for i, job in enumerate(jobs):
                results[i] = work(job)
                bar.update()
            return results
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
            futures = {pool.submit(work, job): i for i, job in enumerate(jobs)}
            for future in as_completed(futures):
                try:
                    results[futures[future]] = future.result()
                except Exception as error:  # re-raised below, once the others are done
                    errors.append(error)
                bar.update()
    if errors:
        raise errors[0]
    return results


class Checkpoints:
    """Scores a training at marked steps (fractions of its iterations), keeping the scoring's CPU
    time out of the training's: every point of ``curve`` records the training CPU-seconds up to it
    and the examples seen. Call it from the training's callback: ``clock(step, trained,
    examples_per_step)``; ``score(step, trained)`` returns the point's scores.
    """

    def __init__(self, total: int, fractions: Sequence[float], score: Callable[[int, Any], Any]) -> None:
        self.marks = sorted({max(1, round(total * f)) for f in fractions})
        self.curve: list[dict[str, Any]] = []
        self.scoring = 0.0  # CPU-seconds spent scoring so far
        self._score = score
        self._start = time.process_time()

    def __call__(self, step: int, trained: Any, examples_per_step: int) -> None:
        if step not in self.marks:
            return
        began = time.process_time()
        trained_cpu = began - self._start - self.scoring
        module = getattr(trained, "model", trained)  # a learner's network, or the network itself
        was_training = module.training  # scoring must not change how training goes on
        scores = self._score(step, trained)
        module.train(was_training)
        self.curve.append({"step": step, "cpu_seconds": round(trained_cpu, 2), "examples": step * examples_per_step,
                           "scores": scores})
        self.scoring += time.process_time() - began
