"""Grading handed-in notebooks: the student's code in a child process, the checks in this one::

    python -m mtlcode.course grade submissions/*.ipynb [--timeout 120] [--verbose]

For each exercise of a notebook (a code cell tagged ``solution``, then a cell that calls a check
from :mod:`mtlcode.course.exercises`, ``book/STYLE.md`` rule 11) the child process runs the solution
cell in a fresh namespace (:mod:`mtlcode.course.grading_worker`); the genuine check the check cell
names runs here, in the grader's process, and calls the student's function over a pipe. The rest
of the chapter is not run, so a notebook takes seconds. What that protects against, and what not:

* the expected answers never enter the student's process, and what comes back is plain data
  (tensors, numbers, strings, lists, tuples, dicts) read with ``torch.load(weights_only=True)``:
  a tensor subclass that makes ``torch.allclose`` say yes, a solution that walks up its stack to
  the check's ``expected``, replaces a check, ``torch.allclose`` or a tolerance, or sends forged
  bytes down the pipe, changes only its own answers, or is an "error";
* a solution that calls ``sys.exit`` or ``os._exit``, crashes Python or loops for ever ends or
  blocks only its own notebook: that notebook's remaining exercises are "error" or "timeout" and
  the batch goes on. Each notebook has a session of its own under a supervisor that kills, when
  the notebook is done or out of time, every process the solution started, one that called
  ``setsid`` included (:func:`grading_worker.supervise`); none keeps a pipe of the grader, so
  ``grade ... | tee log`` ends with the grader. A solution that kills or stops the fork server
  the notebooks' processes come from spoils no later grade: the server is replaced;
* printing "passed" forges nothing: the child's output goes to a log file, never to the grader's
  terminal or pipes, and results are what the checks here conclude;
* the check cell is not run: the grader calls the genuine check the cell names (a student who
  renames it to another check is not caught here; nbgrader restores locked check cells);
* a malformed notebook is an "error" naming the file, and the batch goes on.

It is **not a sandbox**: the student's code runs with the grader's rights, so it can read and
write files, use the network, start processes (one that kills the supervisor first may outlive the
notebook) or kill the grader. Grade untrusted submissions in a container (or a throw-away virtual
machine) without network access or secrets.
"""

from __future__ import annotations

import ast
import contextlib
import io
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mtlcode.book.notebooks import (
    SOLUTION_TAG,
    NotebookError,
    cell_source,
    cell_tags,
    defined_functions,
    exercise_label,
    read_notebook,
)
from mtlcode.course import exercises as _exercises
from mtlcode.course.answers import rebuild, restore_arguments
from mtlcode.course.exercises._checking import StudentError, StudentFunction
from mtlcode.course.grading_process import Stopped, Student
from mtlcode.course.grading_worker import describe as _describe

__all__ = ["DEFAULT_TIMEOUT", "STATUSES", "Exercise", "Grade", "check_calls", "find_exercises", "grade",
           "grade_notebooks"]

DEFAULT_TIMEOUT = 120.0  # seconds per notebook; the book's exercises take a few
# "timeout": the notebook ran out of time before this exercise was graded.
STATUSES = ("passed", "failed", "not done", "error", "timeout")
NOTEBOOK = "the notebook"  # the exercise of a grade that is about the whole file
FEEDBACK_LIMIT = 8000  # characters of feedback kept per exercise
# The genuine checks, looked up here: the names a check cell calls are only looked up in this table.
_CHECKS = {name: getattr(_exercises, name) for name in _exercises.__all__}


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


# -- the student's function, called over the pipe ---------------------------------------------

class _NotAnswered(BaseException):
    """The solution defined no such function, or tried to end the grading: an "error", not a wrong answer."""


class _StudentFunction(StudentFunction):
    """The function a solution cell defined, called in the student's process (see ``_checking``)."""

    def __init__(self, student: Student, name: str) -> None:
        self.student, self.name, self.printed = student, name, []

    def call(self, args: tuple[Any, ...], then: Callable[[Any], Any] | None) -> Any:
        import cloudpickle

        answer = self.student.request({"kind": "call", "function": self.name, "rng": torch.get_rng_state(),
                                       "payload": cloudpickle.dumps((args, then))})
        self.printed.append(answer["printed"])
        status, message = answer["status"], str(answer.get("message", ""))
        if status == "not done":
            raise NotImplementedError(message)
        if status in ("missing", "exit"):
            raise _NotAnswered(message)
        if status == "error":
            raise StudentError(message)
        try:
            restore_arguments(list(args), answer.get("arguments"))
            torch.set_rng_state(answer["rng"])
        except Exception as error:
            raise Stopped("error", "the solution's process sent an answer of the wrong form: it cannot be "
                                    "graded") from error
        return rebuild(answer.get("result"))


def _run_checks(student: Student, exercise: Exercise, name: str) -> tuple[str, str]:
    """Run the solution cell there, then each of its checks here: (status, feedback)."""
    answer = student.request({"kind": "exec", "source": exercise.source, "filename": f"{name}, cell {exercise.index}"})
    printed = answer["printed"]
    if answer["status"] != "ok":
        status = "not done" if answer["status"] == "not done" else "error"
        return status, (printed + str(answer.get("message", ""))).strip()
    feedback = io.StringIO()
    for check_name, function_name in exercise.checks:
        if check_name not in _CHECKS:
            return "error", f"{check_name} is not a check of mtlcode.course.exercises"
        function = _StudentFunction(student, function_name)
        try:
            with contextlib.redirect_stdout(feedback):
                _CHECKS[check_name](function)
        except NotImplementedError as error:
            return "not done", _describe(error)
        except AssertionError:
            return "failed", _clip(printed + "".join(function.printed) + feedback.getvalue())
        except _NotAnswered as error:
            return "error", _clip(printed + "".join(function.printed) + str(error))
        except Exception as error:  # a reply the check could not use
            return "error", f"the check could not use the solution's answer: {_describe(error)}"
    return "passed", _clip(printed + feedback.getvalue())


def _clip(text: str) -> str:
    text = text.strip()
    if len(text) <= FEEDBACK_LIMIT:
        return text
    half = FEEDBACK_LIMIT // 2
    return f"{text[:half]}\n... ({len(text) - FEEDBACK_LIMIT} characters left out) ...\n{text[-half:]}"


def _grade_in_a_process(exercises: list[Exercise], name: str, timeout: float) -> dict[int, tuple[str, str]]:
    """(status, feedback) per exercise index, all of one notebook in one student process."""
    results: dict[int, tuple[str, str]] = {}
    with tempfile.TemporaryDirectory(prefix="mtlcode-grade-") as folder:
        student = Student(name, timeout, Path(folder) / "output.txt")
        try:
            for exercise in exercises:
                results[exercise.index] = _run_checks(student, exercise, name)
        except Stopped as stopped:
            for exercise in exercises:
                results.setdefault(exercise.index, (stopped.status, stopped.message))
        finally:
            student.stop()
    return results


def grade(path: str | Path, timeout: float = DEFAULT_TIMEOUT) -> list[Grade]:
    """Grade every exercise of the notebook at ``path``; one :class:`Grade` each.

    The solution cells run in a child process (one per notebook), each in a fresh namespace, so one
    exercise's failure does not affect another's grade; the checks run in this process, on plain
    data. The child is stopped after ``timeout`` seconds; the exercises not graded by then are
    "timeout". A file that is not a notebook gives a single "error" grade naming it; a notebook
    without exercises gives ``[]``.
    """
    path = Path(path)
    try:
        notebook = read_notebook(path)
    except NotebookError as error:
        return [Grade(str(path), NOTEBOOK, "error", str(error))]
    exercises = find_exercises(notebook, path.stem)
    runnable = [e for e in exercises if not e.problem]
    results = _grade_in_a_process(runnable, path.name, timeout) if runnable else {}
    return [Grade(str(path), e.label, *(("error", e.problem) if e.problem else results[e.index]))
            for e in exercises]


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
