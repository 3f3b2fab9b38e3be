"""Reader notebooks: the book's notebooks as they read in Jupyter, Colab, VS Code and on GitHub.

The book's notebooks are MyST sources written for Jupyter Book: opened directly, their prose shows
``{glue:text}``, ``{term}``, ``{cite}`` and ``{numref}`` roles, dropdowns and admonitions as code
fences, no figure captions (they live in cell metadata) and every helper cell the book hides. The
reader notebooks, one set per language, hold the same code with the prose written out
(:mod:`mtlcode.book.readers.markup`): the values of the book's run in bold (recorded in
``readers/glued/``, :mod:`mtlcode.book.readers.glued`), citations as "Finn et al. (2017)" with the
chapter's references at its end, cross references as the book numbers them ("Figure 5.3",
"Section 5.2"), solutions in collapsed ``<details>`` blocks, admonitions as quoted blocks, figure
captions as a markdown cell under each figure, and the cells the book hides collapsed (a Colab form
title and Jupyter's ``source_hidden``). They are committed under ``readers/<lang>/book/`` (the
Colab launch buttons, the README and the install instructions open them) and never edited by hand::

    python -m mtlcode.book.readers                    # write readers/en/book/ and readers/zh/book/
    python -m mtlcode.book.readers --check            # exit 1 when one is stale or missing
    python -m mtlcode.book.readers --record _build/jupyter_execute   # values of a book build
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from mtlcode.book.notebooks import cell_source, notebook_text, read_notebook
from mtlcode.book.readers.glued import load_values, stale_values
from mtlcode.book.readers.index import Index, ReaderError, SectionNumbers, build_index, read_bibliography
from mtlcode.book.readers.markup import Page, Words, convert

__all__ = ["LANGUAGES", "READER_KEY", "ReaderError", "check", "reader_notebooks", "reader_path", "write"]

READER_KEY = "mtlcode_reader"  # notebook metadata: the page and language a reader notebook was written from
HIDDEN_TAGS = ("remove-cell", "remove-input", "hide-input", "hide-cell")

LANGUAGES: dict[str, Words] = {
    "en": Words(
        figure="Figure {number}", caption="**Figure {number}.** ", space=" ",
        section="Section {number}, *{title}*", equation="({number})", and_=" and ",
        references="References",
        admonitions={"note": "Note", "tip": "Tip", "important": "Important", "warning": "Warning",
                     "seealso": "See also", "hint": "Hint", "caution": "Caution"},
        glued_note="Numbers in **bold** in the text are those of the book's own run; the cells print "
                   "the numbers of your run, which can differ a little (training is random, and "
                   "rounding depends on the machine).",
        solution_title="Solution", figure_code="Code of Figure {number}", output_code="Code of the output below",
        hidden_code="Helper code and checks of the text",
        generated="This notebook is a page of the book *Learning to Learn: Meta-Learning and Transfer "
                  "Learning*, written out for Jupyter and Colab from its source (`{page}`). Cells the book "
                  "hides are collapsed: click one to see its code."),
    "zh": Words(
        figure="图 {number}", caption="**图 {number}**　", space="",
        section="第 {number} 节“{title}”", equation="({number})", and_=" 和 ",
        references="参考文献",
        admonitions={"note": "注意", "tip": "提示", "important": "重要", "warning": "警告",
                     "seealso": "另请参阅", "hint": "提示", "caution": "小心"},
        glued_note="正文中的**粗体**数字来自本书构建时的运行；代码单元打印的是你这次运行的数字，"
                   "可能略有不同（训练是随机的，舍入误差也因机器而异）。",
        solution_title="解答", figure_code="图 {number} 的代码", output_code="下方输出的代码",
        hidden_code="辅助代码与正文论断的检查",
        generated="本笔记本是《学会学习：元学习与迁移学习》的一页，由本书的源文件（`{page}`）生成，"
                  "供 Jupyter 和 Colab 阅读。书中隐藏的代码单元在这里是折叠的：点击即可查看代码。"),
}


def reader_path(root: Path, language: str, page: str) -> Path:
    """Where the reader notebook of ``page`` (``book/05_practice.ipynb``) in ``language`` lives."""
    return root / "readers" / language / page


def _lines(text: str) -> list[str]:
    return text.splitlines(keepends=True)


def _markdown_cell(cell_id: str, text: str) -> dict[str, Any]:
    return {"cell_type": "markdown", "id": cell_id, "metadata": {}, "source": _lines(text)}


def _code_cell(cell: dict[str, Any], words: Words, figure: str | None) -> dict[str, Any]:
    cell = copy.deepcopy(cell)
    cell["outputs"], cell["execution_count"] = [], None
    metadata = cell.setdefault("metadata", {})
    metadata.pop("mystnb", None)
    tags = metadata.get("tags", [])
    title = None
    if "solution" in tags:
        title = words.solution_title
    elif figure:
        title = words.figure_code.format(number=figure)
    elif "remove-input" in tags:
        title = words.output_code
    elif any(tag in tags for tag in HIDDEN_TAGS):
        title = words.hidden_code
    if title:
        source = cell_source(cell)
        if not source.lstrip().startswith("%%"):  # a cell magic must stay the first line
            cell["source"] = _lines(f"#@title {title}\n{source}")
        metadata["cellView"] = "form"  # Colab shows the title and hides the code
        metadata.setdefault("jupyter", {})["source_hidden"] = True  # JupyterLab collapses the code
    return cell


def reader_notebook(notebook: dict[str, Any], page: str, language: str, index: Index,
                    bibliography: dict[str, Any], glued: dict[str, str]) -> dict[str, Any]:
    """The reader notebook of one page (``notebook``: the page's source in ``language``)."""
    words = LANGUAGES[language]
    state = Page(page, words, index, bibliography, glued, SectionNumbers(index.chapters.get(page)))
    cells: list[dict[str, Any]] = []
    for cell in notebook["cells"]:
        if cell["cell_type"] == "markdown":
            cells.append({**copy.deepcopy(cell), "source": _lines(convert(cell_source(cell), state))})
            if len(cells) == 1:
                about = words.generated.format(page=page) + (words.space + words.glued_note if glued else "")
                cells.append(_markdown_cell("reader-about", f"> {about}"))
            continue
        if cell["cell_type"] != "code":
            cells.append(copy.deepcopy(cell))
            continue
        figure = cell.get("metadata", {}).get("mystnb", {}).get("figure", {})
        number = index.targets[figure["name"]].number if figure.get("name") else None
        cells.append(_code_cell(cell, words, number))
        if figure.get("caption"):
            caption = convert(figure["caption"], state)
            cells.append(_markdown_cell(f"{cell['id']}-caption", words.caption.format(number=number) + caption))
    if state.cited:
        cited = sorted((bibliography[key] for key in state.cited), key=lambda r: (r.names, r.year, r.key))
        cells.append(_markdown_cell("reader-references", f"## {words.references}\n\n"
                                    + "\n".join(f"- {r.entry}" for r in cited)))
    metadata = {k: v for k, v in notebook.get("metadata", {}).items() if k != "mtlcode_translation"}
    metadata[READER_KEY] = {"from": page, "language": language}
    return {**notebook, "metadata": metadata, "cells": cells}


def _source_pages(language: str, root: Path) -> dict[str, Any]:
    """Every page of the table of contents in ``language``: a notebook, or a Markdown page's text."""
    from mtlcode.book.translation.build import _lookup, _string_lookup, translate_markdown, translate_notebook
    from mtlcode.book.translation.english import LANGUAGES as TRANSLATED
    from mtlcode.book.translation.english import book_pages

    pages: dict[str, Any] = {}
    strings = _string_lookup(TRANSLATED[language], root) if language != "en" else {}
    for page in book_pages(root):
        if page.endswith(".ipynb"):
            source: Any = read_notebook(root / page)
            if language != "en":
                source = translate_notebook(source, _lookup(TRANSLATED[language], page, root), strings)
        else:
            source = (root / page).read_text(encoding="utf-8")
            if language != "en":
                source = translate_markdown(source, _lookup(TRANSLATED[language], page, root))
        pages[page] = source
    return pages


def _numbered_pages(root: Path) -> list[str]:
    import yaml

    toc = yaml.safe_load((root / "_toc.yml").read_text(encoding="utf-8"))
    names = [c["file"] for part in toc["parts"] if part.get("numbered") for c in part["chapters"]]
    return [f"{name}.ipynb" if (root / f"{name}.ipynb").exists() else f"{name}.md" for name in names]


def reader_notebooks(language: str, root: Path | None = None) -> dict[Path, str]:
    """The reader notebooks of ``language`` ("en", "zh"), by path, as file text; nothing is written."""
    from mtlcode.book.translation.english import ROOT

    root = root or ROOT
    if language not in LANGUAGES:
        raise ReaderError(f"no reader notebooks in {language!r}; the languages are {sorted(LANGUAGES)}")
    pages = _source_pages(language, root)
    cells = {page: source["cells"] if isinstance(source, dict) else
             [{"cell_type": "markdown", "source": source}] for page, source in pages.items()}
    index = build_index(cells, _numbered_pages(root))
    bibliography = read_bibliography(root / "book" / "references.bib")
    out = {}
    for page, source in pages.items():
        if isinstance(source, dict):
            notebook = reader_notebook(source, page, language, index, bibliography,
                                       load_values(root, page)["values"])
            out[reader_path(root, language, page)] = notebook_text(notebook)
    return out


def _generated(path: Path) -> bool:
    try:
        return READER_KEY in json.loads(path.read_text(encoding="utf-8")).get("metadata", {})
    except (OSError, ValueError, AttributeError):
        return False


def write(languages: list[str], root: Path | None = None) -> list[Path]:
    """Write the reader notebooks of ``languages``; delete the ones written earlier for a page
    that is gone (other files under ``readers/`` are never touched). The paths written."""
    from mtlcode.book.translation.english import ROOT

    root = root or ROOT
    written = []
    for language in languages:
        notebooks = reader_notebooks(language, root)
        for old in (root / "readers" / language).rglob("*.ipynb"):
            if old not in notebooks and ".ipynb_checkpoints" not in old.parts and _generated(old):
                old.unlink()
        for path, text in notebooks.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                path.write_text(text, encoding="utf-8")
            written.append(path)
    return sorted(written)


def check(languages: list[str], root: Path | None = None) -> list[str]:
    """What is stale: a reader notebook missing, different from what it would be written as, or
    left from a page that is gone, and glued values recorded for older code (one line each)."""
    from mtlcode.book.translation.english import ROOT, book_pages

    root = root or ROOT
    problems = stale_values(root, [p for p in book_pages(root) if p.endswith(".ipynb")])
    for language in languages:
        notebooks = reader_notebooks(language, root)
        for path, text in notebooks.items():
            name = path.relative_to(root)
            if not path.is_file():
                problems.append(f"{name}: missing")
            elif path.read_text(encoding="utf-8") != text:
                problems.append(f"{name}: stale")
        problems += [f"{old.relative_to(root)}: its page is gone" for old in (root / "readers" / language).rglob(
            "*.ipynb") if old not in notebooks and ".ipynb_checkpoints" not in old.parts and _generated(old)]
    return problems
