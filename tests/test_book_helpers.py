"""mtlcode.book.glue: the book's glue where myst-nb is installed, a quiet record where it is not."""

from __future__ import annotations

import json
import sys
import types

import pytest

from mtlcode import book


@pytest.fixture
def fresh(monkeypatch):
    book._myst_nb_glue.cache_clear()
    monkeypatch.setattr(book, "GLUED", {})
    yield
    book._myst_nb_glue.cache_clear()


def test_without_myst_nb_glue_records_and_shows_only_on_request(fresh, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "myst_nb", None)  # makes `import myst_nb` raise ImportError
    shown = []
    display = types.ModuleType("IPython.display")
    display.display = shown.append
    monkeypatch.setitem(sys.modules, "IPython.display", display)
    book.glue("quiet", 1.5, display=False)
    book.glue("loud", 2.5)
    assert book.GLUED == {"quiet": 1.5, "loud": 2.5}
    assert shown == [2.5]


def test_with_myst_nb_glue_hands_the_value_to_it(fresh, monkeypatch):
    calls = []
    fake = types.ModuleType("myst_nb")
    fake.glue = lambda name, value, display=True: calls.append((name, value, display))
    monkeypatch.setitem(sys.modules, "myst_nb", fake)
    book.glue("maml_mse", 0.25, display=False)
    assert calls == [("maml_mse", 0.25, False)]
    assert book.GLUED["maml_mse"] == 0.25


def test_glue_refuses_a_name_the_book_cannot_refer_to(fresh):
    with pytest.raises(ValueError, match="non-empty string"):
        book.glue("", 1)


def test_crisp_figures_is_a_no_op_outside_a_kernel():
    assert book.crisp_figures() is False


@pytest.mark.slow
def test_figures_in_a_kernel_are_drawn_at_twice_their_displayed_size():
    import base64
    import io

    import nbformat
    from nbclient import NotebookClient
    from PIL import Image

    code = ("import mtlcode.book\nimport matplotlib.pyplot as plt\n"
            "plt.figure(figsize=(4, 3))\nplt.plot([0, 1])\nplt.show()")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)])
    NotebookClient(nb, timeout=120, kernel_name="python3").execute()
    [output] = [o for o in nb.cells[0].outputs if "image/png" in o.get("data", {})]
    width = Image.open(io.BytesIO(base64.b64decode(output["data"]["image/png"]))).width
    shown = output["metadata"]["image/png"]["width"]
    assert width == 2 * shown, (width, shown)


# -- claim: strict in the book build and the tests, a note in a reader's run --------------------------

@pytest.fixture
def claims(monkeypatch):
    monkeypatch.setattr(book, "CLAIMS", [])
    monkeypatch.delenv(book.LOG_ENV, raising=False)
    return book.CLAIMS


def test_a_claim_that_holds_passes_in_both_modes(claims, monkeypatch):
    for strict in ("1", "0"):
        monkeypatch.setenv(book.STRICT_ENV, strict)
        assert book.claim("k", 2 > 1, (2, 1)) is True
    assert [c["holds"] for c in claims] == [True, True]


def test_a_claim_that_fails_is_an_error_in_strict_mode(claims, monkeypatch):
    monkeypatch.setenv(book.STRICT_ENV, "1")
    with pytest.raises(book.ClaimNotHeld, match=r"'ch08\.wide' does not hold.*0\.57"):
        book.claim("ch08.wide", False, 0.57)
    assert isinstance(book.ClaimNotHeld("x"), AssertionError)  # fails a build like an assert
    assert claims == [{"key": "ch08.wide", "holds": False, "found": 0.57}]


@pytest.mark.parametrize("value", ["", "0", "no"])
def test_a_claim_that_fails_in_a_readers_run_shows_a_note_and_goes_on(claims, monkeypatch, capsys, value):
    monkeypatch.setenv(book.STRICT_ENV, value)
    assert book.claim("ch05.reuse", False, (-0.01, 0.04)) is False
    note = capsys.readouterr().out  # no kernel here: printed
    assert "ch05.reuse" in note and "(-0.01, 0.04)" in note and "differs from the book" in note
    assert claims[-1]["holds"] is False


def test_every_outcome_is_appended_to_the_log_file(claims, monkeypatch, tmp_path):
    log = tmp_path / "claims.jsonl"
    monkeypatch.setenv(book.LOG_ENV, str(log))
    monkeypatch.setenv(book.STRICT_ENV, "0")
    book.claim("a", True, {"x": 1.5})
    book.claim("b", False, object())  # not JSON: kept as its repr
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(r["key"], r["holds"]) for r in records] == [("a", True), ("b", False)]
    assert records[0]["found"] == {"x": 1.5} and records[1]["found"].startswith("<object")


def test_a_claim_needs_a_key(claims):
    with pytest.raises(ValueError, match="key"):
        book.claim("", True)


def test_with_seed_sets_the_seed_right_after_the_parameters_cell():
    import nbformat

    from mtlcode.book.notebooks import NotebookError, with_seed

    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import x"),
                                               nbformat.v4.new_code_cell("SEED = 0\nN = 3"),
                                               nbformat.v4.new_code_cell("run(SEED)")])
    notebook.cells[1].metadata["tags"] = ["parameters"]
    seeded = with_seed(notebook, 4)
    assert [c.source for c in seeded.cells] == ["import x", "SEED = 0\nN = 3", "SEED = 4", "run(SEED)"]
    assert len(notebook.cells) == 3  # the original is left alone
    with pytest.raises(ValueError, match="seed"):
        with_seed(notebook, -1)
    notebook.cells[1].metadata["tags"] = []
    with pytest.raises(NotebookError, match="parameters"):
        with_seed(notebook, 1)
