"""Grading handed-in notebooks: every notebook in a child process of its own, with a time limit::

    python -m mtlcode.course grade submissions/*.ipynb [--timeout 120] [--verbose]

For each exercise of a notebook (a code cell tagged ``solution``, then a cell that calls a check
from :mod:`mtlcode.course.exercises`, ``book/STYLE.md`` rule 11) the child runs the solution cell in a
fresh namespace, then the genuine check on the function it defines; the rest of the chapter is
not run, so a notebook takes seconds. The grader's own process never runs a student's code. What
that protects against, and what it does not:

* a solution that calls ``sys.exit`` or ``os._exit``, crashes Python, or loops for ever ends or
  blocks only its own notebook: that notebook's remaining exercises are reported as "error" or
  "timeout" and the batch goes on;
* printing "passed" (to ``sys.stdout`` or ``sys.__stdout__``) forges nothing: results travel
  through a file, each line carrying a random token the child was given;
* replacing ``mtlcode.course.exercises.check_*`` (or ``torch.allclose``, a builtin, ...) turns the
  exercise into an "error", and cannot affect any other notebook, which runs in another process;
* the check cell is not run: the grader calls the genuine check the cell names (a student who
  renames it to another check is not caught here; nbgrader restores locked check cells);
* a malformed notebook is an "error" naming the file, and the batch goes on.

It is **not a sandbox**: the student's code runs with the grader's rights, so it can read and
write files, use the network, start processes or kill the grader, and a student who studies
this module can dig the token out of the child's memory and forge a result. Grade untrusted
submissions in a container (or a throw-away virtual machine) without network access or secrets.
"""

from __future__ import annotations

import ast
import contextlib
import hmac
import json
import multiprocessing
import os
import secrets
import signal
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mtlcode.book.notebooks import (
    SOLUTION_TAG,
    NotebookError,
    cell_source,
    cell_tags,
    defined_functions,
    exercise_label,
    read_notebook,
)
from mtlcode.course import grading_worker

__all__ = ["DEFAULT_TIMEOUT", "STATUSES", "Exercise", "Grade", "check_calls", "find_exercises", "grade",
           "grade_notebooks"]

DEFAULT_TIMEOUT = 120.0  # seconds per notebook; the book's exercises take a few
# "timeout": the notebook ran out of time before this exercise was graded.
STATUSES = ("passed", "failed", "not done", "error", "timeout")
NOTEBOOK = "the notebook"  # the exercise of a grade that is about the whole file
_LOG_TAIL = 2000  # characters of the child's own output shown when it died


@dataclass(frozen=True)
class Grade:
    """The result of one exercise of a handed-in notebook.

    ``notebook`` is the path as given; ``status`` is one of :data:`STATUSES`; ``feedback`` is
    what the check printed, or why the exercise could not be graded.
    """

    notebook: str
    exercise: str
    status: str  # "passed", "failed", "not done", "error" or "timeout"
    feedback: str


@dataclass(frozen=True)
class Exercise:
    """A solution cell of a notebook and the checks the cell after it calls."""

    index: int  # of the solution cell
    label: str  # "Exercise 2 of 03_algorithms (inner_loop)"
    source: str
    checks: tuple[tuple[str, str], ...]  # (check, function), e.g. ("check_inner_loop", "inner_loop")
    problem: str = ""  # why it cannot be graded, "" when it can


def check_calls(source: str) -> list[tuple[str, str]]:
    """The ``check_*(function)`` calls of a check cell, in order: ``[(check, function), ...]``.

    Only the names are taken from the cell: the grader calls the genuine check itself, so
    whatever else a student writes into a check cell is never run.
    """
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    calls = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and len(node.args) == 1 and not node.keywords
                and isinstance(node.args[0], ast.Name)):
            continue
        name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")
        if name.startswith("check_"):
            calls.append((node.lineno, node.col_offset, name, node.args[0].id))
    return [(name, function) for *_, name, function in sorted(calls)]


def find_exercises(notebook: dict[str, Any], chapter: str) -> list[Exercise]:
    """Every ``solution`` cell of ``notebook`` with the checks of the code cell after it."""
    cells, exercises, statement = notebook["cells"], [], ""
    for i, cell in enumerate(cells):
        if cell["cell_type"] == "markdown":
            statement = cell_source(cell)
        if cell["cell_type"] != "code" or SOLUTION_TAG not in cell_tags(cell):
            continue
        source, names = cell_source(cell), defined_functions(cell_source(cell))
        label = exercise_label(statement, chapter) + (f" ({', '.join(names)})" if names else "")
        after = cells[i + 1] if i + 1 < len(cells) and cells[i + 1]["cell_type"] == "code" else None
        checks = tuple(check_calls(cell_source(after))) if after else ()
        problem = "" if checks else "no check cell after the solution cell (one that calls a check_* function)"
        exercises.append(Exercise(i, label, source, checks, problem))
    return exercises


# -- the child process --------------------------------------------------------------------------

def _context() -> Any:
    """Fork children from a server that has imported torch once (fast); spawn where there is none."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    # Only takes effect if this process's fork server is not running yet; children are correct either way.
    context.set_forkserver_preload([
        "mtlcode.course.exercises", "mtlcode.course.grading_worker", "torch.func", "torch._dynamo"])
    return context


def _stop(process: Any) -> None:
    """Kill a child that ran out of time, and the processes it started (its process group)."""
    if hasattr(os, "killpg"):
        with contextlib.suppress(OSError):  # no group: the child had not called setsid yet
            os.killpg(process.pid, signal.SIGKILL)
    if process.is_alive():
        process.kill()


@dataclass
class _Outcome:
    """What came back from the child: the genuine results, and what went wrong."""

    results: dict[int, tuple[str, str]] = field(default_factory=dict)
    forged: set[int] = field(default_factory=set)  # exercises with more than one result
    timed_out: bool = False
    exitcode: int | None = 0
    output: str = ""
    timeout: float = DEFAULT_TIMEOUT

    def result(self, exercise: Exercise) -> tuple[str, str]:
        if exercise.problem:
            return "error", exercise.problem
        if exercise.index in self.forged:
            return "error", "more than one result arrived for this exercise: the solution seems to have forged one"
        if exercise.index in self.results:
            return self.results[exercise.index]
        if self.timed_out:
            return "timeout", (f"the notebook was stopped after {self.timeout:g} s (--timeout) before this exercise "
                               "was graded: an endless loop?")
        tail = f"\nits last output:\n{self.output}" if self.output.strip() else ""
        return "error", (f"the grading process ended before this exercise was graded (exit code {self.exitcode}): "
                         f"the solution called os._exit, crashed Python or was killed{tail}")


def _read_results(path: Path, token: str, indices: set[int]) -> tuple[dict[int, tuple[str, str]], set[int]]:
    """The lines of ``path`` that carry ``token``; indices with more than one line are forged."""
    results: dict[int, tuple[str, str]] = {}
    forged: set[int] = set()
    text = path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""
    for line in text.splitlines():
        with contextlib.suppress(ValueError, TypeError):  # a damaged or forged line is skipped
            entry = json.loads(line)
            if not (isinstance(entry, dict) and isinstance(entry.get("token"), str)
                    and hmac.compare_digest(entry["token"], token) and entry.get("index") in indices):
                continue
            status, feedback = entry.get("status"), entry.get("feedback")
            if entry["index"] in results or status not in STATUSES or not isinstance(feedback, str):
                forged.add(entry["index"])
            results[entry["index"]] = (status, feedback)
    return results, forged


def _run_child(exercises: list[Exercise], name: str, timeout: float) -> _Outcome:
    token = secrets.token_hex(16)
    payload = [{"index": e.index, "filename": f"{name}, cell {e.index}", "source": e.source,
                "checks": [list(c) for c in e.checks]} for e in exercises]
    with tempfile.TemporaryDirectory(prefix="mtlcode-grade-") as folder:
        results, log = Path(folder) / "results.jsonl", Path(folder) / "output.txt"
        process = _context().Process(target=grading_worker.run, args=(token, str(results), str(log), payload),
                                     name=f"grading {name}", daemon=True)
        process.start()
        process.join(timeout)
        timed_out = process.is_alive()
        if timed_out:
            _stop(process)
        process.join()
        found, forged = _read_results(results, token, {e.index for e in exercises})
        output = log.read_text(encoding="utf-8", errors="replace")[-_LOG_TAIL:] if log.exists() else ""
    return _Outcome(found, forged, timed_out, process.exitcode, output, timeout)


def grade(path: str | Path, timeout: float = DEFAULT_TIMEOUT) -> list[Grade]:
    """Grade every exercise of the notebook at ``path`` in a child process; one :class:`Grade` each.

    Each exercise runs in a fresh namespace (solution cells import what they use), so one
    exercise's failure does not affect another's grade. The child is stopped after ``timeout``
    seconds; the exercises not graded by then are "timeout". A file that is not a notebook gives
    a single "error" grade naming it; a notebook without exercises gives ``[]``.
    """
    path = Path(path)
    try:
        notebook = read_notebook(path)
    except NotebookError as error:
        return [Grade(str(path), NOTEBOOK, "error", str(error))]
    exercises = find_exercises(notebook, path.stem)
    runnable = [e for e in exercises if not e.problem]
    outcome = _run_child(runnable, path.name, timeout) if runnable else _Outcome()
    return [Grade(str(path), e.label, *outcome.result(e)) for e in exercises]


# -- reporting ----------------------------------------------------------------------------------

def _printable(text: str) -> str:
    """``text`` without control characters, so that feedback cannot rewrite the report's lines."""
    text = text.replace("\r\n", "\n")
    return "".join(c if c.isprintable() or c in "\n\t" else "\N{REPLACEMENT CHARACTER}" for c in text)


def grade_notebooks(paths: Iterable[str | Path], timeout: float = DEFAULT_TIMEOUT, verbose: bool = False,
                    write: Callable[[str], None] = print) -> int:
    """Grade ``paths`` one by one, writing one line per exercise; 0 when every exercise passed, else 1.

    A notebook without exercises is reported as an "error" (a student may have removed the
    ``solution`` tag). The feedback of every exercise not passed is shown, with ``verbose`` also
    that of the passed ones.
    """
    counts: Counter[str] = Counter()
    for path in paths:
        grades = grade(path, timeout) or [Grade(str(path), NOTEBOOK, "error",
                                                 "no exercise to grade: no code cell is tagged 'solution'")]
        for result in grades:
            counts[result.status] += 1
            # A file name may hold a newline ("x\npassed ..."), and the exercise's label names the
            # file: quoted, each stays on the report's one line.
            name, exercise = (text if text.isprintable() else ascii(text)
                              for text in (result.notebook, result.exercise))
            write(f"{result.status:9s} {name}: {exercise}")
            if result.feedback and (verbose or result.status not in ("passed", "not done")):
                write("    " + _printable(result.feedback).replace("\n", "\n    "))
    summary = ", ".join(f"{counts[s]} {s}" for s in STATUSES if counts[s])
    write(f"{sum(counts.values())} exercises: {summary or 'none'}")
    return 0 if counts and set(counts) == {"passed"} else 1
