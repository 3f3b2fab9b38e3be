"""Run the chapters at several training seeds and record, for every claim, whether it held.

A chapter checks each sentence of its prose that rests on a measurement with
``mtlcode.book.claim(key, holds, found)``. This sweep executes every chapter notebook (nbclient,
one thread per kernel, as ``make book`` runs it) with its ``SEED`` parameter set to each seed in
turn, in the lenient mode a reader's run has (a claim that does not hold is recorded and the
notebook goes on), and writes ``results/claims.json``: per chapter, per claim, the seeds where
it held and where it did not, with what each run found. The instructor page shows the table; a
claim that fails on any seed must be rewritten (``make test`` runs the chapters at two seeds).

Each (chapter, seed) run is a part, saved in ``claims.partial/`` when it ends without an error, so
a rerun of the same command resumes; a part is recomputed when its notebook's code changed (its
fingerprint). The chapters that read Omniglot need the archives: ``MTLCODE_DATA`` as for the book.

    python -m benchmarks.claims                          # every chapter, seeds 0-5, 2 workers
    python -m benchmarks.claims --chapters 08_summary --seeds 0 1 2 3 4 5 6 7
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from benchmarks.common import RESULTS, write_json
from benchmarks.notebook_times import BOOK, chapters
from mtlcode.book import LOG_ENV, STRICT_ENV
from mtlcode.book.notebooks import code_fingerprint, with_seed


def run_part(path: Path, notebook: nbformat.NotebookNode, seed: int, timeout: int) -> dict[str, Any]:
    """Execute ``notebook`` (chapter ``path``) at ``seed`` (lenient claims); its claims, error and seconds."""
    with tempfile.TemporaryDirectory() as folder:
        log = Path(folder) / "claims.jsonl"
        env = {**os.environ, "OMP_NUM_THREADS": "1", LOG_ENV: str(log), STRICT_ENV: "0"}
        client = NotebookClient(with_seed(notebook, seed), timeout=timeout,
                                kernel_name="python3", resources={"metadata": {"path": str(path.parent)}})
        started, error = time.perf_counter(), None
        try:
            client.execute(env=env)
        except CellExecutionError as failure:
            error = f"{failure.ename}: {failure.evalue}"[:2000]
        seconds = time.perf_counter() - started
        claims = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return {"claims": claims, "error": error, "seconds": round(seconds, 1)}


def summarise(parts: dict[tuple[str, int], dict[str, Any]]) -> dict[str, Any]:
    """Per chapter and claim: the seeds where it held, where it failed, and what each run found."""
    table: dict[str, Any] = {}
    for (chapter, seed), part in sorted(parts.items()):
        entry = table.setdefault(chapter, {"runs": {}, "claims": {}})
        entry["runs"][str(seed)] = {"error": part["error"], "seconds": part["seconds"]}
        for record in part["claims"]:
            row = entry["claims"].setdefault(record["key"], {"held": [], "failed": [], "found": {}})
            # a claim checked in a loop counts as failed for the seed when any of its checks failed
            if record["holds"]:
                if seed not in row["held"] and seed not in row["failed"]:
                    row["held"].append(seed)
            else:
                if seed in row["held"]:
                    row["held"].remove(seed)
                if seed not in row["failed"]:
                    row["failed"].append(seed)
                row["found"][str(seed)] = record["found"]
    return table


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--chapters", nargs="*", default=None, help="chapter names such as 08_summary (default: all)")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4, 5])
    p.add_argument("--workers", type=int, default=2, help="chapters run at once (one thread each)")
    p.add_argument("--timeout", type=int, default=900, help="seconds allowed per cell")
    p.add_argument("--out", type=Path, default=RESULTS / "claims.json")
    p.add_argument("--book", type=Path, default=BOOK, help="the folder of the chapter notebooks NN_name.ipynb")
    args = p.parse_args(argv)
    if args.workers < 1:
        p.error(f"--workers must be at least 1, got {args.workers}")
    if any(seed < 0 for seed in args.seeds):
        p.error(f"--seeds must be non-negative, got {args.seeds}")
    paths = chapters(args.book)
    if args.chapters:
        known = {path.stem: path for path in paths}
        unknown = sorted(set(args.chapters) - set(known))
        if unknown:
            p.error(f"unknown chapters {unknown}; known: {sorted(known)}")
        paths = [known[name] for name in args.chapters]
    partial = args.out.with_suffix(".partial")
    # Each chapter is read once: the code that runs is the code its parts are labelled with.
    notebooks = {path.stem: nbformat.read(path, as_version=4) for path in chapters(args.book)}
    prints = {name: code_fingerprint(notebook) for name, notebook in notebooks.items()}

    def part_file(chapter: str, seed: int) -> Path:
        return partial / f"{chapter}-seed{seed}.json"

    def load(chapter: str, seed: int) -> dict[str, Any] | None:
        try:
            part = json.loads(part_file(chapter, seed).read_text())
        except (OSError, ValueError):
            return None
        return part if part.get("fingerprint") == prints[chapter] else None

    def work(job: tuple[Path, int]) -> tuple[tuple[str, int], dict[str, Any]]:
        path, seed = job
        part = load(path.stem, seed)
        if part is None:
            part = {**run_part(path, notebooks[path.stem], seed, args.timeout), "fingerprint": prints[path.stem]}
            if part["error"] is None:  # a run that stopped is run again next time (it may be the setup)
                write_json(part_file(path.stem, seed), part)
            print(f"{path.stem} seed {seed}: {part['seconds']} s, "
                  f"{sum(not c['holds'] for c in part['claims'])} claim checks failed, error: {part['error']}",
                  flush=True)
        return (path.stem, seed), part

    jobs = [(path, seed) for seed in args.seeds for path in paths]
    with ThreadPoolExecutor(args.workers) as pool:
        parts = dict(pool.map(work, jobs))
    # every finished part of these seeds, including chapters not run this time
    for chapter_path in chapters(args.book):
        for seed in args.seeds:
            if (chapter_path.stem, seed) not in parts and (part := load(chapter_path.stem, seed)) is not None:
                parts[chapter_path.stem, seed] = part
    result = {
        "command": " ".join(["python", "-m", "benchmarks.claims", *(sys.argv[1:] if argv is None else argv)]),
        "seeds": args.seeds,
        "chapters": summarise(parts),
    }
    for chapter, entry in result["chapters"].items():
        entry["fingerprint"] = prints[chapter]  # the code these runs executed
    write_json(args.out, result)
    failing = [(chapter, key) for chapter, entry in result["chapters"].items()
               for key, row in entry["claims"].items() if row["failed"]]
    errors = [(chapter, seed) for chapter, entry in result["chapters"].items()
              for seed, run in entry["runs"].items() if run["error"]]
    print(f"{len(failing)} claims failed on some seed; {len(errors)} runs stopped on an error")
    for chapter, key in failing:
        print(f"  {key}: failed on seeds {result['chapters'][chapter]['claims'][key]['failed']}")
    return result


if __name__ == "__main__":
    main()
