"""MyST markup written out as the Markdown that Jupyter, Colab and GitHub render.

:func:`convert` turns the text of one markdown cell (or a figure caption) of the book's source into
plain Markdown: roles become words and numbers (a glued value in bold, a citation as "Finn et al.
(2017)", a cross reference as "Figure 5.3"), admonitions become quoted blocks, dropdowns become
collapsed ``<details>`` blocks, label lines go, headings get the book's numbers and labelled
equations a ``\\tag`` with theirs. Code fences are copied as they are.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mtlcode.book.readers.index import (
    _EQUATION_END,
    _FENCE,
    _HEADING,
    _LABEL,
    Index,
    ReaderError,
    Reference,
    SectionNumbers,
    Target,
    doc_target,
)

# One inline role: {name}`content`.
_ROLE = re.compile(r"\{([\w:-]+)\}`([^`]*)`")
# "text <target>" inside a role.
_EXPLICIT = re.compile(r"^(.*?)\s*<([^<>]+)>$", re.S)
_ADMONITIONS = ("note", "tip", "important", "warning", "caution", "attention", "hint", "seealso", "danger", "error")


@dataclass(frozen=True)
class Words:
    """The few words a reader notebook adds, in one language."""

    figure: str  # "Figure {number}"
    caption: str  # what starts a figure's caption: "**Figure {number}.** "
    space: str  # between two sentences: " ", or "" in Chinese
    section: str  # "Section {number}, *{title}*"
    equation: str  # "({number})"
    and_: str  # between two citations in a {cite:t}
    references: str  # the heading of the list of references
    admonitions: dict[str, str]  # "note" -> "Note"
    glued_note: str  # the note at the top about the values written in
    solution_title: str  # the collapsed form of a solution cell
    figure_code: str  # "Code of Figure {number}"
    output_code: str  # the collapsed form of a cell whose output the book shows without its code
    hidden_code: str  # the collapsed form of a cell the book hides or removes
    generated: str  # the note at the top about where the notebook comes from


@dataclass
class Page:
    """What converting one page's cells needs: the page, its values, the book's index, and the
    citations met so far (in order, for the list at the end)."""

    page: str
    words: Words
    index: Index
    bibliography: dict[str, Reference]
    glued: dict[str, str]
    numbers: SectionNumbers
    equations: int = 0
    cited: list[str] = field(default_factory=list)


def glue_text(text: str, fmt_spec: str) -> str:
    """A glued value's ``text/plain`` as ``{glue:text}`key:fmt``` prints it (myst-nb's rule)."""
    import ast

    try:
        value: Any = ast.literal_eval(text)
    except (SyntaxError, ValueError):
        value = text
    if fmt_spec == "":
        return str(value)
    kind = fmt_spec[-1]
    if kind == "s":
        value = str(value)
    elif kind in "bcdoxX":
        value = int(value)
    elif kind in "eEfFgGn%":
        value = float(value)
    return format(value, fmt_spec)


def _glue(content: str, page: Page) -> str:
    key, _, fmt = content.rpartition(":") if ":" in content else (content, "", "s")
    if "::" in content or key not in page.glued:
        raise ReaderError(f"{page.page}: no value recorded for the glued name {content!r}; record the "
                          "book's run again (python -m mtlcode.book.readers --record)")
    # HTML, not **...**: Markdown's emphasis fails where a value such as "-0.5" or "5%" touches a
    # Chinese character
    return f"<b>{glue_text(page.glued[key], fmt)}</b>"


def _cite(role: str, content: str, page: Page) -> str:
    keys = [k.strip() for k in content.split(",") if k.strip()]
    missing = [k for k in keys if k not in page.bibliography]
    if missing:
        raise ReaderError(f"{page.page}: citation keys not in book/references.bib: {missing}")
    page.cited += [k for k in keys if k not in page.cited]
    refs = [page.bibliography[k] for k in keys]
    if role in ("cite:t", "cite:ts"):
        return page.words.and_.join(f"{r.names} ({r.year})" for r in refs)
    return "(" + "; ".join(f"{r.names}, {r.year}" for r in refs) + ")"


def _explicit(content: str) -> tuple[str | None, str]:
    """("text", "target") of "text <target>", (None, "target") of "target"."""
    match = _EXPLICIT.match(content)
    return (match.group(1), match.group(2).strip()) if match else (None, content.strip())


def _link(text: str, target: Target, page: Page) -> str:
    """``text`` as a link to the reader notebook that holds ``target`` when that is another one
    (they all sit in one folder); on its own page, the text alone."""
    if target.page == page.page or not target.page.endswith(".ipynb"):
        return text
    return f"[{text}]({target.page.rsplit('/', 1)[-1]})"


def _reference(role: str, content: str, page: Page) -> str:
    text, label = _explicit(content)
    if role == "doc":
        target = doc_target(page.index, label, page.page)
        title = text or target.title
        return _link(title, target, page) if target.page.endswith(".ipynb") else f"*{title}*"
    target = page.index.get(label, page.page)
    if role == "eq":
        return _link(page.words.equation.format(number=target.number), target, page)
    if target.kind == "figure":
        default = page.words.figure
    elif target.kind == "equation":
        default = page.words.equation
    else:
        default = page.words.section if target.number else "*{title}*"
    if text is None:
        words = default.format(number=target.number, title=target.title)
    elif role == "numref":  # {numref}`Figure %s <label>`
        words = text.replace("%s", target.number).replace("{number}", target.number)
    else:  # {ref}`words <label>`
        words = text
    return _link(words, target, page)


def convert_roles(text: str, page: Page) -> str:
    """``text`` with every role replaced by what the book prints for it."""
    def replace(match: re.Match[str]) -> str:
        role, content = match.group(1), match.group(2)
        if role.startswith("glue"):
            return _glue(content, page)
        if role in ("cite", "cite:p", "cite:t", "cite:ps", "cite:ts"):
            return _cite(role, content, page)
        if role in ("term", "abbr", "sub", "sup", "index"):
            text, target = _explicit(content)
            return text if text is not None else target
        if role in ("ref", "numref", "doc", "eq"):
            return _reference(role, content, page)
        if role in ("math",):
            return f"${content}$"
        raise ReaderError(f"{page.page}: the role {{{role}}} has no plain form in a reader notebook")
    return _ROLE.sub(replace, text)


def _directive(name: str, argument: str, body: list[str], page: Page, convert_lines: Callable) -> list[str]:
    """The Markdown lines of a directive ``name`` with its ``argument`` and ``body`` (options removed)."""
    while body and re.match(r"^:[\w-]+:", body[0]):
        body = body[1:]
    inner = convert_lines(body)
    while inner and not inner[0].strip():
        inner = inner[1:]
    while inner and not inner[-1].strip():
        inner = inner[:-1]
    title = convert_roles(argument, page).strip()
    if name == "dropdown":
        return ["<details>", f"<summary>{title}</summary>", ""] + inner + ["", "</details>"]
    if name == "admonition" or name in _ADMONITIONS:
        heading = title if name == "admonition" else page.words.admonitions.get(name, name.title())
        quoted = [f"> **{heading}**", ">"] + [f"> {line}".rstrip() for line in inner]
        return quoted
    raise ReaderError(f"{page.page}: the directive {{{name}}} has no plain form in a reader notebook")


def convert(text: str, page: Page) -> str:
    """One markdown cell of the book's source as plain Markdown (see the module's docstring)."""
    return "\n".join(_convert_lines(text.split("\n"), page)).strip("\n")


def _closing(lines: list[str], start: int, marker: str) -> int:
    """The index of the line that closes the fence opened with ``marker`` at ``start``."""
    depth = 0
    for i in range(start + 1, len(lines)):
        fence = _FENCE.match(lines[i])
        if not fence:
            continue
        if fence.group(1) == marker and not fence.group(2).strip():
            if depth == 0:
                return i
            depth -= 1
        elif fence.group(1) == marker:
            depth += 1
    raise ReaderError(f"an unclosed fence {marker!r}: {lines[start]!r}")


def _convert_lines(lines: list[str], page: Page) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        fence = _FENCE.match(line)
        if fence:
            end = _closing(lines, i, fence.group(1))
            directive = re.match(r"^\{([\w-]+)\}\s*(.*)$", fence.group(2).strip())
            if directive:
                out += _directive(directive.group(1), directive.group(2), lines[i + 1:end], page,
                                  lambda body: _convert_lines(body, page))
            else:
                out += lines[i:end + 1]  # code: as it is
            i = end + 1
            continue
        i += 1
        if _LABEL.match(line):
            continue
        if equation := _EQUATION_END.match(line):
            page.equations += 1
            number = page.index.targets[equation.group(2)].number
            out.append(f"{equation.group(1)}\\tag{{{number}}}$$")
            continue
        if heading := _HEADING.match(line):
            number = page.numbers.advance(len(heading.group(1)))
            if number:
                number += ". "
            out.append(f"{heading.group(1)} {number}{convert_roles(heading.group(2), page)}")
            continue
        out.append(convert_roles(line, page))
    return out
