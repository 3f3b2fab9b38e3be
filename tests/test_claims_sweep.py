"""benchmarks/claims.py runs chapters at several seeds and tallies each claim, so it cannot rot."""

from __future__ import annotations

import json

import nbformat
import pytest

from benchmarks import claims

pytestmark = pytest.mark.slow  # it starts Jupyter kernels


def chapter(path, code: str) -> None:
    cells = [nbformat.v4.new_code_cell("SEED = 0"), nbformat.v4.new_code_cell(code)]
    cells[0].metadata["tags"] = ["parameters"]
    nbformat.write(nbformat.v4.new_notebook(cells=cells), path)


def test_the_sweep_records_every_claim_per_seed_and_resumes(tmp_path, monkeypatch):
    book = tmp_path / "book"
    book.mkdir()
    chapter(book / "01_a.ipynb", "from mtlcode.book import claim\n"
            "claim('01.always', True, SEED)\nclaim('01.odd-seeds-only', SEED % 2 == 1, SEED)\n"
            "print('went on')")
    chapter(book / "02_b.ipynb", "raise RuntimeError('broken chapter')")
    out = tmp_path / "claims.json"
    argv = ["--book", str(book), "--seeds", "0", "1", "--workers", "1", "--out", str(out)]
    monkeypatch.setenv("MTLCODE_STRICT_CLAIMS", "1")  # the sweep itself runs them lenient
    result = claims.main(argv)
    assert json.loads(out.read_text()) == result
    first = result["chapters"]["01_a"]
    assert first["claims"]["01.always"] == {"held": [0, 1], "failed": [], "found": {}}
    assert first["claims"]["01.odd-seeds-only"] == {"held": [1], "failed": [0], "found": {"0": 0}}
    assert all(run["error"] is None for run in first["runs"].values())  # a failed claim did not stop it
    assert "broken chapter" in result["chapters"]["02_b"]["runs"]["0"]["error"]
    # The finished parts are reused (the chapter with an error is run again).
    ran = []
    monkeypatch.setattr(claims, "run_part", lambda path, *a: ran.append(path.stem) or
                        {"claims": [], "error": "stub", "seconds": 0.0})
    again = claims.main(argv)
    assert ran == ["02_b", "02_b"] and again["chapters"]["01_a"] == first
    # A chapter whose code changed is run again.
    chapter(book / "01_a.ipynb", "print('new code')")
    ran.clear()
    claims.main(argv)
    assert sorted(ran) == ["01_a", "01_a", "02_b", "02_b"]


def test_the_sweep_refuses_bad_arguments(tmp_path):
    for bad in (["--workers", "0"], ["--seeds", "-1"], ["--chapters", "99_nothing"]):
        with pytest.raises(SystemExit):
            claims.main([*bad, "--out", str(tmp_path / "x.json")])
