"""benchmarks/notebook_times.py runs end to end on a tiny notebook, so it cannot rot."""

from __future__ import annotations

import json

import nbformat

from benchmarks import notebook_times
from mtlcode.book.notebooks import code_fingerprint


def test_notebook_times_runs_a_notebook_and_writes_the_result(tmp_path):
    notebook = tmp_path / "01_tiny.ipynb"
    cell = nbformat.v4.new_code_cell("import os\nassert os.environ['OMP_NUM_THREADS'] == '1'")
    kernel = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb = nbformat.v4.new_notebook(cells=[cell], metadata={"kernelspec": kernel})
    nbformat.write(nb, notebook)
    out = tmp_path / "times.json"
    result = notebook_times.main(["--notebooks", str(notebook), "--out", str(out), "--no-progress"])
    saved = json.loads(out.read_text())
    assert saved == json.loads(json.dumps(result))
    for key in ("command", "seed", "torch", "device", "wall_seconds", "rows", "cpu_count", "kernel_threads"):
        assert key in saved, key
    [row] = saved["rows"]
    assert row["chapter"] == "01_tiny" and row["metric"] == "seconds" and row["repeats"] == 1
    assert 0 < row["mean"] <= saved["wall_seconds"] + 0.1  # both rounded
    assert row["code"] == code_fingerprint(nbformat.read(notebook, as_version=4))  # the code it timed


def test_the_book_chapters_are_found():
    names = [path.stem for path in notebook_times.chapters()]
    assert names and names == sorted(names) and all(name[:2].isdigit() for name in names)
    assert "instructor" not in names
