"""What a cross reference or a citation points at: the book's numbering, titles and bibliography.

The built book numbers its chapters in the order of ``_toc.yml`` (the part marked ``numbered``),
and within a chapter its sections ("5.2."), figures and labelled equations ("5.3"), as Sphinx does
with ``numfig`` and one level of section numbers. :func:`build_index` computes the same numbers
from the pages of one language, so that a reader notebook can write "Figure 5.3" where the book's
source says ``{numref}`fig-practice-benchmark```. :func:`read_bibliography` reads
``book/references.bib`` into the short and long forms of each entry.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mtlcode.book.notebooks import cell_source

# A heading, a label line "(name)=" and a labelled display equation "$$ (name)" closing a block.
_HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t]*#*[ \t]*$")
_LABEL = re.compile(r"^\(([\w.:-]+)\)=[ \t]*$")
_EQUATION_END = re.compile(r"^(.*)\$\$[ \t]*\(([\w.:-]+)\)[ \t]*$")
_FENCE = re.compile(r"^[ \t]*(`{3,}|~{3,}|:{3,})(.*)$")


class ReaderError(RuntimeError):
    """A reader notebook cannot be written: a value, label or reference is missing (named)."""


@dataclass(frozen=True)
class Target:
    """What a label names: a section, a figure, an equation or a whole page."""

    kind: str  # "section", "figure", "equation" or "page"
    number: str  # "5.2", "" when the page is not numbered
    title: str  # the section's or page's title ("" for figures and equations)
    page: str  # "book/05_practice.ipynb"


@dataclass
class Index:
    """Every label of the book in one language, and the chapter numbers of its pages."""

    targets: dict[str, Target] = field(default_factory=dict)
    chapters: dict[str, int] = field(default_factory=dict)  # page -> chapter number

    def get(self, label: str, page: str) -> Target:
        if label not in self.targets:
            raise ReaderError(f"{page}: the cross reference {label!r} names no label of the book")
        return self.targets[label]


def lines_outside_code(text: str) -> Iterator[tuple[int, str]]:
    """(index, line) of the lines of ``text`` that are prose: not inside a code fence.

    Directive fences (```` ```{dropdown} ```` and the like) hold prose and are looked into; a
    plain fence (```` ```python ````) is code and skipped with its body.
    """
    lines = text.split("\n")
    closing: list[str] = []  # the fences open around the current line; a code fence is "code:<marker>"
    for i, line in enumerate(lines):
        fence = _FENCE.match(line)
        if closing and closing[-1].startswith("code:"):
            if fence and fence.group(1) == closing[-1][5:] and not fence.group(2).strip():
                closing.pop()
            continue
        if fence:
            marker, info = fence.group(1), fence.group(2).strip()
            if closing and marker == closing[-1] and not info:
                closing.pop()
                continue
            closing.append(marker if info.startswith("{") else f"code:{marker}")
            continue
        yield i, line


def plain_title(title: str) -> str:
    """A heading's text with the roles a title may hold reduced to their words."""
    title = re.sub(r"\{term\}`([^`<]*?)\s*(?:<[^`]*>)?`", r"\1", title)
    return re.sub(r"\{[\w:-]+\}`([^`]*)`", r"\1", title).strip()


class SectionNumbers:
    """The numbers of a page's headings in turn: "5." for the title of chapter 5, "5.2" for its
    second section, "5.2.1" below it; "" everywhere on a page outside the numbered part."""

    def __init__(self, chapter: int | None) -> None:
        self.chapter = chapter
        self.counters = [0] * 8

    def advance(self, level: int) -> str:
        self.counters[level] += 1
        self.counters[level + 1:] = [0] * (7 - level)
        if not self.chapter:
            return ""
        return ".".join([str(self.chapter)] + [str(c) for c in self.counters[2:level + 1]])


def _page_numbers(cells: list[dict[str, Any]], chapter: int | None, page: str, index: Index) -> None:
    numbers = SectionNumbers(chapter)
    figures = equations = 0
    prefix = f"{chapter}." if chapter else ""
    for cell in cells:
        if cell["cell_type"] == "code":
            name = cell.get("metadata", {}).get("mystnb", {}).get("figure", {}).get("name")
            if name:
                figures += 1
                index.targets[name] = Target("figure", f"{prefix}{figures}", "", page)
            continue
        if cell["cell_type"] != "markdown":
            continue
        pending: str | None = None
        for _, line in lines_outside_code(cell_source(cell)):
            if label := _LABEL.match(line):
                pending = label.group(1)
                continue
            if equation := _EQUATION_END.match(line):
                equations += 1
                index.targets[equation.group(2)] = Target("equation", f"{prefix}{equations}", "", page)
            heading = _HEADING.match(line)
            if heading:
                level = len(heading.group(1))
                number = numbers.advance(level)
                title = plain_title(heading.group(2))
                if level == 1:
                    index.targets.setdefault(_page_key(page), Target("page", number, title, page))
                if pending:
                    index.targets[pending] = Target("section", number, title, page)
            if line.strip():
                pending = None


def _page_key(page: str) -> str:
    """The name a ``{doc}`` role gives a page: its path without the suffix (``book/05_practice``)."""
    return str(Path(page).with_suffix(""))


def doc_target(index: Index, name: str, page: str) -> Target:
    """The page a ``{doc}`` role names, relative to ``page``'s folder (``05_practice``, ``../x``)."""
    key = str((Path(page).parent / name).as_posix())
    parts: list[str] = []
    for part in key.split("/"):
        if part == "..":
            parts.pop()
        elif part != ".":
            parts.append(part)
    return index.get("/".join(parts), page)


def build_index(pages: dict[str, list[dict[str, Any]]], numbered: list[str]) -> Index:
    """The labels of ``pages`` (page -> its cells, markdown pages as one markdown cell), numbered
    as the book numbers them: the pages in ``numbered`` are chapters 1, 2, ... in that order."""
    index = Index(chapters={page: n for n, page in enumerate(numbered, start=1)})
    for page, cells in pages.items():
        _page_numbers(cells, index.chapters.get(page), page, index)
    return index


# --- the bibliography ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Reference:
    """One entry of ``book/references.bib``: what a citation prints and what the list at the end holds."""

    key: str
    names: str  # "Finn et al.", "Pan and Yang", "Thrun"
    year: str
    entry: str  # the full reference in Markdown


_ACCENTS = {'"': "\u0308", "'": "\u0301", "`": "\u0300", "^": "\u0302", "~": "\u0303", "=": "\u0304",
            ".": "\u0307", "c": "\u0327", "v": "\u030c", "u": "\u0306", "H": "\u030b"}


def _latex(text: str) -> str:
    """BibTeX's LaTeX as plain text: accents, ``\\url{}``, dashes, ties and braces (what the bib holds)."""
    import unicodedata

    text = re.sub(r"\\url\{([^}]*)\}", r"\1", text)
    text = re.sub(r"\\([\"'`^~=.]|[cvuH](?=[\s{]))\s*\{?\\?([A-Za-z])\}?",
                  lambda m: unicodedata.normalize("NFC", m.group(2) + _ACCENTS[m.group(1)]), text)
    text = text.replace("---", "\u2014").replace("--", "\u2013").replace("~", " ").replace("\\&", "&")
    return re.sub(r"\s+", " ", text.replace("{", "").replace("}", "")).strip()


def _person(person: Any) -> tuple[str, str]:
    last = _latex(" ".join(person.prelast_names + person.last_names))
    initials = " ".join(f"{_latex(name)[:1]}." for name in person.first_names + person.middle_names if name)
    return last, f"{last}, {initials}" if initials else last


def _join(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + ", and " + names[-1]


def read_bibliography(path: Path) -> dict[str, Reference]:
    """Every entry of the BibTeX file ``path``, by key."""
    from pybtex.database import parse_file  # a dependency of the book's tools (sphinxcontrib-bibtex)

    references = {}
    for key, entry in parse_file(str(path)).entries.items():
        people = [_person(p) for p in entry.persons.get("author", []) or entry.persons.get("editor", [])]
        lasts = [last for last, _ in people]
        if len(lasts) >= 3:
            names = f"{lasts[0]} et al."
        elif len(lasts) == 2:
            names = f"{lasts[0]} and {lasts[1]}"
        else:
            names = lasts[0] if lasts else _latex(entry.fields.get("organization", key))
        fields = {name.lower(): _latex(value) for name, value in entry.fields.items()}
        year = fields.get("year", "n.d.")
        venue = next((fields[f] for f in ("journal", "booktitle", "publisher", "school", "howpublished")
                      if f in fields), "")
        text = f"{_join([full for _, full in people]) if people else names} ({year}). {fields.get('title', key)}."
        if venue:
            text += f" *{venue}*."
        if "url" in fields:
            text += f" <{fields['url']}>"
        elif "doi" in fields:
            text += f" <https://doi.org/{fields['doi']}>"
        references[key] = Reference(key, names, year, text)
    return references
