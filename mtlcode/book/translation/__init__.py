"""The book in other languages, built from the English sources so that it cannot drift.

A translation is stored per *segment* of English text, in one Markdown file per page under
``translations/<lang>/`` (``translations/zh/book/05_practice.md`` for ``book/05_practice.ipynb``).
A segment is a markdown cell of a notebook (keyed by the cell's id), a figure caption or alt text
in a code cell's metadata (``<id>.caption``, ``<id>.alt``), a block of a Markdown page (``b<n>``,
blocks being separated by blank lines; code blocks are shared, not translated), or a short
string (the book's title, the table of contents' captions, "Show the solution"), kept in
``translations/<lang>/strings.md``. Each translation starts with a marker that names the segment
and the fingerprint of the English text it translates::

    <!-- c004 sha=3f2a9c0b1d7e -->
    中文的段落 ...

Code is never translated, only its comments: the generator copies every code cell from the
English notebook and translates the comments of the cells the book shows (kept, keyed by their
English text, in ``translations/<lang>/comments/``, :mod:`mtlcode.book.translation.comments`), so
the translated notebooks (``zh/book/*.ipynb``, committed for Colab and Jupyter) hold the same code
apart from its comments, and the translated book reuses the English build's executed outputs
instead of running again.
What that code says to the reader (figure texts, printed messages, tables) is translated through
``translations/<lang>/outputs.po`` (:mod:`mtlcode.book.translation.outputs`).

    python -m mtlcode.book.translation check zh          # what is missing, stale or broken
    python -m mtlcode.book.translation todo zh PAGE      # append the missing segments and comments (English text)
    python -m mtlcode.book.translation notebooks zh      # write zh/book/*.ipynb
    python -m mtlcode.book.translation source zh OUT     # the translated book's sources, with outputs, in OUT
    python -m mtlcode.book.translation outputs zh        # figure, message and table texts not translated
"""

from __future__ import annotations

import importlib
from typing import Any

# The names of the module before it became a package: __all__, and the others the tests and the
# book's tools import from here (noqa: re-exported, not used here).
from mtlcode.book.translation.build import (  # noqa: F401
    GENERATED_KEY,
    SOURCE_STAMP,
    translate_markdown,
    translate_notebook,
    translated_notebooks,
    write_notebooks,
    write_source,
)
from mtlcode.book.translation.catalogue import (  # noqa: F401
    Entry,
    append_missing,
    append_missing_comments,
    check,
    comment_file,
    comment_problems,
    has_prose,
    page_problems,
    read_translations,
    string_problems,
    translation_file,
    translation_problem,
)
from mtlcode.book.translation.english import (  # noqa: F401
    ENGLISH,
    LANGUAGES,
    ROOT,
    Language,
    Segment,
    TranslationError,
    book_pages,
    fingerprint,
    markdown_chunks,
    segments,
    strings,
)

__all__ = ["LANGUAGES", "Language", "Segment", "TranslationError", "book_pages", "check", "fingerprint",
           "read_translations", "segments", "translate_markdown", "translate_notebook",
           "write_notebooks", "write_source"]


def __getattr__(name: str) -> Any:
    """``main`` and ``_parser``, from the command line's module, loaded when first asked for.

    Importing ``__main__`` here at once would make ``python -m mtlcode.book.translation`` find it
    already imported and warn (runpy's RuntimeWarning) before running it a second time.
    """
    if name in ("main", "_parser"):
        return getattr(importlib.import_module(f"{__name__}.__main__"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
