"""What the tests of the exercise checks share: the book's solutions, slips put into them, and
assertions on a check's feedback.

The reference solutions are read from the chapters' ``solution`` cells, so the code readers see
is the code tested; most wrong answers are that code with one slip put in (a string replacement).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from mtlcode.course import exercises

BOOK = Path(__file__).resolve().parents[1] / "book"
CHAPTERS = sorted(BOOK.glob("[0-9][0-9]_*.ipynb"))


def _cells(path: Path) -> list[dict]:
    return json.loads(path.read_text())["cells"]


def _source(cell: dict) -> str:
    return "".join(cell["source"])


def book_checks() -> list[tuple[Callable, str]]:
    """``(check, function name)`` of every checked exercise of the book, in chapter order."""
    found = []
    for path in CHAPTERS:
        cells = _cells(path)
        for solution, call in zip(cells, cells[1:]):
            if "solution" in solution["metadata"].get("tags", []):
                for check, function in re.findall(r"(check_\w+)\((\w+)\)", _source(call)):
                    found.append((getattr(exercises, check), function))
    return found


def solution_source(name: str) -> str:
    """The source of the book's solution cell that defines function ``name``."""
    for path in CHAPTERS:
        for cell in _cells(path):
            source = _source(cell)
            if "solution" in cell["metadata"].get("tags", []) and re.search(rf"^def {name}\(", source, re.M):
                return source
    raise LookupError(f"no solution cell defines {name}")


def define(source: str, name: str) -> Callable:
    namespace: dict = {}
    exec(source, namespace)
    return namespace[name]


def reference(name: str) -> Callable:
    return define(solution_source(name), name)


def mutated(name: str, *replacements: tuple[str, str]) -> Callable:
    """The reference solution of ``name`` with each ``old`` text replaced by ``new``."""
    source = solution_source(name)
    for old, new in replacements:
        assert old in source, f"{old!r} is not in the solution of {name}: update this test"
        source = source.replace(old, new)
    return define(source, name)


def case_names(check: Callable, name: str, capsys: pytest.CaptureFixture) -> list[str]:
    """The cases of ``check``, in order, as it prints them when the reference solution passes."""
    check(reference(name))
    return [line[len("    ✓ "):] for line in capsys.readouterr().out.splitlines() if line.startswith("    ✓ ")]


def first_case(check: Callable, name: str, capsys: pytest.CaptureFixture) -> str:
    return case_names(check, name, capsys)[0]


def assert_fails(check: Callable, fn: Callable, case: str, hint: str, capsys: pytest.CaptureFixture) -> None:
    """``check(fn)`` raises AssertionError, and its feedback names ``case`` and contains ``hint``."""
    with pytest.raises(AssertionError) as error:
        check(fn)
    printed = capsys.readouterr().out
    assert f"case '{case}' failed" in printed, printed
    assert f"case '{case}'" in str(error.value)
    assert "expected:" in printed and "got:" in printed and "hint:" in printed
    assert hint in printed, printed
