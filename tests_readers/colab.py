"""A Colab-like environment: a fresh virtual environment with the stack Colab preinstalls.

It holds no ``mtlcode`` and none of the book's or tests' tools. The chapters install the package
themselves, through their install cell, the way a reader's Colab runtime does.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import torch
import torchvision
import yaml
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

ROOT = Path(__file__).resolve().parents[1]
REPOSITORY_URL = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"]
HOME = ROOT / "_build" / "colab"
KERNEL = "colab-like"


def _release(version: str) -> str:
    return version.split("+")[0]


# What a Colab runtime has before the reader installs anything; torch and torchvision are the
# wheels of the project's own environment (the same files; pip takes them from its cache).
COLAB_STACK = [
    f"torch=={_release(torch.__version__)}",
    f"torchvision=={_release(torchvision.__version__)}",
    "numpy", "matplotlib", "tqdm", "pandas", "scipy", "scikit-learn", "ipykernel",
]

# Stands in for Colab's own module, so that the install cell's `if "google.colab" in sys.modules`
# branch runs.
FAKE_COLAB = 'import sys, types\nsys.modules["google.colab"] = types.ModuleType("google.colab")'


def _run(*command: str | os.PathLike[str], **kwargs) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(c) for c in command], capture_output=True, text=True, **kwargs)
    if result.returncode:
        raise RuntimeError(f"{' '.join(map(str, command))} failed ({result.returncode}):\n"
                           f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def python() -> Path:
    return HOME / "venv" / "bin" / "python"


def create_environment() -> Path:
    """The Colab-like venv under ``_build/colab`` (reused while its stack is unchanged), without mtlcode.

    Returns the folder to put on ``JUPYTER_PATH`` so that its kernel, ``colab-like``, is found.
    """
    stamp = HOME / "venv" / "stack.json"
    wanted = json.dumps(COLAB_STACK)
    if not (stamp.is_file() and stamp.read_text() == wanted and python().is_file()):
        shutil.rmtree(HOME / "venv", ignore_errors=True)
        _run(_base_python(), "-m", "venv", HOME / "venv")
        _run(python(), "-m", "pip", "install", "--quiet", "--upgrade", "pip")
        _run(python(), "-m", "pip", "install", "--quiet", *COLAB_STACK)
        stamp.write_text(wanted)
    # A reused venv may hold the package from an earlier run: start as Colab does, without it.
    _run(python(), "-m", "pip", "uninstall", "--quiet", "--yes", "mtlcode")
    jupyter = HOME / "jupyter"
    shutil.rmtree(jupyter, ignore_errors=True)
    _run(python(), "-m", "ipykernel", "install", "--prefix", jupyter, "--name", KERNEL)
    spec_file = jupyter / "share" / "jupyter" / "kernels" / KERNEL / "kernel.json"
    spec = json.loads(spec_file.read_text())
    spec["env"] = {"PATH": f"{python().parent}{os.pathsep}/usr/local/bin{os.pathsep}/usr/bin{os.pathsep}/bin",
                   "VIRTUAL_ENV": "", "PYTHONPATH": ""}
    spec_file.write_text(json.dumps(spec, indent=1))
    return jupyter / "share" / "jupyter"


def _base_python() -> str:
    """The interpreter the project's venv was made from (not the venv itself: a fresh venv must not see it)."""
    base = Path(sys.base_prefix) / "bin" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    return str(base if base.exists() else shutil.which("python3"))


def snapshot_repository(folder: Path) -> Path:
    """A git repository at ``folder`` holding the checkout's files as they are now (committed or not).

    Colab installs from the repository with git; installing from this snapshot goes the same way
    (pip clones it and builds the package) and includes work not committed yet.
    """
    files = _run("git", "ls-files", "--cached", "--others", "--exclude-standard", "-z", cwd=ROOT).stdout
    for name in filter(None, files.split("\0")):
        source = ROOT / name
        if source.is_file():
            target = folder / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    git = ("git", "-c", "user.name=test", "-c", "user.email=test@localhost")
    _run(*git, "init", "--quiet", cwd=folder)
    _run(*git, "add", "--all", cwd=folder)
    _run(*git, "commit", "--quiet", "-m", "snapshot for the Colab-like test", cwd=folder)
    return folder


def point_install_cell_at(notebook: nbformat.NotebookNode, repository: Path) -> None:
    """Swap the install cell's repository address (``_config.yml``'s) for ``repository``."""
    address = f"git+{REPOSITORY_URL}"
    cells = [c for c in notebook.cells if c.cell_type == "code" and address in c.source]
    if len(cells) != 1:
        raise AssertionError(f"expected one install cell naming {address}, found {len(cells)}")
    cells[0].source = cells[0].source.replace(address, f"git+file://{repository}")


def execute(notebook: nbformat.NotebookNode, workdir: Path, *, colab: bool = False,
            timeout: int = 900) -> tuple[int | None, CellExecutionError | None]:
    """Run ``notebook`` cell by cell in the Colab-like kernel, in ``workdir``.

    Returns ``(index, error)`` of the first cell that raised (index into ``notebook.cells``), or
    ``(None, None)``. With ``colab=True`` a first cell fakes ``google.colab``.
    """
    cells = list(notebook.cells)
    if colab:
        notebook = nbformat.from_dict(dict(notebook))
        notebook.cells = [nbformat.v4.new_code_cell(FAKE_COLAB)] + cells
    client = NotebookClient(notebook, kernel_name=KERNEL, timeout=timeout, allow_errors=False,
                            resources={"metadata": {"path": str(workdir)}})
    with client.setup_kernel():
        for index, cell in enumerate(notebook.cells):
            try:
                client.execute_cell(cell, index)
            except CellExecutionError as error:
                return index - colab, error
    return None, None
