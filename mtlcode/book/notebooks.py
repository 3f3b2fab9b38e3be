"""Reading the book's notebooks: cells, tags, chapters and the exercises they hold.

Shared by the student edition, the grader and the nbgrader export, which all find an exercise the
same way (``book/STYLE.md``, rule 11): a code cell tagged ``solution``, after the markdown cell
that numbers the exercise, and followed by a cell that calls a check from :mod:`mtlcode.course.exercises`.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any

__all__ = ["SOLUTION_TAG", "NotebookError", "book_chapters", "cell_source", "cell_tags", "default_book",
           "code_fingerprint", "defined_functions", "notebook_text", "exercise_label", "read_notebook", "with_seed"]

SOLUTION_TAG = "solution"
# The number of an exercise: "**3. Title**" or "3. **Title**" at the start of a line.
_EXERCISE_NUMBER = re.compile(r"^(?:\*\*(\d+)\.|(\d+)\.[ \t]+\*\*)", re.M)


class NotebookError(ValueError):
    """A file that is not a notebook this project can read; the message names the file."""


def cell_source(cell: dict[str, Any]) -> str:
    """The cell's source as one string (nbformat allows a string or a list of lines)."""
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def cell_tags(cell: dict[str, Any]) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def exercise_label(markdown: str, chapter: str) -> str:
    """ "Exercise N of CHAPTER", N being the last exercise number in ``markdown`` (the statement)."""
    numbers = [a or b for a, b in _EXERCISE_NUMBER.findall(markdown)]
    return f"Exercise {numbers[-1]} of {chapter}" if numbers else f"Exercise of {chapter}"


def defined_functions(source: str) -> list[str]:
    """The names of the functions a cell defines at its top level ([] when it does not parse)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    return [n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]


def _cell_problem(cell: Any) -> str:
    """Why ``cell`` is not an nbformat 4 cell this project can read, or "" when it is."""
    if not isinstance(cell, dict):
        return f"a cell is a {type(cell).__name__}, not an object"
    if cell.get("cell_type") not in ("code", "markdown", "raw"):
        return f"a cell has the type {cell.get('cell_type')!r}"
    source = cell.get("source", "")
    if not (isinstance(source, str) or isinstance(source, list) and all(isinstance(s, str) for s in source)):
        return "a cell's source is neither a string nor a list of strings"
    metadata = cell.get("metadata", {})
    if not isinstance(metadata, dict) or not isinstance(metadata.get("tags", []), list):
        return "a cell's metadata or tags are malformed"
    if not all(isinstance(t, str) for t in metadata.get("tags", [])):
        return "a cell's tags are not strings"
    return ""


def read_notebook(path: str | Path) -> dict[str, Any]:
    """The notebook at ``path`` as JSON, checked far enough that the grader can walk its cells.

    Raises :class:`NotebookError` naming the file when it cannot be read, is not JSON or is not
    an nbformat 4 notebook, so that a batch can report the file and go on with the next one.
    """
    path = Path(path)
    try:
        notebook = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise NotebookError(f"{path}: cannot be read ({error})") from error
    except json.JSONDecodeError as error:
        raise NotebookError(f"{path}: not a notebook, the file is not JSON ({error})") from error
    if not isinstance(notebook, dict) or not isinstance(notebook.get("cells"), list):
        raise NotebookError(f"{path}: not a notebook, there is no list of cells")
    problem = next((p for p in map(_cell_problem, notebook["cells"]) if p), "")
    if problem:
        raise NotebookError(f"{path}: not a valid notebook, {problem}")
    return notebook


def book_chapters(book: Path) -> list[Path]:
    """The chapter notebooks ``NN_name.ipynb`` of the book directory, in order."""
    return sorted(Path(book).glob("[0-9][0-9]_*.ipynb"))


def default_book() -> Path:
    """``book/`` next to the package (a clone), else ``book/`` in the current directory."""
    for candidate in (Path(__file__).resolve().parents[2] / "book", Path.cwd() / "book"):
        if book_chapters(candidate):
            return candidate
    raise FileNotFoundError("no book/NN_*.ipynb found next to mtlcode or in the current directory; pass --book")


def with_seed(notebook: Any, seed: int) -> Any:
    """A copy of ``notebook`` (an nbformat node) with ``SEED = seed`` run right after its ``parameters`` cell.

    This is what papermill's parameter injection does; the readers' test and the claims sweep
    run the chapters at other training seeds than the book build this way.
    """
    import nbformat

    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    index = next((i for i, c in enumerate(notebook.cells) if "parameters" in cell_tags(c)), None)
    if index is None:
        raise NotebookError("the notebook has no cell tagged 'parameters', so it takes no SEED")
    copy = nbformat.from_dict(json.loads(json.dumps(notebook)))
    copy.cells.insert(index + 1, nbformat.v4.new_code_cell(f"SEED = {seed}"))
    return copy


def code_fingerprint(notebook: Any) -> str:
    """16 hex digits of the SHA-256 of a notebook's code cells: what decides what its run computes.

    ``benchmarks/claims.py`` labels each chapter's sweep with it, so a sweep of older code is
    recognised as such (the prose, which does not run, is left out). A Colab form title
    (``#@title ...`` as the first line, which the reader notebooks add) is a comment and left out
    too, so that a chapter and its reader notebook have the same fingerprint.
    """
    import hashlib

    code = "\n# cell\n".join(_without_form_title(cell_source(c)) for c in notebook["cells"]
                              if c["cell_type"] == "code")
    return hashlib.sha256(code.encode()).hexdigest()[:16]


def _without_form_title(source: str) -> str:
    first, newline, rest = source.partition("\n")
    return rest if first.startswith("#@title") else source


def notebook_text(notebook: dict[str, Any]) -> str:
    """The notebook as the files of this project are written: JSON indented by one, a final newline."""
    return json.dumps(notebook, indent=1, ensure_ascii=False) + "\n"
