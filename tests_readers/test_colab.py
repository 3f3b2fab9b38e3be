"""Every reader notebook and every student notebook runs where readers run it: a Colab-like runtime.

The notebooks readers open are the reader notebooks, ``readers/<lang>/book/*.ipynb`` (the Colab
launch buttons and the README lead there; ``mtlcode.book.readers`` writes them from ``book/``).
The environment (``colab.py``) has Colab's preinstalled stack and no ``mtlcode``. The English
chapter 1 runs first with ``google.colab`` faked, so that its install cell installs the package
from (a snapshot of) this checkout with git, exactly as a reader's Colab installs it from the
repository. The other reader notebooks of both languages then run in the same environment, as
many at once as there are cores, each chapter in a fresh folder that holds only the notebook (a
Colab runtime has no clone of the repository), and each language's instructor page in a folder
holding that language's chapters, as in a clone (it reads them). A student notebook's code before
its first exercise is the chapter's, so only its first exercise runs again there, and must stop
with the stub's NotImplementedError.

The chapters run here at another training seed than the book build (``READERS_SEED``, set after
each chapter's ``parameters`` cell) and with the claims strict: every CI run thus shows that the
prose's claims do not hang on the build's seed (``benchmarks/claims.py`` sweeps more seeds).
"""

from __future__ import annotations

import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
import pytest
from colab import (
    COLAB_STACK,
    ROOT,
    _run,
    create_environment,
    execute,
    point_install_cell_at,
    python,
    snapshot_repository,
)

from mtlcode.book import STRICT_ENV
from mtlcode.book.execute import longest_first
from mtlcode.book.notebooks import SOLUTION_TAG, book_chapters, with_seed
from mtlcode.course.editions import write_student_edition

CHAPTERS = book_chapters(ROOT / "book")  # the sources, from which the student edition is written
READERS = {language: ROOT / "readers" / language / "book" for language in ("en", "zh")}
FIRST = READERS["en"] / CHAPTERS[0].name  # runs first: its install cell installs mtlcode
# Every other reader notebook: the chapters of both languages, then each language's instructor page.
OTHERS = [path for folder in READERS.values() for path in book_chapters(folder) + [folder / "instructor.ipynb"]
          if path != FIRST]
READERS_SEED = 1  # the book build runs every chapter at its default, SEED = 0


def label(path: Path) -> str:
    return f"{path.parents[1].name}/{path.stem}"  # "zh/05_practice"


def read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def report(path: Path, index: int | None, error: Exception | None) -> str:
    return f"{label(path)} (SEED = {READERS_SEED}, its cell after 'parameters'): cell {index} raised\n{error}"


@pytest.fixture(scope="session")
def repository(tmp_path_factory):
    os.environ["JUPYTER_PATH"] = str(create_environment())
    os.environ[STRICT_ENV] = "1"  # a claim that does not hold fails the chapter here (kernels inherit it)
    return snapshot_repository(tmp_path_factory.mktemp("repository"))


@pytest.fixture(scope="session")
def installed(repository, tmp_path_factory):
    """Chapter 1's reader notebook run as on Colab; its install cell installs mtlcode. (index, error) of its run."""
    notebook = with_seed(read(FIRST), READERS_SEED)
    point_install_cell_at(notebook, repository)
    return execute(notebook, tmp_path_factory.mktemp("content"), colab=True)


def test_the_install_cell_installs_the_package_on_colab(installed):
    index, error = installed
    assert error is None, report(FIRST, index, error)
    where = _run(python(), "-c", "import mtlcode, mtlcode.book.results as r; print(mtlcode.__file__); "
                 "print(r.results_dir()); print(len(list(r.results_dir().glob('*.json'))))",
                 cwd=python().parent).stdout.split()  # not the checkout: it holds mtlcode/
    site_packages = str(python().parents[1] / "lib")
    assert where[0].startswith(site_packages), f"mtlcode imported from {where[0]}, not the Colab-like venv"
    assert where[1].startswith(site_packages), f"benchmark results read from {where[1]}, not the installed package"
    assert int(where[2]) > 0, "the installed package ships no benchmark results"


def test_the_environment_lacks_the_book_tools(installed):
    missing = _run(python(), "-c", "import importlib.util as u; "
                   "print([m for m in ('myst_nb', 'jupyter_book', 'nbval', 'papermill') if u.find_spec(m)])").stdout
    assert missing.strip() == "[]", f"the Colab-like venv has book tools: {missing}; stack: {COLAB_STACK}"


@pytest.fixture(scope="session")
def chapter_runs(installed, tmp_path_factory):
    """(index, error) of every other reader notebook's run, each in a kernel and a fresh folder of
    its own, as many at once as there are cores (each kernel uses one thread)."""
    def run(path: Path):
        folder = tmp_path_factory.mktemp(label(path).replace("/", "_"))
        if path.stem == "instructor":  # it reads the chapters next to it, as in a clone
            for chapter in book_chapters(path.parent):
                shutil.copy2(chapter, folder / chapter.name)
            return execute(read(path), folder)
        return execute(with_seed(read(path), READERS_SEED), folder)

    order = longest_first(OTHERS)  # the longest first, so that a short one finishes last
    with ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1)) as pool:
        return dict(zip(order, pool.map(run, order)))


def test_the_reader_notebooks_of_both_languages_are_run():
    assert [label(p) for p in [FIRST] + OTHERS] == [f"{language}/{p.stem}" for language in READERS
                                                    for p in CHAPTERS + [ROOT / "book" / "instructor.ipynb"]]


@pytest.mark.parametrize("path", OTHERS, ids=label)
def test_reader_notebook_runs_on_colab(chapter_runs, path):
    index, error = chapter_runs[path]
    assert error is None, report(path, index, error)


@pytest.fixture(scope="session")
def student_edition(tmp_path_factory):
    folder = tmp_path_factory.mktemp("student")
    return {path.name: path for path in write_student_edition(folder, book=ROOT / "book")}


def code(cells) -> list[str]:
    return [c.source for c in cells if c.cell_type == "code"]


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_student_notebook_runs_up_to_its_first_exercise(installed, student_edition, chapter_runs, chapter,
                                                        tmp_path):
    """The code before the first exercise is the chapter's own, which ran above in this environment
    (so it is not run a second time); the first stub and its check cell then run, as a student
    runs them, and stop with the stub's NotImplementedError."""
    path = student_edition[chapter.name]
    notebook = read(path)
    stubs = [i for i, cell in enumerate(notebook.cells) if SOLUTION_TAG in cell.metadata.get("tags", [])]
    chapter_cells = read(chapter).cells
    if not stubs:
        assert code(notebook.cells) == code(chapter_cells), f"{path.name} has other code than {chapter.name}"
        return
    first = stubs[0]
    before = code(notebook.cells[:first])
    assert before == code(chapter_cells)[:len(before)], \
        f"{path.name}: the code before its first exercise differs from {chapter.name}'s"
    ran = chapter_runs.get(READERS["en"] / chapter.name, installed)
    assert ran[0] is None, f"{chapter.name} failed on Colab (cell {ran[0]}), so its student notebook does too"
    exercise = nbformat.from_dict(dict(notebook))
    exercise.cells = notebook.cells[first:first + 2]
    index, error = execute(exercise, tmp_path)
    # The check cell calls the unwritten function: the stub's NotImplementedError, naming the exercise.
    assert error is not None, f"{path.name}: exercise cell {first} is a stub, yet its check passed"
    assert (index, error.ename) == (1, "NotImplementedError") and "Exercise" in error.evalue, \
        report(path, first + (index or 0), error)
