"""The project's metadata stays consistent: pyproject, environment.yml, notebooks, public API."""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path

import pytest
import tomllib

import mtlcode

ROOT = Path(__file__).resolve().parents[1]


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ;]", requirement.strip(), maxsplit=1)[0].lower()


def test_environment_yml_agrees_with_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    text = (ROOT / "environment.yml").read_text()
    conda = {_name(line.strip()[2:]) for line in text.splitlines()
             if line.startswith("  - ") and not line.strip().startswith("- pip:")}
    pip_lines = [line.strip()[2:] for line in text.splitlines() if line.startswith("      - ")]
    conda_to_pip = {"pytorch": "torch"}
    conda = {conda_to_pip.get(name, name) for name in conda}
    runtime = {_name(r) for r in project["dependencies"]}
    assert runtime <= conda, f"runtime dependencies missing from environment.yml: {runtime - conda}"
    assert "python" in conda and re.search(r"python=3\.11", text)
    extras = set(project["optional-dependencies"])
    assert any(line == f"-e .[{','.join(sorted(extras))}]" for line in pip_lines), pip_lines


def test_pyproject_pins_the_documented_requirements():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "torch>=2.4" in project["dependencies"]
    assert any(r.startswith("jupyter-book>=1.0.4,<2") for r in project["optional-dependencies"]["book"])
    assert {"pytest", "nbval"} <= {_name(r) for r in project["optional-dependencies"]["test"]}


def test_public_api_names_exist():
    for name in ("device", "seed_everything", "MAML", "evaluate", "meta_train"):
        assert callable(getattr(mtlcode, name)), name
    for module, names in {
        "tasks": ["TaskBatch", "Sinusoid", "NWayKShot"],
        "data": ["Omniglot", "lake_one_shot_runs"],
        "models": ["MLP", "Conv4"],
        "learners.finetune": ["pretrain", "finetune"],
        "learners.adapters": ["LoRA", "FiLM", "add_adapters", "count_adapted"],
        "learners.ridge": ["R2D2", "ridge_weights"],
        "learners.incontext": ["CNP"],
        "training": ["meta_train"],
        "evaluation": ["evaluate", "Evaluation", "task_metric"],
        "checkpoints": ["save_checkpoint", "load_checkpoint"],
        "learners.base": ["Learner"],
        "book.plots": ["learning_curves", "sinusoid_fit", "task_grid"],
        "learners.rl": ["PointNavigation", "GaussianPolicy", "NavigationMAML", "meta_train_navigation",
                        "evaluate_navigation"],
    }.items():
        for name in names:
            assert hasattr(importlib.import_module(f"mtlcode.{module}"), name), f"mtlcode.{module}.{name}"


@pytest.mark.parametrize("notebook", sorted((ROOT / "book").rglob("*.ipynb")), ids=lambda p: p.name)
def test_notebooks_are_committed_without_outputs(notebook):
    cells = json.loads(notebook.read_text())["cells"]
    dirty = [i for i, c in enumerate(cells)
             if c["cell_type"] == "code" and (c.get("outputs") or c.get("execution_count") is not None)]
    assert not dirty, f"{notebook.name}: cells {dirty} carry outputs; clear them before committing"


def test_import_mtlcode_loads_only_the_core():
    """Heavy libraries load where they are used, not with the package (every torchrun worker imports it)."""
    code = ("import sys, mtlcode; heavy = [m for m in ('matplotlib', 'PIL', 'torchvision', 'mtlcode.learners.rl', "
            "'mtlcode.course.exercises', 'mtlcode.data', 'mtlcode.book.plots', 'mtlcode.train') if m in sys.modules]; "
            "print(heavy); mtlcode.book.plots.learning_curves")
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert done.stdout.strip() == "[]", done.stdout


def test_every_subpackage_is_listed_for_the_wheel():
    # pyproject lists its packages by hand (for the results mapping): a new subpackage left out
    # would be missing from `pip install` (Colab) while the clone still works.
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "mtlcode").rglob("__init__.py")}
    assert found <= listed, f"add {sorted(found - listed)} to [tool.setuptools] packages in pyproject.toml"
