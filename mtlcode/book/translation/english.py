"""The English side: what needs translating.

The languages of the book, the pages of its table of contents, and their English text cut into
*segments* (a notebook's markdown cells and figure texts, a Markdown page's blocks of prose) and
short strings (title, captions, buttons), each with the fingerprint that a translation's marker
records. :class:`TranslationError` lives here, the first module of the package, because reading
the English pages can already raise it (a notebook cell without an id).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mtlcode.book.notebooks import cell_source, read_notebook

ROOT = Path(__file__).resolve().parents[3]  # the repository root, above mtlcode/book/translation/


@dataclass(frozen=True)
class Language:
    code: str  # the folder name: translations/<code>/, <code>/book/, the site's <code>/ path
    sphinx: str  # Sphinx's language setting (its own interface strings, search)
    name: str  # the language's own name, shown on the other edition's switch


LANGUAGES = {"zh": Language("zh", "zh_CN", "中文")}
ENGLISH = Language("en", "en", "English")
# Figure captions and alt texts are the translatable strings in a code cell's metadata.
_METADATA_TEXT = {"caption": ("mystnb", "figure", "caption"), "alt": ("mystnb", "image", "alt")}
_PROMPTS = ("code_prompt_show", "code_prompt_hide")


class TranslationError(RuntimeError):
    """Translations missing, stale or broken; the message lists each one and says what to do."""


def fingerprint(text: str) -> str:
    """12 hex digits of the SHA-256 of ``text`` (surrounding blank lines ignored)."""
    return hashlib.sha256(text.strip().encode("utf-8")).hexdigest()[:12]


@dataclass(frozen=True)
class Segment:
    """One piece of English text that needs a translation."""

    page: str  # "book/05_practice.ipynb"
    key: str  # "c004", "c010.caption", "b3", or the string itself in strings.md
    text: str

    @property
    def sha(self) -> str:
        return fingerprint(self.text)


def book_pages(root: Path = ROOT) -> list[str]:
    """The pages of the table of contents, as paths relative to ``root`` with their suffix."""
    import yaml  # the book's tools; not needed to run a chapter

    toc = yaml.safe_load((root / "_toc.yml").read_text(encoding="utf-8"))
    names = [toc["root"]] + [c["file"] for part in toc["parts"] for c in part["chapters"]]
    pages = []
    for name in names:
        suffix = ".ipynb" if (root / f"{name}.ipynb").exists() else ".md"
        pages.append(name + suffix)
    return pages


def _fence(line: str) -> tuple[str, str] | None:
    """(marker, info) when ``line`` opens or closes a fence (``` or ~~~ or :::), else None."""
    match = re.match(r"^[ \t]*(`{3,}|~{3,}|:{3,})[ \t]*(.*?)[ \t]*$", line)
    return (match.group(1), match.group(2)) if match else None


# Directives whose body is prose: their blocks are translated one by one. Any other fence
# (code, eval-rst, bibliography) is copied as it is.
_PROSE_DIRECTIVES = re.compile(r"^\{(glossary|note|tip|important|warning|admonition|dropdown|epigraph)\}")


def markdown_chunks(text: str) -> list[tuple[str, bool]]:
    """``text`` cut into (chunk, translatable) pairs whose concatenation is ``text``.

    Translatable chunks are the blocks of prose between blank lines; blank lines, the opening and
    closing lines of prose directives, and whole code fences are not translated.
    """
    chunks: list[tuple[str, bool]] = []
    block: list[str] = []
    prose_fences: list[str] = []  # markers of the open prose directives
    lines = text.splitlines(keepends=True)
    i = 0

    def flush() -> None:
        if block:
            chunks.append(("".join(block), True))
            block.clear()

    while i < len(lines):
        line = lines[i]
        fence = _fence(line)
        if not line.strip():
            flush()
            chunks.append((line, False))
        elif fence and prose_fences and fence[0] == prose_fences[-1] and not fence[1]:
            flush()
            prose_fences.pop()
            chunks.append((line, False))
        elif fence and _PROSE_DIRECTIVES.match(fence[1]):
            flush()
            prose_fences.append(fence[0])
            chunks.append((line, False))
        elif fence and fence[1] is not None and (fence[1] or not block):
            # a code fence (or another directive): copied whole, up to its closing marker
            flush()
            end = i + 1
            while end < len(lines) and not (_fence(lines[end]) and _fence(lines[end])[0] == fence[0]
                                            and not _fence(lines[end])[1]):
                end += 1
            chunks.append(("".join(lines[i:end + 1]), False))
            i = end
        else:
            block.append(line)
        i += 1
    flush()
    return chunks


def _metadata_text(cell: dict[str, Any], path: tuple[str, ...]) -> str | None:
    value: Any = cell.get("metadata", {})
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return value if isinstance(value, str) else None


def segments(page: str, root: Path = ROOT) -> list[Segment]:
    """The English segments of ``page`` (a path relative to ``root``), in order."""
    path = root / page
    found: list[Segment] = []
    if path.suffix == ".ipynb":
        for index, cell in enumerate(read_notebook(path)["cells"]):
            cell_id = cell.get("id")
            if not cell_id:
                raise TranslationError(f"{page}: cell {index} has no id; save the notebook with nbformat >= 4.5")
            if cell["cell_type"] == "markdown":
                found.append(Segment(page, cell_id, cell_source(cell)))
            for name, where in _METADATA_TEXT.items():
                text = _metadata_text(cell, where)
                if text:
                    found.append(Segment(page, f"{cell_id}.{name}", text))
    else:
        chunks = markdown_chunks(path.read_text(encoding="utf-8"))
        blocks = [chunk for chunk, translatable in chunks if translatable]
        found = [Segment(page, f"b{n}", block) for n, block in enumerate(blocks)]
    return found


def strings(root: Path = ROOT) -> list[str]:
    """The short strings of the book: title, the parts' captions, the solution buttons."""
    import yaml

    config = yaml.safe_load((root / "_config.yml").read_text(encoding="utf-8"))
    toc = yaml.safe_load((root / "_toc.yml").read_text(encoding="utf-8"))
    found = [config["title"]] + [part["caption"] for part in toc["parts"]]
    for page in book_pages(root):
        if page.endswith(".ipynb"):
            for cell in read_notebook(root / page)["cells"]:
                found += [cell["metadata"]["mystnb"][p] for p in _PROMPTS
                          if p in cell.get("metadata", {}).get("mystnb", {})]
    return list(dict.fromkeys(found))
