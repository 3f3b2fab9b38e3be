"""Shared plumbing of the benchmark scripts: arguments, timing, and the JSON result files."""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
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
