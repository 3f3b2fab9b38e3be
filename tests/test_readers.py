"""The reader notebooks (readers/<lang>/book/): current, free of MyST markup, and readable in Jupyter.

They are generated from the book's notebooks (``python -m mtlcode.book.readers``) and committed;
a test here fails when regenerating them would change them, when one holds a MyST role or
directive, or when its Markdown, rendered the way Jupyter renders it, lacks the numbers, captions
and collapsed solutions the book shows.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from mtlcode.book import readers
from mtlcode.book.notebooks import cell_source, code_fingerprint, read_notebook
from mtlcode.book.readers.index import Index, ReaderError, SectionNumbers, Target, read_bibliography
from mtlcode.book.readers.markup import Page, convert, glue_text
from mtlcode.book.translation.comments import without_comments

ROOT = Path(__file__).resolve().parents[1]
LANGUAGES = sorted(readers.LANGUAGES)
SOURCES = sorted((ROOT / "book").glob("*.ipynb"))
# A MyST role ({term}`...`), a directive fence (```{dropdown}, :::{note}) or a label line ((name)=).
MYST = re.compile(r"\{[\w:-]+\}`|^\s*(`{3,}|:{3,})\s*\{|^\([\w.:-]+\)=\s*$", re.M)


def uncommented(notebook: dict) -> dict:
    """``notebook`` with the comments of its code removed (the translated editions translate them)."""
    return {**notebook, "cells": [{**c, "source": without_comments(cell_source(c))} if c["cell_type"] == "code"
                                  else c for c in notebook["cells"]]}


def committed(language: str) -> list[Path]:
    return sorted((ROOT / "readers" / language / "book").glob("*.ipynb"))


@pytest.fixture(scope="module")
def problems() -> list[str]:
    return readers.check(LANGUAGES, ROOT)


def test_reader_notebooks_are_current(problems):
    assert not problems, ("the reader notebooks are stale; run `python -m mtlcode.book.readers` "
                          "(and commit readers/):\n  " + "\n  ".join(problems))


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_book_notebook_has_a_reader_notebook(language):
    assert [p.name for p in committed(language)] == [p.name for p in SOURCES]


@pytest.mark.parametrize("language", LANGUAGES)
def test_reader_notebooks_are_valid_notebooks(language):
    import nbformat

    for path in committed(language):
        notebook = nbformat.read(path, as_version=4)
        nbformat.validate(notebook)  # cell ids unique and well formed, among the rest
        assert notebook.metadata[readers.READER_KEY] == {"from": f"book/{path.name}", "language": language}


@pytest.mark.parametrize("language", LANGUAGES)
def test_reader_notebooks_hold_no_myst_markup(language):
    found = []
    for path in committed(language):
        notebook = read_notebook(path)
        for i, cell in enumerate(notebook["cells"]):
            if cell["cell_type"] == "markdown" and (match := MYST.search(cell_source(cell))):
                found.append(f"{path.relative_to(ROOT)} cell {i}: {match.group(0)!r}")
            if "mystnb" in cell.get("metadata", {}):
                found.append(f"{path.relative_to(ROOT)} cell {i}: myst-nb metadata")
    assert not found, "\n".join(found[:30])


@pytest.mark.parametrize("language", LANGUAGES)
def test_reader_notebooks_run_the_books_code_with_hidden_cells_collapsed(language):
    for path in committed(language):
        source = read_notebook(ROOT / "book" / path.name)
        notebook = read_notebook(path)
        if language == "en":
            assert code_fingerprint(notebook) == code_fingerprint(source), f"{path}: other code than book/{path.name}"
        else:  # the same code, but for the comments
            assert code_fingerprint(uncommented(notebook)) == code_fingerprint(uncommented(source)), \
                f"{path}: other code than book/{path.name} (comments apart)"
            assert code_fingerprint(notebook) != code_fingerprint(source), f"{path}: comments not translated"
        for cell in notebook["cells"]:
            tags = cell.get("metadata", {}).get("tags", [])
            if cell["cell_type"] == "code" and any(t in tags for t in readers.HIDDEN_TAGS):
                assert cell_source(cell).startswith("#@title "), f"{path}: a hidden cell without a Colab form title"
                assert cell["metadata"]["cellView"] == "form" and cell["metadata"]["jupyter"]["source_hidden"]
            if cell["cell_type"] == "code":
                assert cell["outputs"] == [] and cell["execution_count"] is None, f"{path}: outputs left in"


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_note_at_the_top_says_where_the_bold_numbers_come_from(language):
    note = readers.LANGUAGES[language].glued_note
    for path in committed(language):
        cells = read_notebook(path)["cells"]
        assert cells[1]["id"] == "reader-about" and note in cell_source(cells[1]), path
        assert f"book/{path.name}" in cell_source(cells[1]), path


def _page(glued: dict[str, str] | None = None) -> Page:
    index = Index(targets={"fig-x": Target("figure", "5.3", "", "book/05_p.ipynb"),
                           "sec-y": Target("section", "5.2", "Intervals", "book/05_p.ipynb"),
                           "eq-z": Target("equation", "4.1", "", "book/04_m.ipynb"),
                           "book/04_m": Target("page", "4", "The maths", "book/04_m.ipynb")},
                  chapters={"book/05_p.ipynb": 5})
    bibliography = read_bibliography(ROOT / "book" / "references.bib")
    return Page("book/05_p.ipynb", readers.LANGUAGES["en"], index, bibliography, glued or {"mse": "0.12345"},
                SectionNumbers(5))


def test_roles_become_words_and_numbers():
    page = _page()
    text = ("(sec-y)=\n## Intervals\n\nMSE {glue:text}`mse:.2f` as {cite:t}`finn2017maml` found "
            "{cite}`finn2017maml,nichol2018reptile`; see {numref}`fig-x`, {ref}`sec-y`, {eq}`eq-z`, "
            "{doc}`04_m` and {term}`MAML <Model-Agnostic Meta-Learning, MAML (模型无关的元学习)>`.")
    assert convert(text, page) == (
        "## 5.1. Intervals\n\nMSE <b>0.12</b> as Finn et al. (2017) found (Finn et al., 2017; Nichol et al., "
        "2018); see Figure 5.3, Section 5.2, *Intervals*, [(4.1)](04_m.ipynb), [The maths](04_m.ipynb) and MAML.")
    assert page.cited == ["finn2017maml", "nichol2018reptile"]


def test_directives_become_quotes_and_collapsed_details():
    page = _page()
    text = ("````{admonition} Algorithm 1: MAML\n:class: note\n\n```text\nrepeat\n```\n````\n\n"
            "```{dropdown} Solution\nThe graph is kept, {cite:p}`finn2017maml`.\n```\n\n$$\nx = 1\n$$ (eq-z)")
    assert convert(text, page) == (
        "> **Algorithm 1: MAML**\n>\n> ```text\n> repeat\n> ```\n\n<details>\n<summary>Solution</summary>\n\n"
        "The graph is kept, (Finn et al., 2017).\n\n</details>\n\n$$\nx = 1\n\\tag{4.1}$$")


def test_glued_values_are_formatted_as_the_book_formats_them():
    assert glue_text("0.123456", ".3f") == "0.123"
    assert glue_text("'pretrained'", "s") == "pretrained"
    assert glue_text("12.0", ".0f") == "12"
    assert glue_text("3", "d") == "3"
    with pytest.raises(ReaderError, match="no value recorded for the glued name 'other'"):
        convert("{glue:text}`other`", _page())
    with pytest.raises(ReaderError, match="not in book/references.bib"):
        convert("{cite}`nobody2020`", _page())


def _rendered(path: Path) -> str:
    """The notebook's Markdown cells as Jupyter renders them (nbconvert's HTML export)."""
    from nbconvert import HTMLExporter

    html, _ = HTMLExporter(template_name="classic").from_filename(str(path))
    return html


@pytest.mark.parametrize(("language", "figure", "references"), [("en", "Figure 5.1.", "References"),
                                                                 ("zh", "图 5.1", "参考文献")])
def test_a_chapter_renders_with_numbers_captions_and_collapsed_solutions(language, figure, references):
    path = ROOT / "readers" / language / "book" / "05_practice.ipynb"
    html = _rendered(path)
    prose = "".join(re.findall(r'<div class="text_cell_render[^"]*">(.*?)</div>', html, re.S))
    assert prose, "no rendered Markdown found"
    assert not MYST.search(prose) and "{glue" not in prose and "{term}" not in prose
    values = json.loads((ROOT / "readers" / "glued" / "05_practice.json").read_text())["values"]
    assert "<b>1.224</b>" in prose or re.search(r"<b>[-\d.,%]+</b>", prose), "no glued value in bold"
    assert values, "no values recorded for chapter 5"
    assert f"<strong>{figure}</strong>" in prose, "no numbered figure caption"
    assert "<details>" in prose and "<summary>" in prose, "no collapsed solution"
    assert "et al. (" in prose or "et al., " in prose, "no citation written out"
    assert f"{references}</h2>" in prose or f">{references}<" in prose, "no list of references"
    assert re.search(r"<h2[^>]*>5\.\d+\.", prose), "the sections are not numbered as in the book"


def test_the_instructor_page_reads_the_exercises_of_every_edition():
    """The instructor page counts each chapter's exercises under "## Exercises" (numbered in the
    reader notebooks, Chinese in zh/): every edition of the chapters yields the same inventory."""
    page = read_notebook(ROOT / "book" / "instructor.ipynb")
    code = next(cell_source(c) for c in page["cells"] if "def exercises_of" in cell_source(c))
    namespace: dict = {"re": re, "json": json}
    exec(compile(code.split("\ninventory = ")[0], "instructor", "exec"), namespace)  # its definitions
    english = {p.stem: namespace["exercises_of"](p) for p in sorted((ROOT / "book").glob("[0-9][0-9]_*.ipynb"))}
    assert all(total >= 3 for total, _ in english.values())
    for folder in ("zh/book", "readers/en/book", "readers/zh/book"):
        found = {p.stem: namespace["exercises_of"](p) for p in sorted((ROOT / folder).glob("[0-9][0-9]_*.ipynb"))}
        assert {k: v[0] for k, v in found.items()} == {k: v[0] for k, v in english.items()}, folder
        numbers = {k: [(n, f, c) for n, _, f, c in v[1]] for k, v in found.items()}
        assert numbers == {k: [(n, f, c) for n, _, f, c in v[1]] for k, v in english.items()}, folder


@pytest.mark.parametrize("folder", ["book", "zh/book", "readers/en/book", "readers/zh/book"])
def test_the_instructor_pages_nbgrader_export_reads_every_edition(folder, tmp_path):
    """The instructor page exports the chapters next to it for nbgrader; it once stopped with
    "no '## Exercises' section" on the Chinese chapters, and would on the numbered headings of the
    reader notebooks ("## 3.6. Exercises")."""
    from mtlcode.course.nbgrader_export import write_nbgrader_course

    assignments = write_nbgrader_course(tmp_path, ROOT / folder, exercises_only=True)
    assert [p.parent.name for p in assignments] == [p.stem for p in sorted((ROOT / "book").glob("0*.ipynb"))
                                                    if any("solution" in c.get("metadata", {}).get("tags", [])
                                                           for c in read_notebook(p)["cells"])]


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_student_edition_of_the_reader_notebooks_still_strips_the_solutions(language, tmp_path):
    from mtlcode.course.editions import write_student_edition

    written = write_student_edition(tmp_path, book=ROOT / "readers" / language / "book")
    assert written
    for path in written:
        notebook = read_notebook(path)
        markdown = "\n".join(cell_source(c) for c in notebook["cells"] if c["cell_type"] == "markdown")
        assert "<details>" not in markdown, f"{path.name}: a solution left in the student edition"
        stubs = [cell_source(c) for c in notebook["cells"] if "solution" in c.get("metadata", {}).get("tags", [])]
        assert all("NotImplementedError" in stub for stub in stubs), path.name


def test_check_names_a_stale_notebook_and_values_of_older_code(tmp_path):
    import shutil

    for name in ("_toc.yml", "_config.yml"):
        shutil.copy2(ROOT / name, tmp_path / name)
    for name in ("book", "translations", "readers"):
        shutil.copytree(ROOT / name, tmp_path / name)
    assert readers.check(["en"], tmp_path) == []
    stale = tmp_path / "readers" / "en" / "book" / "01_background.ipynb"
    stale.write_text(stale.read_text(encoding="utf-8").replace("Background", "Backdrop", 1), encoding="utf-8")
    (tmp_path / "readers" / "en" / "book" / "02_concepts.ipynb").unlink()
    chapter = tmp_path / "book" / "07_tools.ipynb"
    notebook = json.loads(chapter.read_text(encoding="utf-8"))
    code = [c for c in notebook["cells"] if c["cell_type"] == "code"][-1]
    code["source"] = cell_source(code) + "\n# changed"
    chapter.write_text(json.dumps(notebook), encoding="utf-8")
    problems = readers.check(["en"], tmp_path)
    assert "readers/en/book/01_background.ipynb: stale" in problems
    assert "readers/en/book/02_concepts.ipynb: missing" in problems
    assert any(p.startswith("book/07_tools.ipynb: its code changed") for p in problems), problems
    from mtlcode.book.readers.__main__ import main

    assert main(["--check", "--lang", "en"]) == 0  # the repository's own are current
