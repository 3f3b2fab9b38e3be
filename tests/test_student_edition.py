"""The student edition: solutions stubbed out, dropdown answers removed, checks still in place;
a student notebook stops at its first exercise, and the grader tells done from not done."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from mtlcode.course import __main__ as course_cli
from mtlcode.course import editions
from mtlcode.course.editions import remove_solution_dropdowns, stub_source, write_student_edition
from mtlcode.course.grading import grade

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
CHAPTERS = sorted(BOOK.glob("[0-9][0-9]_*.ipynb"))
# The chapter whose student notebook is executed: the fastest one with a checked exercise.
EXECUTED = "07_tools"


def cells(path: Path) -> list[dict]:
    return json.loads(path.read_text())["cells"]


def source(cell: dict) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def is_solution(cell: dict) -> bool:
    return "solution" in cell.get("metadata", {}).get("tags", [])


def body_lines(solution: str) -> list[str]:
    """The lines of the solution's function bodies that a stub must not contain (not docstrings)."""
    tree = ast.parse(solution)
    lines = solution.split("\n")
    hidden = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            body = node.body[1:] if isinstance(node.body[0], ast.Expr) else node.body
            hidden += [lines[n - 1].strip() for stmt in body for n in range(stmt.lineno, stmt.end_lineno + 1)]
    return [line for line in hidden if line]


@pytest.fixture(scope="module")
def student_dir(tmp_path_factory) -> Path:
    """The student edition of the real book, written by the command line as a lecturer would."""
    out = tmp_path_factory.mktemp("edition") / "student"
    done = subprocess.run([sys.executable, "-m", "mtlcode.course", "write", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"wrote {len(CHAPTERS)} student notebooks" in done.stdout
    return out


# -- the book follows the conventions the student edition relies on -----------------------------

@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_exercises_follow_the_conventions(path):
    nb = cells(path)
    markdown = "\n".join(source(c) for c in nb if c["cell_type"] == "markdown")
    exercises = markdown[markdown.index("## Exercises"):]
    numbers = re.findall(r"^(?:\*\*(\d+)\.|(\d+)\.[ \t]+\*\*)", exercises, re.M)
    assert len(numbers) >= 3, f"{path.name}: at least three exercises, found {len(numbers)}"
    for i, cell in enumerate(nb):
        if not is_solution(cell):
            continue
        tree = ast.parse(source(cell))
        assert all(isinstance(n, ast.Import | ast.ImportFrom | ast.FunctionDef) for n in tree.body), \
            f"{path.name} cell {i}: a solution cell only imports and defines functions"
        assert "hide-input" in cell["metadata"]["tags"], f"{path.name} cell {i}: solutions are hidden in the book"
        assert cell["metadata"].get("mystnb", {}).get("code_prompt_show") == "Show the solution", \
            f"{path.name} cell {i}: label the toggle (book/STYLE.md)"
        check = source(nb[i + 1]) if i + 1 < len(nb) else ""
        assert nb[i + 1]["cell_type"] == "code" and "mtlcode.course.exercises import check_" in check, \
            f"{path.name} cell {i}: the cell after a solution calls a check from mtlcode.course.exercises"
        assert not is_solution(nb[i + 1])


def test_most_chapters_have_a_checked_exercise():
    checked = [p.stem for p in CHAPTERS if any(is_solution(c) for c in cells(p))]
    assert len(checked) >= 7, checked
    assert EXECUTED in checked


# -- the command and what it writes -------------------------------------------------------------

def test_student_edition_replaces_solutions_and_removes_dropdowns(student_dir):
    written = sorted(p.name for p in student_dir.glob("*.ipynb"))
    assert written == [p.name for p in CHAPTERS]
    stubs = 0
    for path in CHAPTERS:
        book, student = cells(path), cells(student_dir / path.name)
        assert len(book) == len(student), path.name
        for ours, theirs in zip(book, student):
            assert ours.get("id") == theirs.get("id")
            text = source(theirs)
            if theirs["cell_type"] == "markdown":
                assert not re.search(r"\{dropdown\}\s*Solution", text), f"{path.name}: a solution dropdown is left"
                if "{dropdown}" not in source(ours):
                    assert text == source(ours).strip("\n")
                continue
            assert theirs["outputs"] == [] and theirs["execution_count"] is None
            if not is_solution(ours):
                assert text == source(ours)
                continue
            stubs += 1
            assert "raise NotImplementedError(\"Exercise " in text
            assert "hide-input" not in theirs["metadata"]["tags"]
            stub_lines = {line.strip() for line in text.split("\n")}
            leaked = [line for line in body_lines(source(ours)) if line in stub_lines]
            assert not leaked, f"{path.name}: the stub still contains solution lines {leaked}"
            compile(text, path.name, "exec")  # the stub is valid Python
    assert stubs >= 8
    assert "NotImplementedError" in (student_dir / "README.md").read_text()


@pytest.mark.slow
def test_a_student_notebook_stops_at_its_first_exercise_and_passes_with_the_solution(student_dir):
    nb = nbformat.read(student_dir / f"{EXECUTED}.ipynb", as_version=4)
    reference = nbformat.read(BOOK / f"{EXECUTED}.ipynb", as_version=4)
    first = next(i for i, c in enumerate(nb.cells) if "solution" in c.metadata.get("tags", []))
    client = NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(student_dir)}})
    with client.setup_kernel():
        failure = None
        for i, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            try:
                client.execute_cell(cell, i)
            except CellExecutionError as error:
                failure = i, error
                break
        assert failure is not None, "the student notebook ran through although an exercise is not written"
        index, error = failure
        assert index == first + 1, f"stopped at cell {index}, not at the check of the first exercise ({first + 1})"
        assert error.ename == "NotImplementedError" and "Exercise" in error.evalue

        # The student writes the function (here: the book's solution); the check now passes.
        nb.cells[first].source = reference.cells[first].source
        client.execute_cell(nb.cells[first], first)
        client.execute_cell(nb.cells[first + 1], first + 1)
    printed = "".join(o.get("text", "") for o in nb.cells[first + 1].outputs)
    assert "cases passed" in printed and "✗" not in printed


# -- grading ------------------------------------------------------------------------------------

def test_grade_tells_passed_from_not_done_and_failed(student_dir, tmp_path):
    book_grades = [g for path in CHAPTERS for g in grade(path)]
    assert len(book_grades) >= 8 and all(g.status == "passed" for g in book_grades), book_grades
    assert all(g.status == "not done" for path in CHAPTERS for g in grade(student_dir / path.name))

    # A handed-in notebook with one wrong answer and one answer that crashes.
    nb = json.loads((student_dir / "03_algorithms.ipynb").read_text())
    solutions = [c for c in nb["cells"] if is_solution(c)]
    reference = [c for c in cells(BOOK / "03_algorithms.ipynb") if is_solution(c)]
    solutions[0]["source"] = source(reference[0]).replace(".mean()  # the mean", ".sum()  # the")
    solutions[1]["source"] = "def inner_loop(model, params, support_x, support_y, alpha, steps):\n    return 1 / 0\n"
    handed_in = tmp_path / "03_algorithms.ipynb"
    handed_in.write_text(json.dumps(nb))
    wrong, crashed, *rest = grade(handed_in)
    assert rest and [g.status for g in rest] == ["not done"] * len(rest), rest
    assert wrong.status == "failed" and "case 'four tasks' failed" in wrong.feedback and "sum" in wrong.feedback
    assert crashed.status == "failed" and "ZeroDivisionError" in crashed.feedback
    assert course_cli.main(["grade", str(handed_in)]) == 1
    assert course_cli.main(["grade", str(CHAPTERS[0])]) == 0


# -- the pieces -----------------------------------------------------------------------------------

def test_remove_solution_dropdowns_handles_fences_indentation_and_other_dropdowns():
    text = "\n".join([
        "1. **Question.** Why?",
        "",
        "   ```{dropdown} Solution",
        "   Because.",
        "   ```",
        "",
        "````{dropdown} Solution (with code)",
        "```python",
        "print(1)",
        "```",
        "````",
        "",
        ":::{dropdown} Solution",
        "colon fence",
        ":::",
        "",
        "```{dropdown} Hint",
        "kept",
        "```",
        "2. **Next.**",
    ])
    result = remove_solution_dropdowns(text)
    assert "Because" not in result and "print(1)" not in result and "colon fence" not in result
    assert "```{dropdown} Hint\nkept\n```" in result
    assert result.startswith("1. **Question.** Why?\n\n```{dropdown} Hint")
    with pytest.raises(ValueError, match="unclosed"):
        remove_solution_dropdowns("```{dropdown} Solution\nnever closed")


def test_stub_source_keeps_imports_signatures_and_docstrings_only():
    solution = '''import torch


@torch.no_grad()
def f(x,
      y=2):
    """Add."""
    secret = x + y
    return secret


def g(x): return x * 3
'''
    stub = stub_source(solution, "Exercise 1 of 99_test: write f, g")
    namespace: dict = {}
    exec(stub, namespace)
    assert stub.startswith("# Exercise 1 of 99_test: write your solution")
    assert "import torch" in stub and "@torch.no_grad()" in stub and '"""Add."""' in stub
    assert "secret" not in stub and "x * 3" not in stub
    for name in ("f", "g"):
        with pytest.raises(NotImplementedError, match="Exercise 1 of 99_test"):
            namespace[name](1)
    # A cell that does more than define functions is replaced as a whole.
    assert stub_source("answer = 42\n", "Exercise 2").endswith('raise NotImplementedError("Exercise 2")')


def test_write_student_edition_needs_chapters(tmp_path):
    with pytest.raises(FileNotFoundError):
        write_student_edition(tmp_path / "out", book=tmp_path)


# -- writing the edition again ----------------------------------------------------------------------

def tiny_book(folder: Path, docstring: str = "Twice x.") -> Path:
    """A book of one chapter with one checked exercise."""
    folder.mkdir(parents=True, exist_ok=True)
    cells = [
        {"cell_type": "markdown", "id": "title", "metadata": {}, "source": "# Tiny\n\n## Exercises\n\n**1. Twice.**"},
        {"cell_type": "code", "id": "solution", "metadata": {"tags": ["solution", "hide-input"]}, "outputs": [],
         "execution_count": None, "source": f'def twice(x):\n    """{docstring}"""\n    return 2 * x\n'},
        {"cell_type": "code", "id": "check", "metadata": {}, "outputs": [], "execution_count": None,
         "source": "from mtlcode.course.exercises import check_twice\n\ncheck_twice(twice)\n"},
    ]
    (folder / "01_tiny.ipynb").write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4,
                                                      "nbformat_minor": 5}))
    return folder


def test_writing_again_never_overwrites_a_students_work(tmp_path, capsys):
    book, out = tiny_book(tmp_path / "book"), tmp_path / "student"
    written = out / "01_tiny.ipynb"
    assert course_cli.main(["write", str(out), "--book", str(book)]) == 0
    assert course_cli.main(["write", str(out), "--book", str(book)]) == 0, "an unchanged folder is written again"

    # A new version of the book replaces the notebooks nobody edited.
    tiny_book(book, docstring="Two times x.")
    assert course_cli.main(["write", str(out), "--book", str(book)]) == 0
    assert "Two times x." in written.read_text()

    # A student's edited notebook is kept, and the command says which file and how to overwrite it.
    work = written.read_text().replace("raise NotImplementedError", "return x + x  #")
    written.write_text(work)
    capsys.readouterr()
    assert course_cli.main(["write", str(out), "--book", str(book)]) == 1
    message = capsys.readouterr().err
    assert str(written) in message and "--force" in message
    assert written.read_text() == work
    with pytest.raises(editions.EditedFilesError) as error:
        write_student_edition(out, book=book)
    assert error.value.paths == [written]

    assert course_cli.main(["write", str(out), "--book", str(book), "--force"]) == 0
    assert written.read_text() != work and "NotImplementedError" in written.read_text()


def test_a_folder_written_by_hand_is_not_overwritten(tmp_path):
    book, out = tiny_book(tmp_path / "book"), tmp_path / "student"
    out.mkdir()
    (out / "01_tiny.ipynb").write_text("{}")  # not written by this command: no record of it
    with pytest.raises(editions.EditedFilesError):
        write_student_edition(out, book=book)
    assert (out / "01_tiny.ipynb").read_text() == "{}"


def test_the_command_needs_a_subcommand_and_its_arguments(tmp_path, capsys):
    for argv in ([], ["grade"], ["nbgrader"], ["write", str(tmp_path), "--grade", "x.ipynb"]):
        with pytest.raises(SystemExit) as error:
            course_cli.main(argv)
        assert error.value.code == 2, argv
    assert "required" in capsys.readouterr().err


def test_the_old_spelling_still_works_with_a_note(tmp_path):
    """``python -m mtlcode.student_edition OUT`` (version 0.1) writes the edition and names the new command."""
    book, out = tiny_book(tmp_path / "book"), tmp_path / "student"
    done = subprocess.run([sys.executable, "-m", "mtlcode.student_edition", str(out), "--book", str(book)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert (out / "01_tiny.ipynb").exists()
    assert "python -m mtlcode.course write" in done.stderr
