"""The package's layout: three groups, imports only downwards, no circle, the old names kept.

The imports are read from the source (every ``import``, at the top of a module or inside a
function: an import moved into a function to dodge a circle is still a circle).
"""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from mtlcode import _aliases

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "mtlcode"
MAX_LINES = 360  # a module longer than this does more than one job; split it


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _target(name: str) -> str:
    """The module an import names: itself if it is one, else the package it comes from."""
    while name not in MODULES and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


def imports(module: str) -> set[str]:
    """The mtlcode modules that ``module`` imports (by their current names)."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        found |= {_target(name) for name in names if name.split(".")[0] == "mtlcode"}
    return found - {module}


GRAPH = {module: imports(module) for module in MODULES}


def group(module: str) -> str:
    for name in ("book", "course"):
        if module == f"mtlcode.{name}" or module.startswith(f"mtlcode.{name}."):
            return name
    return "library"


def test_there_are_three_groups_and_imports_go_down_only():
    allowed = {"library": {"library"}, "book": {"library", "book"}, "course": {"library", "book", "course"}}
    wrong = sorted(f"{m} ({group(m)}) imports {t} ({group(t)})" for m, targets in GRAPH.items() for t in targets
                   if group(t) not in allowed[group(m)])
    assert not wrong, "\n".join(wrong)
    assert {group(m) for m in MODULES} == {"library", "book", "course"}


def _circle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of ``graph`` (a list of modules, first = last), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_circle():
    # A package's __init__ that re-exports its submodules is not a circle with them: importing
    # mtlcode.learners.maml runs mtlcode/learners/__init__.py first, which then imports maml.
    graph = {m: {t for t in targets if not (m.startswith(t + ".") and MODULES[t].name == "__init__.py")}
             for m, targets in GRAPH.items()}
    assert _circle(graph) is None, " -> ".join(_circle(graph) or [])


def test_the_circle_finder_finds_a_circle():
    assert _circle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _circle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


# Modules longer than MAX_LINES, each waiting to be split (issue 25); the list only shrinks.
NOT_SPLIT_YET: set[str] = set()


@pytest.mark.parametrize("module", sorted(MODULES))
def test_modules_are_short(module):
    lines = len(MODULES[module].read_text(encoding="utf-8").splitlines())
    if module in NOT_SPLIT_YET:
        assert lines > MAX_LINES, f"{module} has {lines} lines now: remove it from NOT_SPLIT_YET"
        pytest.skip(f"{module}: {lines} lines, to be split")
    assert lines <= MAX_LINES, f"{module}: {lines} lines; a module this long does more than one job"


@pytest.mark.parametrize("old", sorted(_aliases.MOVED))
def test_the_names_of_version_0_1_still_work(old):
    new = _aliases.MOVED[old]
    assert importlib.import_module(old) is importlib.import_module(new)
    assert importlib.import_module(new).__spec__.name == new  # the module keeps its own name
    assert getattr(importlib.import_module("mtlcode"), old.removeprefix("mtlcode.")) is importlib.import_module(new)


def test_old_names_give_the_same_classes_and_checks():
    from mtlcode.exercises import check_inner_loop
    from mtlcode.maml import MAML

    import mtlcode
    from mtlcode.course.exercises import check_inner_loop as check

    assert MAML is mtlcode.MAML and check_inner_loop is check
    assert importlib.import_module("mtlcode.exercises.practice") is importlib.import_module(
        "mtlcode.course.exercises.practice")


def test_the_old_commands_run_with_a_note():
    done = subprocess.run([sys.executable, "-m", "mtlcode.translation", "--help"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "python -m mtlcode.book.translation" in done.stderr and "usage" in done.stdout.lower()


def test_a_name_that_never_existed_is_still_an_import_error():
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("mtlcode.no_such_module")
    with pytest.raises(AttributeError, match="no attribute 'no_such_module'"):
        _ = importlib.import_module("mtlcode").no_such_module


def test_every_package_is_installed():
    """pyproject.toml lists the packages one by one: a new folder left out would be missing on Colab."""
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    folders = {module_name(p) for p in PACKAGE.rglob("__init__.py")}
    assert folders <= listed, f"add to [tool.setuptools] packages: {sorted(folders - listed)}"
