"""The book's chapters as an nbgrader course (https://nbgrader.readthedocs.io).

    python -m mtlcode.course nbgrader COURSE_DIR [--exercises-only]

writes ``COURSE_DIR/nbgrader_config.py`` and, for every chapter with a checked coding exercise,
the instructor version of an assignment, ``COURSE_DIR/source/<chapter>/<chapter>.ipynb``:

* each ``solution`` cell is an nbgrader *solution* cell; the body of each function it defines
  sits between ``### BEGIN SOLUTION`` and ``### END SOLUTION``, which ``nbgrader
  generate_assignment`` replaces with its stub, so students keep the signature and docstring;
* the check cell after it is a locked, autograded *test* cell worth :data:`POINTS` points: the
  check raises ``AssertionError`` (or the stub's ``NotImplementedError``) on a wrong answer, and
  nbgrader gives a test cell that raises no points;
* every other cell is locked (read-only): nbgrader restores locked cells before autograding, so
  the checks and the chapter's code are the instructor's, whatever a student changed;
* the "Solution" dropdowns of written answers are removed, as in the student edition (nbgrader
  only strips what lies between its markers).

With ``exercises_only`` an assignment holds the chapter's title, its setup cell and its exercise
section only. Solution cells import what they use and checks import theirs (``book/STYLE.md``),
so the trimmed notebook runs on its own, and ``nbgrader autograde`` runs a submission in seconds
instead of re-running the whole chapter (up to a minute or more per student).

The cell metadata follow nbgrader's schema version 3 (nbgrader 0.9, the release pinned in the
project's ``test`` extra and tested end to end in ``tests/test_nbgrader.py``).
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any

from mtlcode.book.notebooks import (
    SOLUTION_TAG,
    book_chapters,
    cell_source,
    cell_tags,
    default_book,
    defined_functions,
    notebook_text,
)
from mtlcode.course.editions import remove_solution_dropdowns, write_files

__all__ = ["COURSE_ID", "POINTS", "SCHEMA_VERSION", "mark_solution", "nbgrader_config", "nbgrader_notebook",
           "write_nbgrader_course"]

COURSE_ID = "mtl-book"
POINTS = 1  # per checked exercise; change them in the source notebooks or in formgrader
SCHEMA_VERSION = 3  # nbgrader's cell metadata schema (nbgrader/nbgraderformat/v3.json)
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
# English or Chinese, numbered in the reader notebooks ("## 3.6. Exercises", readers/<lang>/book/)
_EXERCISES_HEADING = re.compile(r"^## (?:[0-9.]+ +)?(?:Exercises|练习)\b", re.M)


# -- solution cells ----------------------------------------------------------------------------

def _is_docstring(node: ast.stmt) -> bool:
    return isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)


def _functions(tree: ast.Module) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    return [n for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]


def _split_one_liners(source: str) -> str:
    """``def f(x): return x`` written out over two lines, so that its body can be marked."""
    lines = source.split("\n")
    for node in reversed(_functions(ast.parse(source))):
        if node.body[0].lineno == node.lineno:
            start = (node.decorator_list[0].lineno if node.decorator_list else node.lineno) - 1
            lines[start:node.end_lineno] = ast.unparse(node).split("\n")
    return "\n".join(lines)


def mark_solution(source: str) -> str:
    """A solution cell with each function's body between nbgrader's solution markers.

    Imports, signatures and docstrings stay outside the markers, so the release version keeps
    them, as the student edition does. A cell that does more than import and define functions
    is marked as a whole: nothing of the solution may leak into the release.
    """
    tree = ast.parse(source)
    if not all(isinstance(n, ast.Import | ast.ImportFrom | ast.FunctionDef | ast.AsyncFunctionDef)
               for n in tree.body):
        return f"{BEGIN}\n{source.strip(chr(10))}\n{END}"
    source = _split_one_liners(source)
    lines = source.split("\n")
    for node in reversed(_functions(ast.parse(source))):
        body = node.body[1:] if _is_docstring(node.body[0]) else node.body
        if not body:
            continue  # only a docstring: nothing to hide
        indent = " " * body[0].col_offset
        header_end = node.body[0].end_lineno if _is_docstring(node.body[0]) else node.lineno
        start = body[0].lineno - 1
        while start > header_end and lines[start - 1].strip().startswith("#"):
            start -= 1  # comments just above the first statement explain the solution: hide them too
        lines[node.end_lineno:node.end_lineno] = [indent + END]
        lines[start:start] = [indent + BEGIN]
    return "\n".join(lines)


# -- notebooks ---------------------------------------------------------------------------------

def _metadata(grade_id: str, *, solution: bool = False, grade: bool = False, points: float = 0) -> dict[str, Any]:
    """nbgrader cell metadata (schema 3): solution cells are editable, every other cell is locked."""
    meta: dict[str, Any] = {"grade": grade, "grade_id": grade_id, "locked": not solution,
                            "schema_version": SCHEMA_VERSION, "solution": solution, "task": False}
    if grade:
        meta["points"] = points
    return meta


def _unique(name: str, taken: set[str]) -> str:
    name = re.sub(r"[^A-Za-z0-9_-]", "-", name)  # the characters nbgrader allows in a grade_id
    candidate, n = name, 1
    while candidate in taken:
        n += 1
        candidate = f"{name}-{n}"
    taken.add(candidate)
    return candidate


def _exercises_section(cells: list[dict[str, Any]], title: str) -> list[dict[str, Any]]:
    """The title (as a heading only), the Colab setup cell, and the cells from "## Exercises" on."""
    start = next((i for i, c in enumerate(cells) if c["cell_type"] == "markdown"
                  and _EXERCISES_HEADING.search(cell_source(c))), None)
    if start is None:
        raise ValueError(f"{title}: no '## Exercises' section")
    heading = json.loads(json.dumps(cells[start]))
    text = cell_source(heading)
    heading["source"] = text[_EXERCISES_HEADING.search(text).start():]
    intro = {"cell_type": "markdown", "id": "exercises-title", "metadata": {},
             "source": f"# {title}: exercises\n\nThe exercises of the chapter *{title}* of the book; read the "
                       "chapter first. Write each function in the cell that raises `NotImplementedError`, then "
                       "run the check below it, which says what is wrong if something is."}
    setup = [c for c in cells[1:2] if c["cell_type"] == "code" and "google.colab" in cell_source(c)]
    return [intro, *setup, heading, *cells[start + 1:]]


def _title(cells: list[dict[str, Any]], chapter: str) -> str:
    match = re.search(r"^# (.+)$", cell_source(cells[0]), re.M) if cells else None
    return match.group(1).strip() if match else chapter


def nbgrader_notebook(notebook: dict[str, Any], chapter: str, exercises_only: bool = False,
                      points: float = POINTS) -> dict[str, Any]:
    """The instructor (source) version of ``notebook`` for nbgrader; see the module's docstring."""
    notebook = json.loads(json.dumps(notebook))
    cells = notebook["cells"]
    if exercises_only:
        cells = notebook["cells"] = _exercises_section(cells, _title(cells, chapter))
    taken: set[str] = set()
    for i, cell in enumerate(cells):
        cell["metadata"] = {k: v for k, v in cell.get("metadata", {}).items() if k != "mystnb"}
        if cell["cell_type"] == "markdown":
            cell["source"] = remove_solution_dropdowns(cell_source(cell))
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
        previous = cells[i - 1] if i else None
        if SOLUTION_TAG in cell_tags(cell):
            names = defined_functions(cell_source(cell)) or [f"exercise-{i}"]
            cell["source"] = mark_solution(cell_source(cell))
            cell["metadata"]["tags"] = [t for t in cell_tags(cell) if t != "hide-input"]
            cell["metadata"]["nbgrader"] = _metadata(_unique("solution-" + "-".join(names), taken), solution=True)
        elif previous is not None and SOLUTION_TAG in cell_tags(previous) and cell["cell_type"] == "code":
            names = defined_functions(cell_source(previous)) or [f"exercise-{i - 1}"]
            cell["metadata"]["nbgrader"] = _metadata(_unique("check-" + "-".join(names), taken), grade=True,
                                                     points=points)
        else:
            cell["metadata"]["nbgrader"] = _metadata(_unique(f"cell-{i:03d}", taken))
    return notebook


def nbgrader_config(assignments: list[str], course_id: str = COURSE_ID) -> str:
    """The text of ``nbgrader_config.py`` for a course with ``assignments``."""
    listing = "".join(f"    {name!r},\n" for name in assignments)
    return (f'"""nbgrader configuration of the {course_id} course, written by '
            '`python -m mtlcode.course nbgrader`."""\n\n'
            "c = get_config()  # noqa: F821 (nbgrader defines get_config)\n\n"
            f"c.CourseDirectory.course_id = {course_id!r}\n\n"
            "# One assignment per chapter with checked exercises, in source/<assignment>/. nbgrader adds an\n"
            "# assignment to its database when `nbgrader generate_assignment <assignment>` first runs.\n"
            f"ASSIGNMENTS = [\n{listing}]\n\n"
            "# A chapter's cell may train a model for a minute on a CPU: nbgrader's default of 30 s per cell\n"
            "# is too short for autograding whole chapters.\n"
            "c.Execute.timeout = 600\n")


def write_nbgrader_course(course_dir: str | Path, book: str | Path | None = None, exercises_only: bool = False,
                          force: bool = False, course_id: str = COURSE_ID) -> list[Path]:
    """Write the nbgrader course into ``course_dir``; return the assignment notebooks written.

    Like the student edition, refuses (:class:`mtlcode.course.editions.EditedFilesError`) to
    overwrite a file that was edited since it was written, unless ``force``.
    """
    book = Path(book) if book is not None else default_book()
    files: dict[str, str] = {}
    for path in book_chapters(book):
        notebook = json.loads(path.read_text(encoding="utf-8"))
        if any(SOLUTION_TAG in cell_tags(c) for c in notebook["cells"]):
            exported = nbgrader_notebook(notebook, path.stem, exercises_only)
            files[f"source/{path.stem}/{path.name}"] = notebook_text(exported)
    if not files:
        raise FileNotFoundError(f"no chapter notebook with a checked exercise in {book}")
    files["nbgrader_config.py"] = nbgrader_config([name.split("/")[1] for name in files], course_id)
    course_dir = Path(course_dir)
    course_dir.mkdir(parents=True, exist_ok=True)
    return [p for p in write_files(course_dir, files, force) if p.suffix == ".ipynb"]
