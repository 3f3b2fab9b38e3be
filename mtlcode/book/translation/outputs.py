"""What the code says to the reader, in the reader's language: figure text, printed messages, tables.

The translated editions reuse the English build's executed outputs (nothing runs twice), so the
words the code produces are translated in two places, through one catalogue per language,
``translations/<lang>/outputs.po`` (gettext's format; msgid the English text, msgstr its
translation; ``#:`` lines name the pages where the text was seen):

* **Figures** are rendered a second time while the English build runs. When the build asks for it
  (``MTLCODE_BOOK_LANGUAGES=en,zh``, set by ``make book``; a reader's Colab or Jupyter pays
  nothing), importing :mod:`mtlcode.book` adds an IPython display formatter that, for every
  matplotlib figure the notebook displays, records in the output's *metadata* under :data:`KEY`
  (``mtlcode.translations``) the figure's texts with words (titles, axis labels, tick labels,
  legends, annotations) and, for each language whose catalogue and a font are at hand, a PNG
  rendered with those texts translated: ``{"texts": [...], "png": {"zh": base64}}``. The output's
  data (``image/png``, ``text/plain``) stays as it was, so the English build shows and says nothing
  new (an unknown mime type in the data would make myst-nb warn); :func:`translate_outputs` puts
  the translated PNG in ``image/png`` of the translated sources.
* **Printed messages and tables** (``stdout`` streams, ``text/markdown`` displays such as the
  ``display(Markdown(table))`` tables, exercise checks' feedback) are translated line by line
  (Markdown tables cell by cell) when the translated sources are written.

A msgid may hold placeholders for what changes from run to run: ``{}`` matches any text
(``"all {} cases passed"``), and the msgstr puts the matched texts back in order (``{}``) or by
number (``{0}``, ``{1}``).

What needs a translation (:func:`needs_translation`): a text with an English word, that is two or
more Latin letters with a lowercase one, standing alone (not part of an identifier such as
``inner_loop`` or ``mtlcode.MAML``, of a call ``f(``, of a path, of inline code or maths ``$k$``, of
a quoted value ``'head'`` or of an assignment ``mode=...``). All-capital names (MAML, ANIL, MSE) are
not words. The catalogue's header lists what else is not prose, one
rule a line::

    # ignore-words: ProtoNet Omniglot
    # ignore-lines: ^\\s*MLP\\(
    # covered: book/01_background.ipynb book/02_concepts.ipynb

``covered`` names the pages whose outputs are fully translated: for them a missing or stale
string is an error (``python -m mtlcode.book.translation outputs zh`` fails, and so does
``translation source`` when the English run holds one); other pages' missing strings are listed as
work to do and their outputs stay English where the catalogue has no translation.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import logging
import os
import re
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mtlcode.book.translation.english import ROOT, TranslationError

LANGUAGES_ENV = "MTLCODE_BOOK_LANGUAGES"
KEY = "mtlcode.translations"  # the key of a figure output's metadata that holds its translations
CATALOGUE = "outputs.po"
# Fonts with the glyphs of each language, first found is used; and the package that installs them.
FONTS = {"zh": ("Noto Sans CJK SC", "Noto Sans CJK JP", "Noto Sans SC", "Source Han Sans SC", "WenQuanYi Micro Hei",
                "Microsoft YaHei", "SimHei", "PingFang SC")}
FONT_PACKAGE = {"zh": "fonts-noto-cjk (apt) or Noto Sans CJK SC"}


# --- the catalogue -----------------------------------------------------------------------------

@dataclass
class Catalogue:
    """One language's output strings: exact translations, placeholder patterns, and the rules."""

    path: Path
    exact: dict[str, str] = field(default_factory=dict)  # msgid -> msgstr (translated ones only)
    patterns: list[tuple[re.Pattern[str], str, str]] = field(default_factory=list)  # (regex, msgid, msgstr)
    msgids: dict[str, tuple[str, ...]] = field(default_factory=dict)  # every msgid -> its pages (#:)
    ignore_words: frozenset[str] = frozenset()
    ignore_lines: tuple[re.Pattern[str], ...] = ()
    covered: tuple[str, ...] = ()

    def translate(self, text: str, used: set[str] | None = None) -> str | None:
        """The translation of ``text`` (one line, a table cell or a figure text), or None.

        A pattern's placeholders take the text they match, itself translated when it needs it
        (``"task {}: {}"`` translates ``"task 0: support loss 0.5"`` only if the catalogue also
        translates ``"support loss 0.5"``), so that a general pattern never leaves English behind.
        The msgids used are added to ``used``.
        """
        core = text.strip()
        if not core:
            return text
        found = self.exact.get(core)
        if found is not None:
            _add(used, core)
        else:
            for regex, msgid, msgstr in self.patterns:
                match = regex.fullmatch(core)
                if match:
                    groups = [self._part(group, used) for group in match.groups()]
                    if all(group is not None for group in groups):
                        found = _fill(msgstr, tuple(g for g in groups if g is not None))
                        _add(used, msgid)
                        break
        if found is None:
            return None
        start = text.index(core[0])
        return text[:start] + found + text[start + len(core):]

    def _part(self, text: str, used: set[str] | None) -> str | None:
        if not needs_translation(text, self):
            return text
        return self.translate(text, used)

    def msgid_of(self, text: str) -> str | None:
        """The msgid that covers ``text`` (translated or not), or None."""
        core = text.strip()
        if core in self.msgids:
            return core
        for msgid in self.msgids:
            if "{" in msgid and _pattern(msgid).fullmatch(core):
                return msgid
        return None


def _add(used: set[str] | None, msgid: str) -> None:
    if used is not None:
        used.add(msgid)


_PLACEHOLDER = re.compile(r"\{(\d*)\}")


# What a placeholder matches: any text whose brackets are closed (one level deep; an interval
# "[0, 1)" counts), so that "network {}, {} steps" takes "[1, 12, 1]" whole, not "[1".
_ANY = r"((?:[^\[\]()]|[\[(][^\[\]()]*[\])])+?)"


def _pattern(msgid: str) -> re.Pattern[str]:
    parts = _PLACEHOLDER.split(msgid)
    regex = "".join(re.escape(part) if i % 2 == 0 else _ANY for i, part in enumerate(parts))
    return re.compile(regex, re.S)


def _fill(msgstr: str, groups: tuple[str, ...]) -> str:
    counter = iter(range(len(groups)))

    def value(match: re.Match[str]) -> str:
        index = int(match.group(1)) if match.group(1) else next(counter, None)
        if index is None or index >= len(groups):
            raise TranslationError(f"the translation {msgstr!r} has more placeholders than its msgid")
        return groups[index]

    return _PLACEHOLDER.sub(value, msgstr)


def catalogue_path(code: str, root: Path = ROOT) -> Path:
    return root / "translations" / code / CATALOGUE


def _header(text: str) -> dict[str, list[str]]:
    """The ``# name: value`` rules of the comment lines at the top of the file."""
    rules: dict[str, list[str]] = {}
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        match = re.match(r"#\s*(ignore-words|ignore-lines|covered):\s?(.*)$", line)
        if match:
            rules.setdefault(match.group(1), []).append(match.group(2))
    return rules


_CACHE: dict[Path, tuple[float, Catalogue]] = {}


def read_catalogue(code: str, root: Path = ROOT) -> Catalogue | None:
    """The catalogue of language ``code``, or None when it has none (read again when it changed)."""
    path = catalogue_path(code, root)
    if not path.exists():
        return None
    cached = _CACHE.get(path)
    if cached and cached[0] == path.stat().st_mtime:
        return cached[1]
    from babel.messages.pofile import read_po

    text = path.read_text(encoding="utf-8")
    rules = _header(text)
    try:
        po = read_po(io.StringIO(text), abort_invalid=True)
    except Exception as error:  # babel's PoFileError, or a broken placeholder
        raise TranslationError(f"{path}: cannot read the catalogue: {error}") from error
    catalogue = Catalogue(
        path,
        ignore_words=frozenset(word for line in rules.get("ignore-words", []) for word in line.split()),
        ignore_lines=tuple(re.compile(line.strip()) for line in rules.get("ignore-lines", []) if line.strip()),
        covered=tuple(page for line in rules.get("covered", []) for page in line.split()))
    for message in po:
        if not message.id or not isinstance(message.id, str):
            continue
        catalogue.msgids[message.id] = tuple(sorted({location for location, _ in message.locations}))
        if message.string:
            if _PLACEHOLDER.search(message.id) and _PLACEHOLDER.sub("", message.id).strip():
                catalogue.patterns.append((_pattern(message.id), message.id, message.string))
            else:
                catalogue.exact[message.id] = message.string
    # The most specific pattern first: the one with the most literal text.
    catalogue.patterns.sort(key=lambda p: -len(_PLACEHOLDER.sub("", p[1])))
    _CACHE[path] = (path.stat().st_mtime, catalogue)
    return catalogue


# --- what needs a translation -------------------------------------------------------------------

_NOT_PROSE = re.compile(r"`[^`]*`|\$[^$]*\$|https?://\S+|\S*[/\\]\S*|\S*_\S*|'[^'\s]*'|\"[^\"\s]*\"|\S*=\S*")
_WORD = re.compile(r"(?<![\w.])[A-Za-z][A-Za-z'’-]*[a-z][A-Za-z'’-]*(?!\.?\w|\()")
_WORD_SHORT = re.compile(r"(?<![\w.])[a-z][a-z]?(?!\.?\w|\()")  # never prose alone; not counted


def words(text: str, catalogue: Catalogue | None = None) -> list[str]:
    """The English words of ``text`` that make it prose (see the module's docstring)."""
    found = _WORD.findall(_NOT_PROSE.sub(" ", text))
    ignored = catalogue.ignore_words if catalogue else frozenset()
    return [word for word in found if word not in ignored and word.strip("'’-") not in ignored]


def needs_translation(text: str, catalogue: Catalogue | None = None) -> bool:
    if catalogue and any(rule.search(text) for rule in catalogue.ignore_lines):
        return False
    return bool(words(text, catalogue))


# --- the units of text in an executed notebook ----------------------------------------------------

def _text(value: Any) -> str:
    return "".join(value) if isinstance(value, list) else str(value)


def _markdown_units(text: str) -> Iterator[str]:
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("|") and stripped.endswith("|"):
            if re.fullmatch(r"\|[\s:|-]*\|", stripped):
                continue  # the separator row
            yield from (cell.strip() for cell in stripped.strip("|").split("|"))
        else:
            yield stripped


def output_units(output: dict[str, Any]) -> Iterator[str]:
    """The texts of one output that may need a translation, as the catalogue's msgids are cut."""
    if output.get("output_type") == "stream" and output.get("name") == "stdout":
        yield from (line.strip() for line in _text(output.get("text", "")).splitlines())
    data = output.get("data", {})
    if output.get("output_type") in ("display_data", "execute_result"):
        if "text/markdown" in data:
            yield from _markdown_units(_text(data["text/markdown"]))
        yield from output.get("metadata", {}).get(KEY, {}).get("texts", [])


def notebook_units(notebook: dict[str, Any]) -> Iterator[str]:
    for cell in notebook.get("cells", []):
        if cell.get("cell_type") == "code":
            for output in cell.get("outputs", []):
                yield from output_units(output)


# --- translating the English run's outputs ----------------------------------------------------------

def _translate_line(line: str, catalogue: Catalogue) -> str:
    found = catalogue.translate(line)
    return line if found is None else found


def _translate_markdown(text: str, catalogue: Catalogue) -> str:
    out = []
    for line in text.splitlines(keepends=True):
        body = line.rstrip("\n")
        stripped = body.strip()
        if stripped.startswith("|") and stripped.endswith("|") and not re.fullmatch(r"\|[\s:|-]*\|", stripped):
            cells = body.split("|")
            body = "|".join([cells[0]] + [_translate_line(cell, catalogue) for cell in cells[1:-1]] + [cells[-1]])
        elif stripped:
            body = _translate_line(body, catalogue)
        out.append(body + line[len(line.rstrip("\n")):])
    return "".join(out)


def translate_output(output: dict[str, Any], catalogue: Catalogue, code: str) -> dict[str, Any]:
    """``output`` with its printed lines, Markdown and figure in language ``code`` where translated."""
    if output.get("output_type") == "stream" and output.get("name") == "stdout":
        lines = _text(output.get("text", "")).splitlines(keepends=True)
        output["text"] = "".join(_translate_line(line.rstrip("\n"), catalogue) + line[len(line.rstrip("\n")):]
                                 for line in lines)
    data = output.get("data")
    if isinstance(data, dict):
        if "text/markdown" in data:
            data["text/markdown"] = _translate_markdown(_text(data["text/markdown"]), catalogue)
        extra = output.get("metadata", {}).pop(KEY, None)
        png = (extra or {}).get("png", {}).get(code)
        if png and "image/png" in data:
            data["image/png"] = png
    return output


def translate_outputs(notebook: dict[str, Any], code: str, root: Path = ROOT) -> tuple[int, int]:
    """Translate the translated notebook's outputs (the English run's) into language ``code``, in
    place. Returns the numbers of figures left in English because the run found no font for
    ``code``, and because it did not render them at all (it ran without ``MTLCODE_BOOK_LANGUAGES``).

    Without a catalogue the outputs only lose the figures' translation records.
    """
    catalogue = read_catalogue(code, root)
    no_font = unrendered = 0
    for cell in notebook.get("cells", []):
        if cell.get("cell_type") == "code":
            for output in cell.get("outputs", []):
                metadata = output.get("metadata", {})
                if code in metadata.get(KEY, {}).get("no_font", []):
                    no_font += 1
                elif KEY not in metadata and str(output.get("data", {}).get("text/plain", "")).startswith("<Figure"):
                    unrendered += 1
                if catalogue is None:
                    metadata.pop(KEY, None)
                else:
                    translate_output(output, catalogue, code)
    return no_font, unrendered if catalogue is not None else 0


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


# --- the check ----------------------------------------------------------------------------------

@dataclass
class Report:
    """What the English run's outputs lack in a catalogue: by page, and the msgids seen nowhere."""

    missing: dict[str, list[str]]  # page -> texts without a msgid (or with an empty msgstr), in order
    stale: dict[str, tuple[str, ...]]  # msgids (and their pages) all of whose pages were checked, produced by none
    covered: tuple[str, ...]
    rendering: dict[str, list[str]] = field(default_factory=dict)  # page -> warnings of translated figures

    def problems(self, strict_only: bool = True) -> list[str]:
        """The errors: missing texts and rendering warnings of the covered pages (of every page with
        ``strict_only=False``), and stale msgids."""
        out = []
        for page, texts in self.missing.items():
            if strict_only and page not in self.covered:
                continue
            out += [f"{page}: the output text {text!r} has no translation" for text in texts]
        for page, said in self.rendering.items():
            if not strict_only or page in self.covered:
                out += [f"{page}: a translated figure's rendering said: {text}" for text in said]
        out += [f"the catalogue's msgid {msgid!r} is produced by no output of {', '.join(where)} any more; delete it "
                "(or make it a pattern with {} for the part that changes)"
                for msgid, where in self.stale.items() if not strict_only or set(where) & set(self.covered)]
        return out


def _executed_pages(executed: Path, pages: Iterable[str]) -> dict[str, dict[str, Any]]:
    out = {}
    for page in pages:
        path = executed / page
        if page.endswith(".ipynb") and path.exists():
            out[page] = json.loads(path.read_text(encoding="utf-8"))
    return out


def check_outputs(code: str, executed: Path, pages: Iterable[str], root: Path = ROOT) -> Report:
    """Compare the English run's output texts (``executed``: ``_build/jupyter_execute``) with the
    catalogue of language ``code``."""
    catalogue = read_catalogue(code, root) or Catalogue(catalogue_path(code, root))
    notebooks = _executed_pages(executed, pages)
    missing: dict[str, list[str]] = {}
    used: set[str] = set()
    rendering: dict[str, list[str]] = {}
    for page, notebook in notebooks.items():
        for cell in notebook.get("cells", []):
            for output in cell.get("outputs", []):
                said = output.get("metadata", {}).get(KEY, {}).get("warnings", {}).get(code, [])
                rendering.setdefault(page, []).extend(w for w in said if w not in rendering.get(page, []))
        for text in notebook_units(notebook):
            if not needs_translation(text, catalogue):
                continue
            msgid = catalogue.msgid_of(text)
            if msgid is not None:
                used.add(msgid)
            if _translate_figure_text(text, catalogue, used) is None and text not in missing.get(page, []):
                missing.setdefault(page, []).append(text)
    stale = {msgid: where for msgid, where in catalogue.msgids.items()
             if msgid not in used and where and all(page in notebooks for page in where)}
    return Report(missing, stale, catalogue.covered, {page: said for page, said in rendering.items() if said})


def append_missing_outputs(code: str, report: Report, root: Path = ROOT) -> int:
    """Append the missing texts to the catalogue with an empty msgstr (for a translator); their count.

    A text the catalogue already holds untranslated gets no second entry.
    """
    from babel.messages.pofile import escape

    path = catalogue_path(code, root)
    catalogue = read_catalogue(code, root)
    known = set(catalogue.msgids) if catalogue else set()
    seen: dict[str, list[str]] = {}
    for page, texts in report.missing.items():
        for text in texts:
            if text not in known:
                seen.setdefault(text, []).append(page)
    if not seen:
        return 0
    parts = [] if path.exists() else [_NEW_HEADER]
    for text, where in seen.items():
        parts.append("".join(f"#: {page}\n" for page in where) + f"msgid {escape(text)}\nmsgstr \"\"\n\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as file:
        existing = path.stat().st_size
        if existing and not path.read_text(encoding="utf-8").endswith("\n\n"):
            file.write("\n")
        file.write("".join(parts))
    return len(seen)


_NEW_HEADER = """\
# What the book's code says to the reader (figures, printed messages, tables), translated.
# See mtlcode/book/translation/outputs.py for the rules.
# ignore-words:
# covered:
msgid ""
msgstr ""
"Content-Type: text/plain; charset=UTF-8\\n"

"""


# --- figures: the second rendering during the English run ------------------------------------------

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
                        # mathtext draws a text with maths whole, words included, in its own fonts
                        text.get_fontproperties().set_math_fontfamily("custom")
                        maths = True
        rc = {f"mathtext.{kind}": font for kind in ("rm", "it", "bf", "sf", "tt", "cal")} if maths else {}
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


def _translate_figure_text(text: str, catalogue: Catalogue, used: set[str] | None = None) -> str | None:
    """A figure text's translation: the whole text (it may have several lines), else line by line."""
    whole = catalogue.translate(text, used)
    if whole is not None or "\n" not in text:
        return whole
    lines = [catalogue.translate(line, used) if needs_translation(line, catalogue) else line
             for line in text.split("\n")]
    if any(line is None for line in lines):
        return None
    return "\n".join(line for line in lines if line is not None)


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
