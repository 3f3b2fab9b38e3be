"""mtlcode.book.glue: the book's glue where myst-nb is installed, a quiet record where it is not."""

from __future__ import annotations

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
