"""The comments of the book's code, in the reader's language.

The code of a translated notebook is the English code, but the comments (``# ...``) of the cells
the book shows are translated. A *comment* here is one unit of English text: an inline comment
(``x = 1  # the first value``), or a block of full-line comments on consecutive lines at the same
indentation, which usually is one sentence wrapped over several lines and is translated as one.
Its key is its text, the ``#`` and surrounding spaces removed and the lines of a block joined
with single spaces, so the same comment in several cells of a page is translated once.

Python's :mod:`tokenize` finds the comments, so a ``#`` inside a string is never taken for one;
IPython's magics (``%pip``, ``!ls``), which do not tokenize, are masked first (their lines keep
their text, and a comment on them stays English). A cell that does not tokenize even so, or
that a cell magic (``%%bash``) makes other than Python, keeps its English comments. Not
translated: comments without words (``# [n, K]``), tool directives (``# noqa``, ``# type:``,
``# fmt:``, ``# pragma``), Colab form lines (``#@title``, ``#@param``) and shebangs, and every
comment of the cells tagged ``remove-cell`` or ``remove-input``, whose code the book never shows
(the reader notebooks show those collapsed, in English).

The translations are kept like the other translations (:mod:`mtlcode.book.translation.catalogue`),
one Markdown file per page under ``translations/<lang>/comments/`` (``.../comments/book/
05_practice.md`` for ``book/05_practice.ipynb``), each under a marker holding the English text and
its fingerprint::

    <!-- the query loss after the inner step sha=3f2a9c0b1d7e -->
    内层更新之后的查询损失

The same format, not gettext's ``.po``, because the same reader refuses a damaged file, ``todo``
appends the English text of what is missing the same way, and a translator edits one kind of
file (and the tests of the edition's terms read them all). A block's translation is written as
one paragraph and wrapped to :data:`WIDTH` columns when the notebook is written (a CJK character
counts two); a translation that has line breaks of its own keeps them.

The code apart from the comments stays byte for byte the English code: :func:`without_comments`
is what the translated edition's code is compared on (``_with_english_outputs``, the tests).
"""

from __future__ import annotations

import io
import re
import tokenize
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mtlcode.book.notebooks import cell_source, cell_tags, read_notebook

WIDTH = 88  # the longest line of a wrapped comment block, indentation included
UNSHOWN_TAGS = ("remove-cell", "remove-input")  # the book never shows these cells' code
KEY_PREFIX = "#"  # a comment's key in the dictionary of a page's translations: "#" + its English text
_DIRECTIVE = re.compile(r"^(?:noqa\b|type:|fmt:|pragma\b|pylint:|isort:|ruff:|@title\b|@param\b|@markdown\b)")
_MAGIC = re.compile(r"^[ \t]*[%!]")
_WORD = re.compile(r"[A-Za-z]{3,}")


@dataclass(frozen=True)
class Comment:
    """One translatable comment of a cell: lines ``first`` to ``last`` (0-based) of its source."""

    first: int
    last: int
    column: int  # where the ``#`` is
    inline: bool  # after code on its line (one line), else a block of full-line comments
    text: str  # the English text, the key of its translation


def _masked(lines: list[str]) -> list[str]:
    """``lines`` with IPython's line magics and shell escapes blanked (continuation lines too)."""
    out, continued = [], False
    for line in lines:
        magic = continued or bool(_MAGIC.match(line))
        out.append(("\n" if line.endswith("\n") else "") if magic else line)
        continued = magic and line.rstrip("\n").endswith("\\")
    return out


def _tokens(lines: list[str]) -> list[tokenize.TokenInfo] | None:
    """The tokens of a cell's lines; None for a cell magic's cell (``%%bash``: not Python) and for
    one that does not tokenize."""
    if next((line for line in lines if line.strip()), "").lstrip().startswith("%%"):
        return None
    masked = iter(_masked(lines))
    try:
        return list(tokenize.generate_tokens(lambda: next(masked, "")))
    except (tokenize.TokenError, SyntaxError):  # IndentationError is a SyntaxError
        return None


def _translatable(text: str) -> bool:
    return bool(_WORD.search(text)) and not _DIRECTIVE.match(text)


def _comment_text(token: str) -> str:
    return token[1:].strip()


def find_comments(source: str) -> list[Comment]:
    """The translatable comments of a cell's ``source``, in order ([] when it does not tokenize)."""
    lines = io.StringIO(source).readlines()
    tokens = _tokens(lines)
    if tokens is None:
        return []
    found: list[Comment] = []
    block: list[tuple[int, int, str]] = []  # (line, column, text) of the current full-line block

    def flush() -> None:
        if block and _translatable(" ".join(text for _, _, text in block)):
            found.append(Comment(block[0][0], block[-1][0], block[0][1], False,
                                 " ".join(text for _, _, text in block)))
        block.clear()

    for token in tokens:
        if token.type != tokenize.COMMENT:
            continue
        row, column = token.start[0] - 1, token.start[1]
        text = _comment_text(token.string)
        if row == 0 and token.string.startswith("#!"):
            continue
        if lines[row][:column].strip():  # after code: an inline comment
            flush()
            if _translatable(text):
                found.append(Comment(row, row, column, True, text))
            continue
        if block and (row != block[-1][0] + 1 or column != block[-1][1] or not text or _DIRECTIVE.match(text)):
            flush()
        if text and not _DIRECTIVE.match(text):
            block.append((row, column, text))
    flush()
    return found


def without_comments(source: str) -> str:
    """``source`` with every comment removed, and the lines that held only a comment: what the
    code of a translated cell must share with the English cell. A cell that does not tokenize is
    returned whole, so that it must be the same."""
    lines = io.StringIO(source).readlines()
    tokens = _tokens(lines)
    if tokens is None:
        return source
    cut = {token.start[0] - 1: token.start[1] for token in tokens if token.type == tokenize.COMMENT}
    out = []
    for row, line in enumerate(lines):
        if row not in cut:
            out.append(line)
        elif line[:cut[row]].strip():
            out.append(line[:cut[row]].rstrip() + ("\n" if line.endswith("\n") else ""))
    return "".join(out)


def _width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


_WIDE = "\u2e80-\u9fff\uff00-\uffef\u3000-\u303f"  # CJK characters and punctuation, fullwidth forms
_PIECE = re.compile(rf"[ \t]+|[{_WIDE}]|[^\s{_WIDE}]+")
_NO_LINE_START = set("，。；：、）》」』”’！？,.;:)]}%")
_NO_LINE_END = set("（《「『“‘([{")


def _pieces(text: str) -> list[str]:
    """``text`` cut where a line may break: between CJK characters, at spaces, never inside a
    run of Latin letters, digits or code, and never before a closing or after an opening mark."""
    pieces: list[str] = []
    for part in _PIECE.findall(text):
        if pieces and (part[0] in _NO_LINE_START or pieces[-1][-1] in _NO_LINE_END):
            pieces[-1] += part
        else:
            pieces.append(part)
    return pieces


def wrap(text: str, width: int) -> list[str]:
    """``text`` in lines of at most ``width`` columns (a CJK character counts two) where it can
    break; each of the text's own lines is wrapped on its own."""
    out: list[str] = []
    for paragraph in text.split("\n"):
        line = ""
        for piece in _pieces(paragraph.strip()):
            if line and _width(line + piece.rstrip()) > width:
                out.append(line.rstrip())
                line = piece.lstrip()
            else:
                line += piece
        out.append(line.rstrip())
    return out


def translate_comments(source: str, translations: dict[str, str]) -> str:
    """``source`` with each comment that ``translations`` (English text -> translation) holds
    replaced by its translation; the code, indentation included, is unchanged."""
    lines = io.StringIO(source).readlines()
    for comment in reversed(find_comments(source)):
        translation = translations.get(comment.text)
        if translation is None:
            continue
        line = lines[comment.first]
        end = "\n" if lines[comment.last].endswith("\n") else ""
        if comment.inline:
            flat = " ".join(part.strip() for part in translation.splitlines() if part.strip())
            lines[comment.first] = line[:comment.column] + "# " + flat + end
            continue
        indent = line[:comment.column]
        wrapped = wrap(translation.strip(), max(WIDTH - _width(indent) - 2, 20))
        new = [f"{indent}# {part}".rstrip() + "\n" for part in wrapped]
        new[-1] = new[-1].rstrip("\n") + end
        lines[comment.first:comment.last + 1] = new
    return "".join(lines)


def shown(cell: dict[str, Any]) -> bool:
    """Whether ``cell`` is a code cell whose comments are translated (the book shows its code)."""
    return cell["cell_type"] == "code" and not any(tag in cell_tags(cell) for tag in UNSHOWN_TAGS)


def page_comments(page: str, root: Path) -> list[tuple[str, str]]:
    """(cell id, English text) of each translatable comment of a notebook ``page``, in order."""
    if not page.endswith(".ipynb"):
        return []
    return [(cell.get("id", ""), comment.text) for cell in read_notebook(root / page)["cells"] if shown(cell)
            for comment in find_comments(cell_source(cell))]
