"""Figures in the translated editions: each figure drawn a second time with its texts translated.

While the English build runs (``MTLCODE_BOOK_LANGUAGES=en,zh``), :func:`install_figure_formatter`
(called when a chapter imports :mod:`mtlcode.book`) has IPython record, for every matplotlib
figure shown, its texts and a PNG per language with them translated, in the output's metadata
(see :mod:`mtlcode.book.translation.outputs`).
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mtlcode.book.translation.english import ROOT
from mtlcode.book.translation.output_strings import (
    KEY,
    LANGUAGES_ENV,
    Catalogue,
    _translate_figure_text,
    needs_translation,
    read_catalogue,
)

_CUSTOM_MATHS = {"mathtext.rm": "DejaVu Sans", "mathtext.it": "DejaVu Sans:italic", "mathtext.bf": "DejaVu Sans:bold",
                 "mathtext.sf": "DejaVu Sans", "mathtext.tt": "DejaVu Sans Mono", "mathtext.cal": "DejaVu Sans"}
# Fonts with the glyphs of each language, first found is used; and the package that installs them.
FONTS = {"zh": ("Noto Sans CJK SC", "Noto Sans CJK JP", "Noto Sans SC", "Source Han Sans SC", "WenQuanYi Micro Hei",
                "Microsoft YaHei", "SimHei", "PingFang SC")}
FONT_PACKAGE = {"zh": "fonts-noto-cjk (apt) or Noto Sans CJK SC"}


def figures_note(code: str, no_font: int, unrendered: int) -> str:
    """The line that says why figures of the ``code`` edition stayed English ("" when none did)."""
    notes = []
    if no_font:
        notes.append(f"{no_font} figure(s) of the {code} edition stay in English: the English build found no font "
                     f"with {code} glyphs ({', '.join(FONTS.get(code, ()))}); install "
                     f"{FONT_PACKAGE.get(code, 'one')} and run `make book` again (a font installed after matplotlib "
                     "listed the fonts needs its list rebuilt: delete fontlist-*.json in matplotlib.get_cachedir())")
    if unrendered:
        notes.append(f"{unrendered} figure(s) of the {code} edition stay in English: the English build ran without "
                     f"{LANGUAGES_ENV}=en,{code} (`make book` sets it)")
    return "\n".join(f"note: {note}" for note in notes)



def requested_languages() -> list[str]:
    """The translated languages the build asks figures for (``MTLCODE_BOOK_LANGUAGES``, English aside)."""
    value = os.environ.get(LANGUAGES_ENV, "")
    return [code for code in re.split(r"[,\s]+", value) if code and code != "en"]


def find_font(code: str) -> str | None:
    """The name of an installed font with the glyphs of language ``code``, or None."""
    from matplotlib import font_manager

    installed = {font.name for font in font_manager.fontManager.ttflist}
    return next((name for name in FONTS.get(code, ()) if name in installed), None)


def figure_texts(fig: Any) -> list[Any]:
    """The visible Text artists of ``fig`` that hold words (not numbers or code)."""
    from matplotlib.text import Text

    return [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]


@contextlib.contextmanager
def _quiet(problems: list[str] | None) -> Iterator[None]:
    """Keep what the second rendering says (a glyph missing from the font, matplotlib's font
    look-ups) out of the English run's stderr, where the book build would turn it into an error;
    it is kept in ``problems`` instead."""
    logger = logging.getLogger("matplotlib.font_manager")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
    finally:
        logger.setLevel(level)
    if problems is not None:
        problems += sorted({str(w.message) for w in caught})


def render_translated(fig: Any, catalogue: Catalogue, font: str | None,
                      render: Any = None, problems: list[str] | None = None) -> bytes:
    """``fig`` as PNG with its texts translated through ``catalogue`` and shown in ``font``; the
    figure's texts and fonts are restored afterwards. ``render(fig)`` makes the PNG bytes
    (default: the same retina PNG as the inline backend); the warnings of the rendering (a glyph
    the font lacks) go to ``problems``."""
    import matplotlib

    saved, maths = [], False
    # Tick labels are written again by the axis's formatter when the figure is drawn: each
    # formatter is wrapped in one that translates what it writes.
    tickers = [ticker for axes in fig.axes for axis in axes._axis_map.values() for ticker in (axis.major, axis.minor)]
    formatters = [(ticker, ticker.formatter) for ticker in tickers]
    try:
        for ticker, formatter in formatters:
            ticker.formatter = _TranslatingFormatter(formatter, catalogue)
        for text in figure_texts(fig):
            english = text.get_text()
            translated = _translate_figure_text(english, catalogue)
            if translated is not None and translated != english:
                saved.append((text, english, text.get_fontproperties().copy()))
                text.set_text(translated)
                if font:
                    family = text.get_fontfamily()
                    text.set_fontfamily([font, *(family if isinstance(family, list) else [family])])
                    if "$" in translated:
                        # mathtext draws a text with maths whole; with the "custom" fonts its words
                        # are drawn in the text's own font (the CJK one), its maths in DejaVu, as
                        # matplotlib's default "dejavusans" maths would be
                        text.get_fontproperties().set_math_fontfamily("custom")
                        maths = True
        rc = _CUSTOM_MATHS if maths else {}
        with matplotlib.rc_context(rc), _quiet(problems):
            return (render or _retina_png)(fig)
    finally:
        for text, english, properties in saved:
            text.set_text(english)
            text.set_fontproperties(properties)
        for ticker, formatter in formatters:
            ticker.formatter = formatter


def _translating_formatter_class() -> type:
    from matplotlib.ticker import Formatter

    class TranslatingFormatter(Formatter):
        """A tick formatter whose labels are ``inner``'s, translated where they have words."""

        def __init__(self, inner: Any, catalogue: Catalogue) -> None:
            self.inner, self.catalogue = inner, catalogue
            self.axis = getattr(inner, "axis", None)

        def _translate(self, label: Any) -> Any:
            if isinstance(label, str) and needs_translation(label, self.catalogue):
                return _translate_figure_text(label, self.catalogue) or label
            return label

        def __call__(self, x: Any, pos: Any = None) -> Any:
            return self._translate(self.inner(x, pos))

        def format_ticks(self, values: Any) -> list[Any]:
            return [self._translate(label) for label in self.inner.format_ticks(values)]

        def set_locs(self, locs: Any) -> None:
            self.inner.set_locs(locs)

        def get_offset(self) -> str:
            return self.inner.get_offset()

        def set_axis(self, axis: Any) -> None:
            self.axis = axis  # the inner formatter keeps its own axis

    return TranslatingFormatter


def _TranslatingFormatter(inner: Any, catalogue: Catalogue) -> Any:  # noqa: N802 (a class, made when first used)
    global _FORMATTER_CLASS
    if _FORMATTER_CLASS is None:
        _FORMATTER_CLASS = _translating_formatter_class()
    return _FORMATTER_CLASS(inner, catalogue)


_FORMATTER_CLASS: type | None = None



def _retina_png(fig: Any) -> bytes:
    from IPython.core.pylabtools import print_figure

    return print_figure(fig, "retina", bbox_inches="tight", base64=False)


def figure_record(fig: Any, languages: list[str], root: Path = ROOT) -> dict[str, Any]:
    """What the figure output's metadata holds under :data:`KEY`: the figure's texts with words,
    and a PNG per language it can render."""
    texts = []  # those with words (numbers and names aside); the check applies the catalogue's rules
    for text in figure_texts(fig):
        if needs_translation(text.get_text()) and text.get_text().strip() not in texts:
            texts.append(text.get_text().strip())
    record: dict[str, Any] = {"texts": texts, "png": {}}
    for code in languages:
        catalogue = read_catalogue(code, root)
        if catalogue is None:
            continue
        font = find_font(code)
        if font is None:  # said once when the sources are written (printing here would add an output)
            record.setdefault("no_font", []).append(code)
            continue
        problems: list[str] = []
        png = render_translated(fig, catalogue, font, problems=problems)
        record["png"][code] = base64.b64encode(png).decode("ascii")
        if problems:
            record.setdefault("warnings", {})[code] = problems
    return record


def install_figure_formatter(shell: Any = None, root: Path = ROOT) -> bool:
    """Add a display formatter for matplotlib figures to the IPython ``shell`` when the build asks
    for translated figures; True when installed. It adds no data to the output (myst-nb would
    warn about a mime type it does not know), only the output's metadata under :data:`KEY`."""
    languages = requested_languages()
    if not languages:
        return False
    if shell is None:
        from IPython import get_ipython

        shell = get_ipython()
    if shell is None:
        return False
    from IPython.core.formatters import BaseFormatter
    from traitlets import ObjectName, Unicode

    class TranslationsFormatter(BaseFormatter):
        format_type = Unicode(KEY)
        print_method = ObjectName("_repr_mtlcode_translations_")
        _return_type = (dict, type(None))  # (None, metadata): no data

    formatters = shell.display_formatter.formatters
    if KEY not in formatters:
        formatters[KEY] = TranslationsFormatter(parent=shell.display_formatter)
    formatters[KEY].for_type_by_name("matplotlib.figure", "Figure",
                                      lambda fig: (None, figure_record(fig, languages, root)))
    return True
