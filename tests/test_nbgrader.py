"""The nbgrader export: valid nbgrader metadata, and a round trip through the real nbgrader.

The end-to-end tests (marked ``slow``) run ``nbgrader generate_assignment`` on every exported
assignment, then ``nbgrader autograde`` on two submissions: one holding the book's solutions
(full points) and one with a wrong answer (fewer points).
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from nbformat import from_dict

# nbgrader is a test dependency, pinned in pyproject.toml: a missing one fails here rather than skip.
from nbgrader.api import Gradebook
from nbgrader.nbgraderformat import SCHEMA_VERSION as NBGRADER_SCHEMA_VERSION
from nbgrader.nbgraderformat import MetadataValidator

from mtlcode.book.notebooks import defined_functions
from mtlcode.course import __main__ as course_cli
from mtlcode.course.nbgrader_export import (
    BEGIN,
    END,
    SCHEMA_VERSION,
    mark_solution,
    nbgrader_notebook,
    write_nbgrader_course,
)

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
CHAPTERS = sorted(BOOK.glob("[0-9][0-9]_*.ipynb"))
NBGRADER = Path(sys.executable).parent / "nbgrader"
OMNIGLOT_DIR = ROOT.parent / "shared" / "data" / "omniglot"


def source(cell: dict) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def book_solutions(chapter: str) -> dict[str, str]:
    """``{function name: the book's solution cell}`` of a chapter."""
    cells = load(BOOK / f"{chapter}.ipynb")["cells"]
    return {defined_functions(source(c))[0]: source(c) for c in cells if "solution" in c["metadata"].get("tags", [])}


def hidden_lines(solution: str) -> list[str]:
    """The statements of the solution's function bodies, which a release must not contain."""
    tree, lines = ast.parse(solution), solution.split("\n")
    hidden = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            body = node.body[1:] if isinstance(node.body[0], ast.Expr) else node.body
            hidden += [lines[n - 1].strip() for stmt in body for n in range(stmt.lineno, stmt.end_lineno + 1)]
    return [line for line in hidden if line]


# -- the export -----------------------------------------------------------------------------------

def test_we_write_the_schema_of_the_pinned_nbgrader():
    assert SCHEMA_VERSION == NBGRADER_SCHEMA_VERSION


def test_mark_solution_hides_bodies_and_keeps_signatures_and_docstrings():
    solution = '''import torch


@torch.no_grad()
def f(x,
      y=2):
    """Add."""
    # the trick: add
    secret = x + y
    return secret


def g(x): return x * 3


def h():
    """Only a docstring."""
'''
    marked = mark_solution(solution)
    compile(marked, "marked", "exec")
    lines = marked.split("\n")
    assert lines.count(f"    {BEGIN}") == 2 and lines.count(f"    {END}") == 2
    begin = lines.index(f"    {BEGIN}")
    assert lines[begin - 1].strip() == '"""Add."""' and lines[begin + 1].strip() == "# the trick: add"
    assert lines[lines.index(f"    {END}") - 1].strip() == "return secret"
    assert "def g(x):" in marked and "@torch.no_grad()" in marked and '"""Only a docstring."""' in marked
    assert mark_solution("answer = 42\n") == f"{BEGIN}\nanswer = 42\n{END}"


@pytest.mark.parametrize("exercises_only", [False, True], ids=["chapters", "exercises-only"])
def test_every_exported_notebook_has_valid_nbgrader_metadata(exercises_only):
    exported = 0
    for path in CHAPTERS:
        book = load(path)
        if not any("solution" in c["metadata"].get("tags", []) for c in book["cells"]):
            continue
        exported += 1
        notebook = nbgrader_notebook(book, path.stem, exercises_only=exercises_only)
        MetadataValidator().validate_nb(from_dict(notebook))  # raises on invalid metadata or duplicate ids
        cells = notebook["cells"]
        metadata = [c["metadata"]["nbgrader"] for c in cells]
        assert all(m["schema_version"] == NBGRADER_SCHEMA_VERSION for m in metadata)
        assert len({m["grade_id"] for m in metadata}) == len(cells)
        solutions = [i for i, m in enumerate(metadata) if m["solution"]]
        tests = [i for i, m in enumerate(metadata) if m["grade"]]
        assert solutions and [i + 1 for i in solutions] == tests, path.name
        assert all(metadata[i]["locked"] and metadata[i]["points"] > 0 for i in tests)
        assert all(m["locked"] for i, m in enumerate(metadata) if i not in solutions)
        assert "check_" in source(cells[tests[0]])
        for i in solutions:
            assert BEGIN in source(cells[i]) and "hide-input" not in cells[i]["metadata"]["tags"]
        assert not any("{dropdown} Solution" in source(c) for c in cells), "written answers are removed"
        if exercises_only:
            assert len(cells) < len(book["cells"]) and source(cells[0]).startswith("# ")
            assert "google.colab" in source(cells[1])
        else:
            assert len(cells) == len(book["cells"])
    assert exported >= 7


def test_the_command_writes_a_course_and_keeps_edited_files(tmp_path, capsys):
    course = tmp_path / "course"
    assert course_cli.main(["nbgrader", str(course), "--exercises-only"]) == 0
    assignments = sorted(p.name for p in (course / "source").iterdir())
    assert len(assignments) >= 7 and "03_algorithms" in assignments
    assert all((course / "source" / a / f"{a}.ipynb").is_file() for a in assignments)
    config = (course / "nbgrader_config.py").read_text()
    assert "c.CourseDirectory.course_id = 'mtl-book'" in config
    assert all(repr(a) in config for a in assignments)
    edited = course / "source" / "03_algorithms" / "03_algorithms.ipynb"
    edited.write_text(edited.read_text().replace("1. First-order MAML", "1. My own version of first-order MAML"))
    assert course_cli.main(["nbgrader", str(course)]) == 1
    assert str(edited) in capsys.readouterr().err


# -- the round trip through nbgrader ------------------------------------------------------------------

def run_nbgrader(course: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{NBGRADER.parent}{os.pathsep}{os.environ.get('PATH', '')}")  # nbgrader runs alembic
    if (OMNIGLOT_DIR / "images_background_small1.zip").is_file():
        env.setdefault("MTLCODE_DATA", str(OMNIGLOT_DIR))
    done = subprocess.run([str(NBGRADER), *args, f"--CourseDirectory.root={course}"], cwd=course, env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def hand_in(course: Path, assignment: str, student: str, answers: dict[str, str]) -> None:
    """A student's submission: the release notebook with ``answers`` in its solution cells."""
    notebook = load(course / "release" / assignment / f"{assignment}.ipynb")
    for cell in notebook["cells"]:
        meta = cell["metadata"].get("nbgrader", {})
        if meta.get("solution"):
            cell["source"] = answers[meta["grade_id"].removeprefix("solution-")]
    folder = course / "submitted" / student / assignment
    folder.mkdir(parents=True)
    (folder / f"{assignment}.ipynb").write_text(json.dumps(notebook))


def scores(course: Path, assignment: str, students: list[str]) -> dict[str, tuple[float, float]]:
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        return {s: (gradebook.find_submission(assignment, s).score, gradebook.find_submission(assignment, s).max_score)
                for s in students}


def round_trip(course: Path, assignment: str, wrong: dict[str, str]) -> dict[str, tuple[float, float]]:
    right = book_solutions(assignment)
    hand_in(course, assignment, "right", right)
    hand_in(course, assignment, "wrong", {**right, **wrong})
    run_nbgrader(course, "autograde", assignment, "--force")
    return scores(course, assignment, ["right", "wrong"])


@pytest.mark.slow
def test_nbgrader_generates_every_chapter_and_autogrades_one(tmp_path):
    course = tmp_path / "course"
    assignments = [p.parent.name for p in write_nbgrader_course(course, BOOK)]
    for assignment in assignments:
        run_nbgrader(course, "generate_assignment", assignment, "--force")
        release = load(course / "release" / assignment / f"{assignment}.ipynb")
        stubs = [source(c) for c in release["cells"] if c["metadata"]["nbgrader"]["solution"]]
        assert stubs and all("raise NotImplementedError()" in s and BEGIN not in s for s in stubs)
        kept = {line.strip() for stub in stubs for line in stub.split("\n")}
        for solution in book_solutions(assignment).values():
            leaked = [line for line in hidden_lines(solution) if line in kept]
            assert not leaked, f"{assignment}: the release still holds solution lines {leaked}"

    # The fastest chapter, run whole by autograde: the book's answer gets the point, a wrong one does not.
    wrong = book_solutions("07_tools")["batched_inner_step"].replace("params[name] - alpha", "params[name] + alpha")
    got = round_trip(course, "07_tools", {"batched_inner_step": wrong})
    assert got["right"][0] == got["right"][1] > 0, got
    assert got["wrong"][0] < got["right"][0], got


@pytest.mark.slow
def test_nbgrader_autogrades_an_exercises_only_assignment_with_partial_credit(tmp_path):
    course = tmp_path / "course"
    write_nbgrader_course(course, BOOK, exercises_only=True)
    run_nbgrader(course, "generate_assignment", "03_algorithms")
    wrong = book_solutions("03_algorithms")["inner_loop"].replace("create_graph=True", "create_graph=False")
    got = round_trip(course, "03_algorithms", {"inner_loop": wrong})
    points = float(len(book_solutions("03_algorithms")))  # one point per checked exercise
    assert points >= 2 and got == {"right": (points, points), "wrong": (points - 1, points)}, got
    # The autograded notebooks are where nbgrader keeps them, for `nbgrader generate_feedback`.
    assert (course / "autograded" / "wrong" / "03_algorithms" / "03_algorithms.ipynb").is_file()
    shutil.rmtree(course / "submitted")
