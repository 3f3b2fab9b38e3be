"""mtlcode.book.execute: the notebooks run side by side into the cache the book build reads."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from mtlcode.book import execute
from mtlcode.book.notebooks import book_chapters


def _notebook(path: Path, *sources: str) -> Path:
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(notebook, path)
    return path


def test_the_toc_notebooks_are_the_books_and_the_longest_run_first(tmp_path):
    pages = execute.toc_notebooks()
    book = execute.ROOT / "book"
    assert pages == [book / "instructor.ipynb", *book_chapters(book)]  # the nine chapters
    times = tmp_path / "times.json"
    times.write_text(json.dumps({"rows": [{"chapter": "a", "mean": 5.0}, {"chapter": "b", "mean": 50.0}]}))
    order = execute.longest_first([Path("x.ipynb"), Path("a.ipynb"), Path("b.ipynb")], times)
    assert [p.stem for p in order] == ["b", "a", "x"]  # unmeasured last


def test_executed_notebooks_are_found_by_the_builds_cache_and_a_failure_is_reported(tmp_path, capsys):
    from jupyter_cache import get_cache

    good = _notebook(tmp_path / "good.ipynb", "import os\nprint(os.getcwd())", "x = 6 * 7\nx",
                     "from myst_nb import glue\nglue('answer', x, display=False)")
    bad = _notebook(tmp_path / "bad.ipynb", "raise ValueError('the cell failed')")
    cache = tmp_path / "cache"
    assert execute.execute_book([good, bad], cache, workers=2, timeout=60) == 1
    err = capsys.readouterr().err
    assert "bad.ipynb: failed" in err and "the cell failed" in err
    # myst-nb (execute_notebooks: cache) matches the notebook as it reads the source
    record = get_cache(str(cache)).match_cache_notebook(nbformat.read(good, as_version=4))
    _, merged = get_cache(str(cache)).merge_match_into_notebook(nbformat.read(good, as_version=4))
    assert record is not None and merged.cells[0].outputs[0]["text"].strip() == str(tmp_path)  # ran in its folder
    assert merged.cells[1].outputs[0]["data"]["text/plain"] == "42"
    with pytest.raises(KeyError):
        get_cache(str(cache)).match_cache_notebook(nbformat.read(bad, as_version=4))
    # --export: the executed copies where the Chinese build reads them, all or none
    folder = tmp_path / "jupyter_execute"
    assert execute.export_executed([good], folder, cache, root=tmp_path) == 0
    exported = nbformat.read(folder / "good.ipynb", as_version=4)
    assert exported.cells[1].outputs[0]["data"]["text/plain"] == "42"
    assert exported.cells[2].outputs == []  # the glued value is not kept, as myst-nb writes it
    assert execute.export_executed([good, bad], tmp_path / "none", cache, root=tmp_path) == 1
    assert not (tmp_path / "none").exists() and "bad.ipynb: not in the cache" in capsys.readouterr().err


def test_workers_below_one_are_refused(capsys):
    with pytest.raises(SystemExit):
        execute.main(["--workers", "0"])
    assert "--workers must be 1 or more" in capsys.readouterr().err
