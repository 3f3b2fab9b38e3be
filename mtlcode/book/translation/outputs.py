"""What the code says to the reader, in the reader's language: figure text, printed messages, tables.

The translated editions reuse the English build's executed outputs (nothing runs twice), so the
words the code produces are translated in two places, through one catalogue per language,
``translations/<lang>/outputs.po`` (gettext's format; msgid the English text, msgstr its
translation; ``#:`` lines name the pages where the text was seen):

* **Figures** are rendered a second time while the English build runs. When the build asks for it
  (``MTLCODE_BOOK_LANGUAGES=en,zh``, set by ``make book``; a reader's Colab or Jupyter pays
  nothing), importing :mod:`mtlcode.book` adds an IPython display formatter
  (:mod:`mtlcode.book.translation.figures`) that, for every
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

A msgid may hold placeholders for what changes from run to run: ``{}`` matches any text with its
brackets closed (``"all {} cases passed"``), and the msgstr puts the matched texts back in order
(``{}``) or by number (``{0}``, ``{1}``); a matched text that is prose is itself translated through
the catalogue, or the whole is not (:mod:`mtlcode.book.translation.output_strings`).

What needs a translation (:func:`needs_translation`): a text with an English word, that is two or
more Latin letters with a lowercase one, standing alone (not part of an identifier such as
``inner_loop`` or ``mtlcode.MAML``, of a call ``f(``, of a path, of inline code or maths ``$k$``, of
a quoted value ``'head'``, of an assignment ``mode=...`` or a command line option ``--workers``).
All-capital names (MAML, ANIL, MSE) are not words. The catalogue's header lists what else is not
prose, one rule a line::

    # ignore-words: ProtoNet Omniglot
    # ignore-lines: ^\\s*MLP\\(
    # covered: book/01_background.ipynb book/02_concepts.ipynb

``covered`` names the pages whose outputs are fully translated: for them a missing or stale
string is an error (``python -m mtlcode.book.translation outputs zh`` fails, and so does
``translation source`` when the English run holds one); other pages' missing strings are listed as
work to do and their outputs stay English where the catalogue has no translation.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mtlcode.book.translation.english import ROOT
from mtlcode.book.translation.output_strings import (  # noqa: F401 (the names of the whole, here)
    CATALOGUE,
    KEY,
    LANGUAGES_ENV,
    Catalogue,
    _translate_figure_text,
    catalogue_path,
    needs_translation,
    read_catalogue,
    words,
)

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
