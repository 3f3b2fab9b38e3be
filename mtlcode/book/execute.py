"""Run the book's notebooks side by side before the book build reads them (``make book``).

jupyter-book runs a book's notebooks one after another, on one core, while the others wait. This
command runs them as many at once as there are cores (each kernel on one thread, as ``make book``
sets ``OMP_NUM_THREADS=1``), the longest first, and stores each executed notebook in the build's
execution cache (jupyter-cache, ``_build/.jupyter_cache``). With ``execute_notebooks: cache`` in
``_config.yml``, myst-nb finds every notebook there and runs nothing again; it would run one that
is missing (its code changed since), so the cache can never hand the build stale outputs.

Every notebook runs afresh on each call: outputs depend on the library as well as on the code
cells the cache compares, so an entry of an earlier run is replaced, never reused. A notebook that
raises fails the command with its traceback, after the others have finished.

In cache mode myst-nb copies to ``_build/jupyter_execute/`` the notebook it read, not the one with
the cached outputs it renders (myst_nb/sphinx_.py writes the object it parsed), and the Chinese
build and the reader notebooks read the outputs there. ``--export`` writes them there from the
cache, after the English build.

    python -m mtlcode.book.execute                 # every notebook of _toc.yml
    python -m mtlcode.book.execute --workers 1     # one at a time
    python -m mtlcode.book.execute --export _build/jupyter_execute
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import nbformat
import yaml

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / "_build" / ".jupyter_cache"  # jupyter-book's default cache folder
TIMES = ROOT / "benchmarks" / "results" / "notebook_times.json"  # python -m benchmarks.notebook_times


def toc_notebooks(root: Path = ROOT) -> list[Path]:
    """The notebooks of the book's table of contents, in its order."""
    toc = yaml.safe_load((root / "_toc.yml").read_text(encoding="utf-8"))
    files = [toc["root"]] + [c["file"] for part in toc.get("parts", []) for c in part.get("chapters", [])]
    return [root / f"{name}.ipynb" for name in files if (root / f"{name}.ipynb").is_file()]


def longest_first(paths: list[Path], times: Path = TIMES) -> list[Path]:
    """``paths`` ordered by their measured seconds (``notebook_times.json``), the longest first, so
    that the last notebook to finish is a short one; unmeasured notebooks keep their order, last."""
    seconds: dict[str, float] = {}
    if times.is_file():
        seconds = {row["chapter"]: row["mean"] for row in json.loads(times.read_text())["rows"]}
    return sorted(paths, key=lambda path: -seconds.get(path.stem, -1.0))


def _execute(path: str, timeout: int) -> tuple[str, str, float, str | None]:
    """Run one notebook in its own folder (as myst-nb does); (path, executed JSON, seconds, traceback)."""
    from jupyter_cache.executors.utils import single_nb_execution

    notebook = nbformat.read(path, as_version=4)
    result = single_nb_execution(notebook, cwd=str(Path(path).parent), timeout=timeout, allow_errors=False)
    return path, nbformat.writes(notebook), result.time, result.exc_string if result.err else None


def execute_book(paths: list[Path], cache: Path = CACHE, workers: int | None = None, timeout: int = 600) -> int:
    """Run ``paths`` with ``workers`` kernels at once and cache each executed notebook; the number that failed."""
    from jupyter_cache import get_cache
    from jupyter_cache.base import CacheBundleIn

    store = get_cache(str(cache))
    workers = workers or os.cpu_count() or 1
    failed = 0
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(_execute, str(path), timeout) for path in longest_first(paths)]
        for future in as_completed(futures):
            path, executed, seconds, error = future.result()
            name = Path(path).relative_to(ROOT) if Path(path).is_relative_to(ROOT) else path
            if error is not None:
                failed += 1
                print(f"{name}: failed after {seconds:.0f} s\n{error}", file=sys.stderr, flush=True)
                continue
            # overwrite: the entry of an earlier run with the same code cells gives way to this run's
            store.cache_notebook_bundle(CacheBundleIn(nbformat.reads(executed, as_version=4), path,
                                                      data={"execution_seconds": seconds}),
                                        check_validity=False, overwrite=True)
            print(f"{name}: {seconds:.0f} s", flush=True)
    print(f"{len(paths) - failed} of {len(paths)} notebooks ran in {time.perf_counter() - started:.0f} s "
          f"with {workers} at once", flush=True)
    return failed


def export_executed(paths: list[Path], folder: Path, cache: Path = CACHE, root: Path = ROOT) -> int:
    """Write each notebook of ``paths`` with its cached outputs to ``folder``, at its path under
    ``root`` (``book/05_practice.ipynb``); the number not in the cache (none were written then)."""
    from jupyter_cache import get_cache

    store, executed = get_cache(str(cache)), {}
    for path in paths:
        try:
            _, executed[path] = store.merge_match_into_notebook(nbformat.read(path, as_version=4))
        except KeyError:
            print(f"{path.relative_to(root)}: not in the cache {cache} (run python -m mtlcode.book.execute)",
                  file=sys.stderr)
    if len(executed) < len(paths):
        return len(paths) - len(executed)
    from myst_nb.ext.glue import extract_glue_data_cell

    for path, notebook in executed.items():
        for cell in notebook.cells:  # as myst-nb writes it: glued values are in its <page>.glue.json
            if cell.cell_type == "code":
                extract_glue_data_cell(cell)
        target = folder / path.relative_to(root)
        target.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(notebook, target)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=None, help="kernels at once (default: the number of cores)")
    parser.add_argument("--timeout", type=int, default=600, help="seconds a cell may run (as _config.yml's)")
    parser.add_argument("--cache", type=Path, default=CACHE, help="jupyter-cache folder the build reads")
    parser.add_argument("--export", type=Path, default=None, metavar="DIR",
                        help="run nothing: write the cached executed notebooks to DIR (_build/jupyter_execute)")
    args = parser.parse_args(argv)
    if args.workers is not None and args.workers < 1:
        parser.error("--workers must be 1 or more")
    if args.export is not None:
        return 1 if export_executed(toc_notebooks(), args.export, args.cache) else 0
    return 1 if execute_book(toc_notebooks(), args.cache, args.workers, args.timeout) else 0


if __name__ == "__main__":
    sys.exit(main())
