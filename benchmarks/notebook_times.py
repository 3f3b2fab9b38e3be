"""Time how long each chapter notebook takes to run, the way the book build runs it.

Each notebook is executed from top to bottom with nbclient, in its own directory, by a fresh
kernel with ``OMP_NUM_THREADS=1`` (as ``make book`` does), with the default parameters. The
result feeds the instructor page (``book/instructor.ipynb``); a lecturer reads it as "how long
will my students wait on a laptop CPU".

    python -m benchmarks.notebook_times                  # every chapter, writes results/notebook_times.json
    python -m benchmarks.notebook_times --chapters 07_tools 04_mathematics --out /tmp/t.json
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path
from typing import Any

import nbformat
from nbclient import NotebookClient
from tqdm import tqdm

from benchmarks.common import parser, write_result
from mtlcode.book.notebooks import code_fingerprint
from mtlcode.utils import device

BOOK = Path(__file__).resolve().parents[1] / "book"


def chapters(book: Path = BOOK) -> list[Path]:
    """The chapter notebooks ``NN_name.ipynb`` of ``book``, in order."""
    return sorted(p for p in book.glob("[0-9][0-9]_*.ipynb"))


def run_notebook(path: Path, timeout: int, threads: int = 1) -> float:
    """Execute ``path`` in a fresh kernel (in the notebook's directory); return the wall seconds.

    The kernel inherits this process's environment with ``OMP_NUM_THREADS`` set to ``threads``.
    Kernel start-up counts: a reader waits for it too.
    """
    nb = nbformat.read(path, as_version=4)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    started = time.perf_counter()
    client.execute(env=env)
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = parser(__doc__.splitlines()[0], "notebook_times.json")
    p.add_argument("--chapters", nargs="*", default=None,
                   help="chapter names such as 05_practice (default: every book/NN_*.ipynb)")
    p.add_argument("--notebooks", nargs="*", type=Path, default=None,
                   help="explicit notebook paths instead of the book's chapters")
    p.add_argument("--repeats", type=int, default=1, help="runs per notebook (the mean is recorded)")
    p.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of the kernels")
    p.add_argument("--timeout", type=int, default=900, help="seconds allowed per cell")
    args = p.parse_args(argv)

    paths = args.notebooks if args.notebooks else chapters()
    if args.chapters:
        paths = [path for path in paths if path.stem in set(args.chapters)]
        missing = set(args.chapters) - {path.stem for path in paths}
        if missing:
            p.error(f"no such chapter: {sorted(missing)}")
    started = time.perf_counter()
    load_before = [round(x, 2) for x in os.getloadavg()]  # other work on the machine slows the notebooks
    rows = []
    for path in tqdm(paths, desc="notebooks", disable=args.no_progress):
        seconds = [run_notebook(path, args.timeout, args.threads) for _ in range(args.repeats)]
        # The code timed (mtlcode.book.notebooks.code_fingerprint): a chapter whose code changed since
        # needs timing again.
        code = code_fingerprint(nbformat.read(path, as_version=4))
        rows.append({"chapter": path.stem, "metric": "seconds", "mean": round(statistics.mean(seconds), 1),
                     "min": round(min(seconds), 1), "max": round(max(seconds), 1), "repeats": len(seconds),
                     "code": code})
    # The kernels pick the best device themselves (mtlcode.device()); record which one that is.
    return write_result(args.out, rows, started, None, device(), args.seed, "benchmarks.notebook_times",
                        argv, cpu_count=os.cpu_count(), kernel_threads=args.threads,
                        load_average_before=load_before, load_average_after=[round(x, 2) for x in os.getloadavg()])


if __name__ == "__main__":
    main()
