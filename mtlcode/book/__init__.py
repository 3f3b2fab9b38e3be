"""What a chapter hands to the book build, without needing the book's tools to run.

The build (Jupyter Book with myst-nb) puts numbers computed in a notebook into its prose: a code
cell calls ``glue("maml_mse", value)`` and the text says ``{glue:text}`maml_mse:.3f```. Readers
run the same notebooks on Colab or in plain Jupyter, where myst-nb is not installed (it is a
book-building tool, not a dependency of ``mtlcode``). There :func:`glue` keeps the value in
:data:`GLUED` and shows it only when asked to (``display=True``), so a chapter runs the same
everywhere and looks the same as it does in the book.

A chapter checks what its prose says with :func:`claim`. In the book build and in the project's
tests (``MTLCODE_STRICT_CLAIMS=1``, which ``make`` sets) a claim that does not hold is an error, so
the book never prints a sentence its own run contradicts. A reader's run (Colab, Jupyter) is
another training run on other hardware: there a claim that does not hold shows a short note and the
notebook goes on. ``MTLCODE_CLAIMS_LOG`` names a file where every claim's outcome is appended as a
JSON line (``python -m benchmarks.claims`` sweeps the chapters over training seeds with it).

The book's other tools are its submodules, loaded when first used: ``plots`` (the figures),
``results`` (the benchmark results the chapters quote), ``notebooks`` (reading the chapters),
``translation`` and ``language_switch`` (the Chinese edition), ``readers`` (the reader notebooks
Colab and Jupyter open, with the glued values of the book's run written into their prose).

Importing this module also asks a Jupyter kernel for figures at twice the resolution (PNG
"retina"), so that they stay sharp when a reader zooms in, in the book and on Colab alike.
In the book build (``MTLCODE_BOOK_LANGUAGES=en,zh``) it also has each figure rendered a second
time with its texts translated, for the Chinese edition (:mod:`mtlcode.book.translation.outputs`).
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable
from typing import Any

from mtlcode._aliases import lazy_submodules

__all__ = ["CLAIMS", "GLUED", "ClaimNotHeld", "claim", "crisp_figures", "glue", "strict_claims"]

STRICT_ENV = "MTLCODE_STRICT_CLAIMS"
LOG_ENV = "MTLCODE_CLAIMS_LOG"

GLUED: dict[str, Any] = {}
"""Every value glued in this process, by name (handy to look at when the book tools are absent)."""


@functools.cache
def _myst_nb_glue() -> Callable[..., None] | None:
    try:
        from myst_nb import glue as myst_glue
    except ImportError:  # not building the book: a reader's Colab or Jupyter
        return None
    return myst_glue


def glue(name: str, value: Any, display: bool = True) -> None:
    """Record ``value`` under ``name`` for the book's prose (myst-nb's ``glue`` when present).

    With ``display=True`` the value is also shown as the cell's output, as myst-nb does.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"glue needs a non-empty string name, got {name!r}")
    GLUED[name] = value
    myst_glue = _myst_nb_glue()
    if myst_glue is not None:
        myst_glue(name, value, display=display)
    elif display:
        try:
            from IPython.display import display as show
        except ImportError:  # a plain Python script
            print(repr(value))
        else:
            show(value)


CLAIMS: list[dict[str, Any]] = []
"""Every claim checked in this process: ``{"key", "holds", "found"}``, in order."""


class ClaimNotHeld(AssertionError):
    """A claim of the book's prose did not hold in this run (raised in strict mode only)."""


def strict_claims() -> bool:
    """True in the book build and the tests (``MTLCODE_STRICT_CLAIMS`` set to 1, true or yes)."""
    return os.environ.get(STRICT_ENV, "").strip().lower() in {"1", "true", "yes"}


def claim(key: str, holds: Any, found: Any = None) -> bool:
    """Check one claim of the prose; ``key`` names it, ``found`` is what this run measured.

    Strict mode (the book build, the tests): raises :class:`ClaimNotHeld` when ``holds`` is false.
    Otherwise (a reader's run) shows a short note saying what differs and returns False, so the
    notebook goes on. Every outcome is kept in :data:`CLAIMS` and, when ``MTLCODE_CLAIMS_LOG``
    names a file, appended to it as one JSON line.
    """
    if not isinstance(key, str) or not key:
        raise ValueError(f"claim needs a non-empty string key, got {key!r}")
    held = bool(holds)
    record = {"key": key, "holds": held, "found": _plain(found)}
    CLAIMS.append(record)
    log = os.environ.get(LOG_ENV)
    if log:
        with open(log, "a", encoding="utf-8") as file:
            file.write(json.dumps(record) + "\n")
    if held:
        return True
    if strict_claims():
        raise ClaimNotHeld(f"claim {key!r} does not hold in this run; found: {found!r}")
    _show_note(key, found)
    return False


def _plain(value: Any) -> Any:
    """``value`` as JSON can hold it (numbers, strings, lists, dicts), else its repr."""
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError):
        return repr(value)


def _show_note(key: str, found: Any) -> None:
    note = (f"**Note: your run differs from the book's here** (claim `{key}`). The book's run "
            f"found what the text above says; this run found `{found!r}`. Training is random and "
            "its float rounding depends on the machine, so a run can land on the other side of a "
            "close comparison. The book checks each claim over several training seeds "
            "(`benchmarks/results/claims.json`); the numbers your run printed are the ones to read.")
    try:
        from IPython import get_ipython
        from IPython.display import Markdown, display
    except ImportError:
        print(note)
        return
    if get_ipython() is None:
        print(note)
    else:
        display(Markdown(note))


def crisp_figures() -> bool:
    """Inline figures at twice the pixel density, shown at their usual size; True inside a kernel."""
    try:
        from IPython import get_ipython
        from matplotlib_inline.backend_inline import set_matplotlib_formats
    except ImportError:  # a plain Python script: nothing to display
        return False
    if get_ipython() is None or not hasattr(get_ipython(), "kernel"):
        return False
    set_matplotlib_formats("retina")
    return True


crisp_figures()


def _translated_figures() -> bool:
    """In the book build that asks for them (``MTLCODE_BOOK_LANGUAGES=en,zh``, set by ``make book``),
    each figure shown is also rendered with its texts translated, for the translated editions
    (:mod:`mtlcode.book.translation.outputs`); elsewhere nothing happens."""
    asked = os.environ.get("MTLCODE_BOOK_LANGUAGES", "").replace(",", " ").split()
    if not [code for code in asked if code != "en"]:
        return False
    from mtlcode.book.translation.figures import install_figure_formatter

    return install_figure_formatter()


_translated_figures()


__getattr__ = lazy_submodules(__name__, ("language_switch", "notebooks", "plots", "readers", "results", "translation"))
