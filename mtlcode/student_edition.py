"""The student edition of the book's notebooks, and a grader for the notebooks students hand in.

    python -m mtlcode.student_edition OUT_DIR              # write the student notebooks to OUT_DIR
    python -m mtlcode.student_edition --grade NB.ipynb ... # run the checks of handed-in notebooks

The book marks its exercises in two ways (``book/STYLE.md``): the reference solution of a coding
exercise is a code cell tagged ``solution`` that imports what it uses and defines functions, and
the cell right after it calls a check from :mod:`mtlcode.exercises`; the answer to any exercise
may also sit in a MyST ``{dropdown}`` whose title starts with "Solution". In the student edition

* every ``solution`` cell becomes a stub: its imports, then each function's signature and
  docstring with a body that raises ``NotImplementedError("Exercise ...")``;
* the solution dropdowns are removed from the markdown;
* outputs and execution counts are cleared.

Everything else, the check cells included, is unchanged, so a student's notebook runs up to the
first exercise, stops there until the function is written, and the check says what is wrong.

Grading runs each ``solution`` cell of a notebook and the check cell after it in a fresh namespace,
without running the rest of the chapter: seconds per notebook. It executes the students' code in
this process, as running their notebooks would; use a container for untrusted submissions.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import copy
import io
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Grade", "grade", "remove_solution_dropdowns", "stub_source", "student_notebook",
           "write_student_edition"]

SOLUTION_TAG = "solution"
# A dropdown opens with a fence of 3+ backticks or colons, then {dropdown} and its title.
_DROPDOWN = re.compile(r"^[ \t]*(?P<fence>`{3,}|:{3,})\{dropdown\}[ \t]*(?P<title>.*)$")
# The number of an exercise: "**3. Title**" or "3. **Title**" at the start of a line.
_EXERCISE_NUMBER = re.compile(r"^(?:\*\*(\d+)\.|(\d+)\.[ \t]+\*\*)", re.M)


def _source(cell: dict[str, Any]) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def _tags(cell: dict[str, Any]) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


# -- markdown ----------------------------------------------------------------------------------

def remove_solution_dropdowns(markdown: str) -> str:
    """``markdown`` without its ``{dropdown}`` blocks titled "Solution..." (other dropdowns stay).

    A block ends at the first line that holds only a fence of the same character, at least as
    long as the opening one, so longer fences around nested code blocks are handled.
    """
    lines = markdown.split("\n")
    kept: list[str] = []
    i = 0
    while i < len(lines):
        match = _DROPDOWN.match(lines[i])
        if not (match and match["title"].strip().lower().startswith("solution")):
            kept.append(lines[i])
            i += 1
            continue
        fence = match["fence"]
        closing = re.compile(rf"^[ \t]*{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$")
        end = next((j for j in range(i + 1, len(lines)) if closing.match(lines[j])), None)
        if end is None:
            raise ValueError(f"unclosed solution dropdown: {lines[i]!r}")
        i = end + 1
    text = "\n".join(kept)
    text = re.sub(r"\n(?:[ \t]*\n){2,}", "\n\n", text)  # the gaps the removed blocks leave
    return text.strip("\n")


def _exercise_label(markdown: str, chapter: str) -> str:
    numbers = [a or b for a, b in _EXERCISE_NUMBER.findall(markdown)]
    return f"Exercise {numbers[-1]} of {chapter}" if numbers else f"Exercise of {chapter}"


# -- solution cells ----------------------------------------------------------------------------

def _is_docstring(node: ast.stmt) -> bool:
    return isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)


def _function_stub(node: ast.FunctionDef | ast.AsyncFunctionDef, lines: list[str], message: str) -> str:
    """The function's own lines up to its docstring, then ``raise NotImplementedError``."""
    first, body = node.body[0], node.body
    raise_line = f"raise NotImplementedError({json.dumps(message)})"
    if first.lineno == node.lineno:  # a one-line definition: rebuild it instead of cutting lines
        stub = copy.copy(node)
        stub.body = [first] * _is_docstring(first) + ast.parse(raise_line).body
        return ast.unparse(stub)
    start = (node.decorator_list[0].lineno if node.decorator_list else node.lineno) - 1
    end = first.end_lineno if _is_docstring(first) else first.lineno - 1
    indent = " " * body[0].col_offset
    return "\n".join([*lines[start:end], indent + raise_line])


def stub_source(source: str, message: str) -> str:
    """The student's version of a solution cell: imports, signatures and docstrings, no bodies.

    Each function raises ``NotImplementedError(message)``. A cell that does more than import and
    define functions becomes a single ``raise NotImplementedError(message)``: nothing of the
    solution may leak into the stub.
    """
    tree = ast.parse(source)
    lines = source.split("\n")
    header = "# " + message.split(":")[0] + ": write your solution in this cell, then run the check below it."
    if not all(isinstance(n, ast.Import | ast.ImportFrom | ast.FunctionDef | ast.AsyncFunctionDef)
               for n in tree.body):
        return f"{header}\nraise NotImplementedError({json.dumps(message)})"
    imports = [ast.get_source_segment(source, n) or "" for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
    functions = [_function_stub(n, lines, message) for n in tree.body
                 if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    parts = [header + ("\n" + "\n".join(imports) if imports else "")] + functions
    return "\n\n\n".join(parts)


def _defined_functions(source: str) -> list[str]:
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    return [n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]


# -- notebooks ---------------------------------------------------------------------------------

def student_notebook(notebook: dict[str, Any], chapter: str) -> dict[str, Any]:
    """A copy of ``notebook`` (nbformat 4 JSON) with solutions stubbed out and outputs cleared."""
    notebook = json.loads(json.dumps(notebook))
    last_markdown = ""
    for cell in notebook["cells"]:
        if cell["cell_type"] == "markdown":
            last_markdown = _source(cell)
            cell["source"] = remove_solution_dropdowns(last_markdown)
        elif cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
            if SOLUTION_TAG in _tags(cell):
                names = _defined_functions(_source(cell))
                what = f"write {', '.join(names)}" if names else "write this cell"
                message = f"{_exercise_label(last_markdown, chapter)}: {what}, then run the check below"
                cell["source"] = stub_source(_source(cell), message)
                cell["metadata"]["tags"] = [t for t in _tags(cell) if t != "hide-input"]
                cell["metadata"].pop("mystnb", None)  # the "Show the solution" toggle's labels
    return notebook


def book_chapters(book: Path) -> list[Path]:
    """The chapter notebooks ``NN_name.ipynb`` of the book directory, in order."""
    return sorted(book.glob("[0-9][0-9]_*.ipynb"))


def _default_book() -> Path:
    for candidate in (Path(__file__).resolve().parents[1] / "book", Path.cwd() / "book"):
        if book_chapters(candidate):
            return candidate
    raise FileNotFoundError("no book/NN_*.ipynb found next to mtlcode or in the current directory; pass --book")


def write_student_edition(out_dir: str | Path, book: str | Path | None = None) -> list[Path]:
    """Write the student notebooks of every chapter of ``book`` into ``out_dir``; return their paths."""
    book = Path(book) if book is not None else _default_book()
    out_dir = Path(out_dir)
    chapters = book_chapters(book)
    if not chapters:
        raise FileNotFoundError(f"no chapter notebooks (NN_name.ipynb) in {book}")
    out_dir.mkdir(parents=True, exist_ok=True)
    written, exercises = [], 0
    for path in chapters:
        notebook = student_notebook(json.loads(path.read_text(encoding="utf-8")), path.stem)
        exercises += sum(SOLUTION_TAG in _tags(c) for c in notebook["cells"])
        target = out_dir / path.name
        target.write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        written.append(target)
    (out_dir / "README.md").write_text(
        "# Student edition\n\n"
        f"{len(written)} chapter notebooks with {exercises} coding exercises to write. Each one is a cell that\n"
        "raises `NotImplementedError`: replace the function bodies with your own code, then run the\n"
        "cell after it, which checks your function and says what is wrong if something is.\n"
        "The notebooks import `mtlcode` (their first code cell installs it on Colab).\n", encoding="utf-8")
    return written


# -- grading -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Grade:
    """The result of one exercise of a handed-in notebook."""

    notebook: str
    exercise: str
    status: str  # "passed", "failed", "not done" or "error"
    feedback: str


def grade(path: str | Path) -> list[Grade]:
    """Run every ``solution`` cell of the notebook at ``path`` and the check cell after it.

    Each exercise runs in a fresh namespace (solution cells import what they use), so one
    exercise's failure does not affect another's grade.
    """
    path = Path(path)
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    grades, last_markdown = [], ""
    for i, cell in enumerate(cells):
        if cell["cell_type"] == "markdown":
            last_markdown = _source(cell)
        if cell["cell_type"] != "code" or SOLUTION_TAG not in _tags(cell):
            continue
        label = _exercise_label(last_markdown, path.stem)
        names = _defined_functions(_source(cell))
        exercise = f"{label} ({', '.join(names)})" if names else label
        check = _source(cells[i + 1]) if i + 1 < len(cells) and cells[i + 1]["cell_type"] == "code" else ""
        if "check_" not in check:
            grades.append(Grade(path.name, exercise, "error", "no check cell after the solution cell"))
            continue
        namespace: dict[str, Any] = {"__name__": "__exercise__"}
        printed = io.StringIO()
        try:
            with contextlib.redirect_stdout(printed):
                exec(compile(_source(cell), f"{path.name}, cell {i}", "exec"), namespace)  # noqa: S102
                exec(compile(check, f"{path.name}, cell {i + 1}", "exec"), namespace)  # noqa: S102
            status, feedback = "passed", printed.getvalue()
        except NotImplementedError as error:
            status, feedback = "not done", str(error)
        except AssertionError:
            status, feedback = "failed", printed.getvalue()
        except Exception as error:  # the student's code may raise anything
            status, feedback = "error", printed.getvalue() + f"{type(error).__name__}: {error}"
        grades.append(Grade(path.name, exercise, status, feedback.strip()))
    return grades


# -- command line ------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out_dir", nargs="?", type=Path, help="where to write the student notebooks")
    p.add_argument("--book", type=Path, default=None, help="the book's directory (default: book/ of this project)")
    p.add_argument("--grade", nargs="+", type=Path, metavar="NOTEBOOK",
                   help="grade handed-in notebooks instead: run each exercise's check")
    p.add_argument("--verbose", action="store_true", help="with --grade: print the feedback of every exercise")
    args = p.parse_args(argv)
    if (args.out_dir is None) == (args.grade is None):
        p.error("give either OUT_DIR or --grade NOTEBOOK ...")
    if args.out_dir is not None:
        written = write_student_edition(args.out_dir, args.book)
        print(f"wrote {len(written)} student notebooks to {args.out_dir}")
        return 0
    all_passed = True
    for notebook in args.grade:
        for result in grade(notebook):
            all_passed &= result.status == "passed"
            print(f"{result.status:9s} {result.notebook}: {result.exercise}")
            if result.feedback and (args.verbose or result.status in ("failed", "error")):
                print("    " + result.feedback.replace("\n", "\n    "))
    return 0 if all_passed else 1


if __name__ == "__main__":
    sys.exit(main())
