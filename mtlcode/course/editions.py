"""The student edition of the book's notebooks: the solutions stubbed out, a student's work kept.

    python -m mtlcode.course write OUT_DIR      # the command line: mtlcode.course.__main__

The book marks its exercises in two ways (``book/STYLE.md``): the reference solution of a coding
exercise is a code cell tagged ``solution`` that imports what it uses and defines functions, and
the cell right after it calls a check from :mod:`mtlcode.course.exercises`; the answer to any exercise
may also sit in a MyST ``{dropdown}`` whose title starts with "Solution". In the student edition

* every ``solution`` cell becomes a stub: its imports, then each function's signature and
  docstring with a body that raises ``NotImplementedError("Exercise ...")``;
* the solution dropdowns are removed from the markdown;
* outputs and execution counts are cleared.

Everything else, the check cells included, is unchanged, so a student's notebook runs up to the
first exercise, stops there until the function is written, and the check says what is wrong.
Writing the edition again into the same folder never overwrites a notebook that was edited
since it was written (a student's work) unless ``--force`` is given.
"""

from __future__ import annotations

import ast
import copy
import hashlib
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
    exercise_label,
    notebook_text,
)

__all__ = ["EditedFilesError", "remove_solution_dropdowns", "stub_source", "student_notebook", "write_files",
           "write_student_edition"]

# A dropdown opens with a fence of 3+ backticks or colons, then {dropdown} and its title.
_DROPDOWN = re.compile(r"^[ \t]*(?P<fence>`{3,}|:{3,})\{dropdown\}[ \t]*(?P<title>.*)$")


# The same block in a reader notebook (mtlcode.book.readers): <details><summary>Solution</summary> ...
_DETAILS = re.compile(r"^[ \t]*<details>[ \t]*\n[ \t]*<summary>(?P<title>[^<]*)</summary>.*?^[ \t]*</details>[ \t]*$",
                      re.M | re.S)

# Titles of solution dropdowns, in every edition of the book.
SOLUTION_TITLES = ("solution", "解答")


def _source(cell: dict[str, Any]) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def _tags(cell: dict[str, Any]) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


# -- markdown ----------------------------------------------------------------------------------

def remove_solution_dropdowns(markdown: str) -> str:
    """``markdown`` without its ``{dropdown}`` blocks titled "Solution..." or "解答..." (other
    dropdowns stay), nor the ``<details>`` blocks a reader notebook holds them in.

    A block ends at the first line that holds only a fence of the same character, at least as
    long as the opening one, so longer fences around nested code blocks are handled.
    """
    lines = markdown.split("\n")
    kept: list[str] = []
    i = 0
    while i < len(lines):
        match = _DROPDOWN.match(lines[i])
        if not (match and match["title"].strip().lower().startswith(SOLUTION_TITLES)):
            kept.append(lines[i])
            i += 1
            continue
        fence = match["fence"]
        closing = re.compile(rf"^[ \t]*{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$")
        end = next((j for j in range(i + 1, len(lines)) if closing.match(lines[j])), None)
        if end is None:
            raise ValueError(f"unclosed solution dropdown: {lines[i]!r}")
        i = end + 1
    text = _DETAILS.sub(lambda m: "" if m["title"].strip().lower().startswith(SOLUTION_TITLES) else m[0],
                        "\n".join(kept))
    text = re.sub(r"\n(?:[ \t]*\n){2,}", "\n\n", text)  # the gaps the removed blocks leave
    return text.strip("\n")


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


# -- notebooks ---------------------------------------------------------------------------------

def student_notebook(notebook: dict[str, Any], chapter: str) -> dict[str, Any]:
    """A copy of ``notebook`` (nbformat 4 JSON) with solutions stubbed out and outputs cleared."""
    notebook = json.loads(json.dumps(notebook))
    last_markdown = ""
    for cell in notebook["cells"]:
        if cell["cell_type"] == "markdown":
            last_markdown = cell_source(cell)
            cell["source"] = remove_solution_dropdowns(last_markdown)
        elif cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
            if SOLUTION_TAG in cell_tags(cell):
                names = defined_functions(cell_source(cell))
                what = f"write {', '.join(names)}" if names else "write this cell"
                message = f"{exercise_label(last_markdown, chapter)}: {what}, then run the check below"
                cell["source"] = stub_source(cell_source(cell), message)
                cell["metadata"]["tags"] = [t for t in cell_tags(cell) if t != "hide-input"]
                cell["metadata"].pop("mystnb", None)  # the "Show the solution" toggle's labels
    return notebook


# -- writing without losing anyone's work --------------------------------------------------------

MANIFEST = ".mtlcode-written.json"  # hashes of the files last written into a folder


class EditedFilesError(FileExistsError):
    """Files that were edited since they were written (a student's work); nothing was written."""

    def __init__(self, paths: list[Path]) -> None:
        self.paths = paths
        names = ", ".join(str(p) for p in paths)
        super().__init__(f"{len(paths)} file(s) changed since they were written, not overwritten: {names}; "
                         "pass --force (force=True) to overwrite them")


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _recorded(folder: Path) -> dict[str, str]:
    try:
        files = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))["files"]
        return {str(k): str(v) for k, v in files.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}  # no manifest (or a damaged one): every differing file counts as edited


def _edited(folder: Path, files: dict[str, str]) -> list[Path]:
    """The targets that exist, differ from the new text, and are not as this project last wrote them."""
    recorded, edited = _recorded(folder), []
    for name, text in files.items():
        target = folder / name
        if not target.is_file():
            continue
        current = target.read_bytes()
        if current != text.encode("utf-8") and recorded.get(name) != _digest(current):
            edited.append(target)
    return edited


def write_files(folder: str | Path, files: dict[str, str], force: bool = False) -> list[Path]:
    """Write ``files`` (``{relative path: text}``) into ``folder``; return the paths written.

    A file that exists, differs from the new text and was changed since this function last
    wrote it (a hash of each file written is kept in ``folder/.mtlcode-written.json``) is
    somebody's work: then nothing is written and :class:`EditedFilesError` names the files,
    unless ``force``. Unchanged files are rewritten, so a new version of the book replaces them.
    """
    folder = Path(folder)
    edited = [] if force else _edited(folder, files)
    if edited:
        raise EditedFilesError(edited)
    written, recorded = [], _recorded(folder)
    for name, text in files.items():
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        recorded[name] = _digest(text.encode("utf-8"))
        written.append(target)
    (folder / MANIFEST).write_text(json.dumps({"files": recorded}, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return written


def _readme(notebooks: int, exercises: int, language: str = "en") -> str:
    if language == "zh":
        return ("# 学生版\n\n"
                f"共 {notebooks} 章笔记本，{exercises} 道编程练习。每道练习是一个会抛出 `NotImplementedError`\n"
                "的代码单元：把函数体换成你自己的代码，再运行它后面的单元，检查函数并指出错在哪里。\n"
                "笔记本导入 `mtlcode`（在 Colab 上，第一个代码单元会安装它）。\n")
    return ("# Student edition\n\n"
            f"{notebooks} chapter notebooks with {exercises} coding exercises to write. Each one is a cell that\n"
            "raises `NotImplementedError`: replace the function bodies with your own code, then run the\n"
            "cell after it, which checks your function and says what is wrong if something is.\n"
            "The notebooks import `mtlcode` (their first code cell installs it on Colab).\n")


def write_student_edition(out_dir: str | Path, book: str | Path | None = None, force: bool = False,
                          language: str = "en") -> list[Path]:
    """Write the student notebooks of every chapter of ``book`` into ``out_dir``; return their paths.

    ``language="zh"`` writes the Chinese edition's notebooks (``zh/book/`` of the project, unless
    ``book`` is given).

    Raises :class:`EditedFilesError` (and writes nothing) when a notebook in ``out_dir`` was
    edited since it was written, e.g. by a student, unless ``force``.
    """
    book = Path(book) if book is not None else _edition_book(language)
    chapters = book_chapters(book)
    if not chapters:
        raise FileNotFoundError(f"no chapter notebooks (NN_name.ipynb) in {book}")
    files, exercises = {}, 0
    for path in chapters:
        notebook = student_notebook(json.loads(path.read_text(encoding="utf-8")), path.stem)
        exercises += sum(SOLUTION_TAG in cell_tags(c) for c in notebook["cells"])
        files[path.name] = notebook_text(notebook)
    files["README.md"] = _readme(len(chapters), exercises, language)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return [p for p in write_files(out_dir, files, force) if p.suffix == ".ipynb"]


def _edition_book(language: str) -> Path:
    if language == "en":
        return default_book()
    book = default_book().parent / language / "book"
    if not book_chapters(book):
        raise FileNotFoundError(f"no {language} edition in {book}: write it with "
                                f"`python -m mtlcode.book.translation notebooks {language}`, or pass --book")
    return book
