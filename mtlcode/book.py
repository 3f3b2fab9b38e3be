"""What a chapter hands to the book build, without needing the book's tools to run.

The build (Jupyter Book with myst-nb) puts numbers computed in a notebook into its prose: a code
cell calls ``glue("maml_mse", value)`` and the text says ``{glue:text}`maml_mse:.3f```. Readers
run the same notebooks on Colab or in plain Jupyter, where myst-nb is not installed (it is a
book-building tool, not a dependency of ``mtlcode``). There :func:`glue` keeps the value in
:data:`GLUED` and shows it only when asked to (``display=True``), so a chapter runs the same
everywhere and looks the same as it does in the book.

Importing this module also asks a Jupyter kernel for figures at twice the resolution (PNG
"retina"), so that they stay sharp when a reader zooms in, in the book and on Colab alike.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

__all__ = ["GLUED", "crisp_figures", "glue"]

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
