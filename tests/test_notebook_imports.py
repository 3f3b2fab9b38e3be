"""The notebooks and the package import only what `pip install mtlcode` brings.

Readers run the chapters on Colab or in plain Jupyter with the package installed by the install
cell, without the book's tools (myst-nb, Jupyter Book) or the test tools. A chapter that imports
one of those fails in its first cell there (it did, issue 11). This static check names the cell;
`tests_readers/test_colab.py` runs the notebooks in such an environment.
"""

from __future__ import annotations

import ast
import json
import re
import sys
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
# Distribution name -> the module it installs, where the two differ.
MODULE_OF = {"pillow": "PIL", "scikit-learn": "sklearn"}
# What a Jupyter kernel itself provides.
KERNEL = {"IPython", "ipykernel"}


def _distribution(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ;]", requirement.strip(), maxsplit=1)[0].lower()


RUNTIME = {MODULE_OF.get(d, d) for d in map(_distribution, PROJECT["dependencies"])} | {"mtlcode"}
ALLOWED = RUNTIME | set(sys.stdlib_module_names) | {"__future__"}


def imported_modules(tree: ast.AST, *, top_level_only: bool = False) -> dict[str, int]:
    """Top-level module names imported in ``tree``, with a line number of each.

    ``top_level_only`` skips imports inside functions and ``try`` blocks: those are optional
    (guarded) or happen only when a function is called.
    """
    found: dict[str, int] = {}

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if top_level_only and isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Try)):
                continue
            if isinstance(child, ast.Import):
                for alias in child.names:
                    found.setdefault(alias.name.split(".")[0], child.lineno)
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                found.setdefault(child.module.split(".")[0], child.lineno)
            visit(child)

    visit(tree)
    return found


def _python_of(cell_source: str) -> str:
    # IPython magics and shell escapes are not Python (the install cell uses `%pip`): `pass` keeps
    # the block they stand in valid.
    def python(line: str) -> str:
        stripped = line.lstrip()
        return line[: len(line) - len(stripped)] + "pass" if stripped.startswith(("%", "!")) else line

    return "\n".join(map(python, cell_source.splitlines()))


NOTEBOOKS = sorted((ROOT / "book").glob("*.ipynb"))


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_notebooks_import_only_what_the_install_cell_installs(notebook):
    bad = []
    for index, cell in enumerate(json.loads(notebook.read_text())["cells"]):
        if cell["cell_type"] != "code":
            continue
        tree = ast.parse(_python_of("".join(cell["source"])))
        bad += [f"cell {index}: {module}" for module in imported_modules(tree)
                if module not in ALLOWED | KERNEL]
    assert not bad, (f"{notebook.name} imports modules that `pip install mtlcode` does not install: {bad}; "
                     "use mtlcode.book.glue instead of myst_nb, or add the package to pyproject's dependencies")


def test_the_package_imports_only_its_dependencies():
    bad = []
    for module in sorted((ROOT / "mtlcode").glob("*.py")):
        tree = ast.parse(module.read_text())
        bad += [f"{module.name}:{line}: {name}" for name, line in imported_modules(tree, top_level_only=True).items()
                if name not in ALLOWED]
    assert not bad, f"mtlcode imports modules missing from pyproject's dependencies: {bad}"


def test_the_check_can_fail():
    tree = ast.parse("import os\nfrom myst_nb import glue\ntry:\n    import yaml\nexcept ImportError:\n    pass\n")
    assert set(imported_modules(tree)) - ALLOWED == {"myst_nb", "yaml"}
    assert set(imported_modules(tree, top_level_only=True)) - ALLOWED == {"myst_nb"}
