"""The translated editions (mtlcode.book.translation): complete, current, and holding the English code
(apart from the comments of the code the book shows, which are translated).

The tests on a small project in a temporary folder show that each kind of problem is caught and
named; the tests on the book itself are the guard: an English edit without its translation fails
here with a message that names the page and the cell.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from mtlcode.book import translation as tr
from mtlcode.book.language_switch import other_edition
from mtlcode.book.notebooks import cell_source
from mtlcode.book.translation.comments import WIDTH, find_comments, shown, translate_comments, without_comments
from mtlcode.course.editions import write_student_edition

ROOT = Path(__file__).resolve().parents[1]
ZH = tr.LANGUAGES["zh"]


# --- a small project ---------------------------------------------------------------------------

def _notebook(cells: list[dict]) -> dict:
    return {"nbformat": 4, "nbformat_minor": 5, "metadata": {"kernelspec": {"name": "python3"}}, "cells": cells}


def _markdown(cell_id: str, text: str) -> dict:
    return {"cell_type": "markdown", "id": cell_id, "metadata": {}, "source": text}


def _code(cell_id: str, text: str, caption: str | None = None) -> dict:
    metadata = {"mystnb": {"figure": {"name": f"fig-{cell_id}", "caption": caption},
                           "image": {"alt": f"alt text of {cell_id}"}}} if caption else {}
    return {"cell_type": "code", "id": cell_id, "metadata": metadata, "source": text, "outputs": [],
            "execution_count": None}


PAGE_MD = """# A page

A paragraph with {glue:text}`accuracy:.1f` and a link to {numref}`fig-c2`.

```python
x = 1

y = 2
```

```{glossary}
Support set (支持集)
  The labelled examples of a task.

Query set (查询集)
  The examples that score the adapted model.
```
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "book").mkdir()
    (tmp_path / "_static").mkdir()
    (tmp_path / "book" / "references.bib").write_text("")
    (tmp_path / "_config.yml").write_text("title: A book\nrepository: {url: x, path_to_book: ''}\n"
                                          "execute: {stderr_output: remove-warn}\nsphinx: {config: {}}\n")
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: book/page\nparts:\n"
                                       "  - caption: Chapters\n    chapters:\n      - file: book/01_a\n")
    (tmp_path / "book" / "page.md").write_text(PAGE_MD)
    notebook = _notebook([_markdown("c1", "# Chapter\n\nWe glue {glue:text}`loss:.2f` here."),
                          _code("c2", "print('hi')", caption="What the figure shows."),
                          _markdown("c3", "## Summary\n\n- one point")])
    (tmp_path / "book" / "01_a.ipynb").write_text(json.dumps(notebook))
    return tmp_path


ZH_TEXT = {"# Chapter\n\nWe glue {glue:text}`loss:.2f` here.": "# 一章\n\n这里粘贴 {glue:text}`loss:.2f`。",
           "What the figure shows.": "图中所示。", "alt text of c2": "c2 的替代文字",
           "## Summary\n\n- one point": "## 小结\n\n- 一点"}


def _translate_everything(project: Path) -> None:
    """Write a translation of every segment and string of the small project."""
    for page in tr.book_pages(project):
        path = tr.translation_file(ZH, page, project)
        path.parent.mkdir(parents=True, exist_ok=True)
        entries = []
        for s in tr.segments(page, project):
            text = ZH_TEXT.get(s.text) or ("中文：" + s.text.replace("A paragraph", "一段"))
            entries.append(f"<!-- {s.key} sha={s.sha} -->\n{text}\n")
        path.write_text("\n".join(entries), encoding="utf-8")
    strings = [f"<!-- {s} sha={tr.fingerprint(s)} -->\n中文{s}\n" for s in tr.strings(project)]
    (project / "translations" / "zh" / "strings.md").write_text("\n".join(strings), encoding="utf-8")


def _edit_cell(project: Path, cell_id: str, text: str) -> None:
    path = project / "book" / "01_a.ipynb"
    notebook = json.loads(path.read_text())
    next(c for c in notebook["cells"] if c["id"] == cell_id)["source"] = text
    path.write_text(json.dumps(notebook))


def test_markdown_pages_cut_into_blocks_and_put_back_together():
    for page in [p for p in tr.book_pages(ROOT) if p.endswith(".md")]:
        text = (ROOT / page).read_text(encoding="utf-8")
        chunks = tr.markdown_chunks(text)
        assert "".join(c for c, _ in chunks) == text, page
        identity = {s.key: s.text for s in tr.segments(page, ROOT)}
        assert tr.translate_markdown(text, identity) == text, page


def test_code_blocks_are_shared_and_glossary_entries_translated_one_by_one():
    chunks = tr.markdown_chunks(PAGE_MD)
    translatable = [c for c, t in chunks if t]
    assert "```python\nx = 1\n\ny = 2\n```\n" in [c for c, t in chunks if not t]
    assert translatable[-2:] == ["Support set (支持集)\n  The labelled examples of a task.\n",
                                 "Query set (查询集)\n  The examples that score the adapted model.\n"]


def test_a_complete_translation_passes_and_builds_the_sources(project, tmp_path):
    _translate_everything(project)
    assert tr.check(ZH, project) == []
    executed = tmp_path / "run"
    (executed / "book").mkdir(parents=True)
    run = json.loads((project / "book" / "01_a.ipynb").read_text())
    run["cells"][1]["outputs"] = [{"output_type": "stream", "name": "stdout", "text": "hi\n"}]
    (executed / "book" / "01_a.ipynb").write_text(json.dumps(run))
    prefix = "application/papermill.record/"  # what myst-nb stores in <page>.glue.json, prefix stripped
    glued = {"loss": {"output_type": "display_data", "data": {"text/plain": "0.5"},
                      "metadata": {"scrapbook": {"name": "loss", "mime_prefix": prefix}}}}
    (executed / "book" / "01_a.glue.json").write_text(json.dumps(glued))
    out = tr.write_source(ZH, tmp_path / "zh", project, executed)
    notebook = json.loads((out / "book" / "01_a.ipynb").read_text())
    assert cell_source(notebook["cells"][0]).startswith("# 一章")
    assert notebook["cells"][1]["source"] == "print('hi')"
    assert notebook["cells"][1]["metadata"]["mystnb"]["figure"]["caption"] == "图中所示。"
    glued = notebook["cells"][1]["outputs"][0]
    assert glued["metadata"]["scrapbook"]["name"] == "loss"
    assert glued["data"] == {"application/papermill.record/text/plain": "0.5"}  # as myst-nb reads glue
    assert notebook["cells"][1]["outputs"][1]["text"] == "hi\n"
    page = (out / "book" / "page.md").read_text()
    assert "中文：# A page" in page and "```python\nx = 1\n\ny = 2\n```" in page
    config = yaml.safe_load((out / "_config.yml").read_text())
    assert config["repository"]["path_to_book"] == "readers/zh"
    assert config["execute"] == {"stderr_output": "remove-warn", "execute_notebooks": "off"}
    assert "中文Chapters" in (out / "_toc.yml").read_text()


def test_outputs_of_other_code_are_refused(project, tmp_path):
    _translate_everything(project)
    executed = tmp_path / "run"
    (executed / "book").mkdir(parents=True)
    run = json.loads((project / "book" / "01_a.ipynb").read_text())
    run["cells"][1]["source"] = "print('an older version')"
    (executed / "book" / "01_a.ipynb").write_text(json.dumps(run))
    with pytest.raises(tr.TranslationError, match="build the English book first"):
        tr.write_source(ZH, tmp_path / "zh", project, executed)


def test_an_english_edit_makes_its_translation_stale_naming_the_cell(project):
    _translate_everything(project)
    _edit_cell(project, "c3", "## Summary\n\n- one point\n- and a second one")
    problems = tr.check(ZH, project)
    assert len(problems) == 1 and "book/01_a.ipynb, markdown cell c3" in problems[0]
    assert "changed since it was translated" in problems[0]
    with pytest.raises(tr.TranslationError, match="c3"):
        tr.write_notebooks(ZH, project)


def test_a_new_cell_without_translation_is_missing(project):
    _translate_everything(project)
    path = project / "book" / "01_a.ipynb"
    notebook = json.loads(path.read_text())
    notebook["cells"].append(_markdown("c9", "## Exercises"))
    path.write_text(json.dumps(notebook))
    problems = tr.check(ZH, project)
    assert len(problems) == 1 and "markdown cell c9" in problems[0] and "no translation" in problems[0]
    assert tr.append_missing(ZH, "book/01_a.ipynb", project) == 1
    assert "c9" in tr.read_translations(tr.translation_file(ZH, "book/01_a.ipynb", project))


@pytest.mark.parametrize("broken, complaint", [
    ("# 一章\n\n这里粘贴 {glue:text}`los:.2f`。", "glue names"),  # a misspelt glue name
    ("# Chapter\n\nWe glue {glue:text}`loss:.2f` here.", "not translated"),  # English copied
])
def test_a_broken_translation_is_named(project, broken, complaint):
    _translate_everything(project)
    path = tr.translation_file(ZH, "book/01_a.ipynb", project)
    text = path.read_text(encoding="utf-8").replace("# 一章\n\n这里粘贴 {glue:text}`loss:.2f`。", broken)
    path.write_text(text, encoding="utf-8")
    problems = tr.check(ZH, project)
    assert len(problems) == 1 and "markdown cell c1" in problems[0] and complaint in problems[0]


def test_a_translation_of_a_deleted_cell_is_reported(project):
    _translate_everything(project)
    path = tr.translation_file(ZH, "book/01_a.ipynb", project)
    path.write_text(path.read_text(encoding="utf-8") + "\n<!-- c7 sha=0123456789ab -->\n旧的\n", encoding="utf-8")
    problems = tr.check(ZH, project)
    assert len(problems) == 1 and "'c7' translates no segment" in problems[0]


def test_the_language_switch_leads_to_the_same_page():
    assert other_edition("en", "book/05_practice") == ("../zh/book/05_practice.html", "zh")
    assert other_edition("zh", "book/05_practice") == ("../../book/05_practice.html", "en")
    assert other_edition("en", "genindex") == ("zh/genindex.html", "zh")
    with pytest.raises(ValueError, match="book_language"):
        other_edition("fr", "book/intro")


# --- the book itself ---------------------------------------------------------------------------

def test_the_chinese_edition_is_complete_and_current():
    problems = tr.check(ZH, ROOT)
    assert not problems, (f"{len(problems)} translation problem(s); `python -m mtlcode.book.translation check zh` "
                          "lists them:\n" + "\n".join(problems[:30]))


def test_the_committed_chinese_notebooks_are_the_generated_ones():
    expected = tr.translated_notebooks(ZH, ROOT)
    committed = {p for p in (ROOT / "zh").rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts}
    assert committed == set(expected), "zh/ holds other notebooks than the book's: " \
        "run `python -m mtlcode.book.translation notebooks zh`"
    stale = [p.relative_to(ROOT) for p, text in expected.items() if p.read_text(encoding="utf-8") != text]
    assert not stale, f"{stale} differ from their translation: run `python -m mtlcode.book.translation notebooks zh`"


def test_the_chinese_notebooks_hold_the_english_code_with_translated_comments():
    translated = 0
    for english in sorted((ROOT / "book").glob("*.ipynb")):
        chinese = ROOT / "zh" / "book" / english.name
        cells = [c for c in json.loads(english.read_text())["cells"] if c["cell_type"] == "code"]
        zh_cells = [c for c in json.loads(chinese.read_text())["cells"] if c["cell_type"] == "code"]
        assert [(c["id"], without_comments(cell_source(c))) for c in zh_cells] == \
            [(c["id"], without_comments(cell_source(c))) for c in cells], \
            f"{chinese.relative_to(ROOT)} has other code than {english.relative_to(ROOT)} (comments apart)"
        for cell, zh_cell in zip(cells, zh_cells):
            en, zh = cell_source(cell), cell_source(zh_cell)
            translated += en != zh
            if shown(cell):
                left = [c.text for c in find_comments(zh) if not re.search(r"[\u3400-\u9fff]", c.text)]
                assert not left, f"{chinese.relative_to(ROOT)}, cell {cell['id']}: English comments {left}"
            else:
                assert zh == en, f"{chinese.relative_to(ROOT)}, cell {cell['id']}: a cell the book hides changed"
            wide = [line for line in zh.splitlines() if line.lstrip().startswith("# ") and not en.count(line)
                    and _columns(line) > WIDTH]
            assert not wide, f"{chinese.relative_to(ROOT)}, cell {cell['id']}: comment lines over {WIDTH} columns"
    assert translated > 100


def test_the_chinese_student_edition(tmp_path):
    written = write_student_edition(tmp_path, language="zh")
    assert len(written) == len(list((ROOT / "book").glob("[0-9][0-9]_*.ipynb")))
    text = "".join(p.read_text(encoding="utf-8") for p in written)
    assert "{dropdown} 解答" not in text and "NotImplementedError" in text
    assert "学生版" in (tmp_path / "README.md").read_text(encoding="utf-8")


def test_a_block_inserted_into_a_page_leaves_the_translations_after_it_in_place(project):
    _translate_everything(project)
    page = project / "book" / "page.md"
    page.write_text(page.read_text().replace("# A page\n", "# A page\n\nA new first paragraph.\n"))
    problems = tr.check(ZH, project)
    assert len(problems) == 1 and "block 1 ('A new first paragraph.')" in problems[0], problems
    assert tr.append_missing(ZH, "book/page.md", project) == 1
    entries = tr.read_translations(tr.translation_file(ZH, "book/page.md", project))
    assert list(entries)[:3] == ["b0", "b1", "b2"] and entries["b1"].text == "A new first paragraph."
    assert entries["b2"].text.startswith("中文：一段")  # renumbered, still translated


# --- nothing a translator or a command does destroys their work ---------------------------------

def _built_english(project: Path, tmp_path: Path) -> Path:
    executed = tmp_path / "run"
    (executed / "book").mkdir(parents=True, exist_ok=True)
    (executed / "book" / "01_a.ipynb").write_text((project / "book" / "01_a.ipynb").read_text())
    return executed


def test_source_refuses_a_folder_it_did_not_write_and_rewrites_its_own(project, tmp_path):
    _translate_everything(project)
    executed = _built_english(project, tmp_path)
    precious = tmp_path / "translations_of_mine"
    precious.mkdir()
    (precious / "keep.md").write_text("my work")
    with pytest.raises(tr.TranslationError, match="did not write"):
        tr.write_source(ZH, precious, project, executed)
    assert (precious / "keep.md").read_text() == "my work"
    out = tr.write_source(ZH, tmp_path / "zh", project, executed)
    (out / "leftover.txt").write_text("from an earlier build")
    tr.write_source(ZH, out, project, executed)  # its own folder: rebuilt from scratch
    assert not (out / "leftover.txt").exists() and (out / "book" / "01_a.ipynb").exists()
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    with pytest.raises(tr.TranslationError, match="is a file"):
        tr.write_source(ZH, a_file, project, executed)


@pytest.mark.parametrize("damage", ["<!-- c1 sha=12 -->", "<!- c1 sha={sha} -->", "c1 sha={sha} -->"])
def test_a_damaged_first_marker_is_named_and_todo_keeps_the_translation(project, damage):
    _translate_everything(project)
    path = tr.translation_file(ZH, "book/01_a.ipynb", project)
    text = path.read_text(encoding="utf-8")
    first = text.splitlines()[0]
    sha = first.split("sha=")[1].split()[0]
    damaged = text.replace(first, damage.format(sha=sha), 1)
    path.write_text(damaged, encoding="utf-8")
    with pytest.raises(tr.TranslationError, match="marker"):
        tr.check(ZH, project)
    with pytest.raises(tr.TranslationError, match="nothing was changed"):
        tr.append_missing(ZH, "book/01_a.ipynb", project)
    assert path.read_text(encoding="utf-8") == damaged  # the Chinese is still there


def test_a_damaged_caption_marker_is_named_not_shipped(project):
    _translate_everything(project)
    path = tr.translation_file(ZH, "book/01_a.ipynb", project)
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace("<!-- c2.caption sha=", "<!-- c2.caption sha=x"), encoding="utf-8")
    with pytest.raises(tr.TranslationError, match="line .*not a valid marker"):
        tr.check(ZH, project)


def test_a_byte_order_mark_is_ignored(project):
    _translate_everything(project)
    path = tr.translation_file(ZH, "book/01_a.ipynb", project)
    path.write_text("\ufeff" + path.read_text(encoding="utf-8"), encoding="utf-8")
    assert tr.check(ZH, project) == []


def test_notebooks_deletes_only_the_stale_notebooks_it_generated(project):
    _translate_everything(project)
    written = tr.write_notebooks(ZH, project)
    assert [p.relative_to(project).as_posix() for p in written] == ["zh/book/01_a.ipynb"]
    assert json.loads(written[0].read_text())["metadata"][tr.GENERATED_KEY]["from"] == "book/01_a.ipynb"
    draft = project / "zh" / "drafts" / "my_work.ipynb"
    draft.parent.mkdir()
    draft.write_text(json.dumps(_notebook([_markdown("d", "my draft")])))
    gone = project / "zh" / "book" / "00_removed.ipynb"  # generated earlier, its English page since removed
    gone.write_text(json.dumps({**_notebook([]), "metadata": {tr.GENERATED_KEY: {"from": "book/00_removed.ipynb"}}}))
    tr.write_notebooks(ZH, project)
    assert draft.exists() and not gone.exists()


# --- the comments of the code ------------------------------------------------------------------

CODE = """# Set up: install the package on Colab (this does nothing anywhere else).
import sys
if "google.colab" in sys.modules:
    %pip install --quiet "mtlcode @ git+https://example.org/x"  # a comment on a magic line
label = "# not a comment"  # an inline comment
x = 1  # noqa: E501
# A block of two lines that the translator reads
# as one sentence.
#
#@title not a comment to translate
y = [1, 2]  # [n, K]
"""
CODE_ZH = {"Set up: install the package on Colab (this does nothing anywhere else).": "准备：在 Colab 上安装这个包。",
           "an inline comment": "行内注释",
           "A block of two lines that the translator reads as one sentence.": "译者当作一句话来读的两行注释，" * 4}


def _comment_project(project: Path) -> Path:
    """The small project with commented code in a shown cell and in a cell the book removes."""
    path = project / "book" / "01_a.ipynb"
    notebook = json.loads(path.read_text())
    notebook["cells"][1]["source"] = CODE
    hidden = _code("c4", "z = 2  # a helper the book never shows")
    hidden["metadata"] = {"tags": ["remove-cell"]}
    notebook["cells"].append(hidden)
    path.write_text(json.dumps(notebook))
    _translate_everything(project)
    return tr.comment_file(ZH, "book/01_a.ipynb", project)


def _translate_comments(path: Path, translations: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"<!-- {en} sha={tr.fingerprint(en)} -->\n{zh}\n\n" for en, zh in translations.items()),
                    encoding="utf-8")


def _columns(line: str) -> int:
    return len(line) + sum(ord(ch) > 0x2E80 for ch in line)


def test_comments_are_found_by_tokenize_around_magics_and_directives():
    assert [(c.first, c.last, c.inline, c.text) for c in find_comments(CODE)] == [
        (0, 0, False, "Set up: install the package on Colab (this does nothing anywhere else)."),
        (4, 4, True, "an inline comment"),
        (6, 7, False, "A block of two lines that the translator reads as one sentence.")]
    assert find_comments("def f(:\n    # broken code keeps its comments\n") == []  # does not tokenize
    assert find_comments("%%bash\n# a shell comment, not Python's\nls\n") == []
    assert without_comments("%%bash\nls  # kept: not Python\n") == "%%bash\nls  # kept: not Python\n"


def test_translated_comments_keep_the_code_byte_for_byte():
    zh = translate_comments(CODE, CODE_ZH)
    assert zh != CODE and without_comments(zh) == without_comments(CODE)
    kept = [line for line in CODE.splitlines() if not line.startswith(("# ", "label"))]
    assert [line for line in zh.splitlines() if not line.startswith(("# ", "label"))] == kept  # magics too
    assert 'label = "# not a comment"  # 行内注释' in zh and "# 准备：在 Colab 上安装这个包。\n" in zh
    block = [line for line in zh.splitlines() if "译者" in line or "注释，" in line]
    assert len(block) == 2 and all(_columns(line) <= WIDTH for line in block), block
    assert without_comments(zh.replace("y = [1, 2]", "y = [1,2]")) != without_comments(CODE)


def test_the_comments_of_shown_code_are_translated_in_the_notebooks(project):
    path = _comment_project(project)
    problems = tr.check(ZH, project)
    assert len(problems) == 3 and all("no translation in translations/zh/comments/book/01_a.md" in p
                                      for p in problems), problems
    assert tr.append_missing_comments(ZH, "book/01_a.ipynb", project) == 3
    problems = tr.check(ZH, project)  # todo wrote the English text: not yet translated
    assert len(problems) == 3 and all("is not translated" in p for p in problems), problems
    _translate_comments(path, CODE_ZH)
    assert tr.check(ZH, project) == []
    notebook = json.loads(tr.write_notebooks(ZH, project)[0].read_text())
    zh = cell_source(notebook["cells"][1])
    assert "# 准备：在 Colab 上安装这个包。" in zh and "%pip install" in zh
    assert without_comments(zh) == without_comments(CODE)
    assert cell_source(notebook["cells"][3]) == "z = 2  # a helper the book never shows"


def test_a_comment_translation_that_drops_a_code_name_is_named(project):
    path = _comment_project(project)
    source = project / "book" / "01_a.ipynb"
    source.write_text(source.read_text().replace("an inline comment", "an inline comment on `label`"))
    _translate_comments(path, {key: text for key, text in CODE_ZH.items() if key != "an inline comment"}
                        | {"an inline comment on `label`": "关于标签的行内注释"})
    problems = tr.check(ZH, project)
    assert len(problems) == 1 and "lost the code names ['`label`']" in problems[0], problems


def test_a_changed_english_comment_is_reported_by_check(project):
    path = _comment_project(project)
    _translate_comments(path, CODE_ZH)
    source = project / "book" / "01_a.ipynb"
    source.write_text(source.read_text().replace("an inline comment", "an inline comment, reworded"))
    problems = tr.check(ZH, project)
    assert len(problems) == 2, problems
    assert "the comment 'an inline comment, reworded' in code cell c2: no translation" in problems[0]
    assert "todo zh book/01_a.ipynb" in problems[0]
    assert "'an inline comment' is not in the code of book/01_a.ipynb any more" in problems[1]
    with pytest.raises(tr.TranslationError, match="reworded"):
        tr.write_notebooks(ZH, project)


def test_outputs_are_taken_for_code_that_differs_only_in_comments(project, tmp_path):
    _translate_comments(_comment_project(project), CODE_ZH)
    executed = tmp_path / "run"
    (executed / "book").mkdir(parents=True)
    run = json.loads((project / "book" / "01_a.ipynb").read_text())
    run["cells"][1]["outputs"] = [{"output_type": "stream", "name": "stdout", "text": "hi\n"}]
    (executed / "book" / "01_a.ipynb").write_text(json.dumps(run))
    out = tr.write_source(ZH, tmp_path / "zh", project, executed)
    cell = json.loads((out / "book" / "01_a.ipynb").read_text())["cells"][1]
    assert "# 行内注释" in cell_source(cell) and cell["outputs"][0]["text"] == "hi\n"
    run["cells"][1]["source"] = CODE.replace("y = [1, 2]", "y = [1,2]")  # outside the comments
    (executed / "book" / "01_a.ipynb").write_text(json.dumps(run))
    with pytest.raises(tr.TranslationError, match="build the English book first"):
        tr.write_source(ZH, tmp_path / "zh2", project, executed)


@pytest.mark.parametrize("page", ["../../../../tmp/x.md", "book/99_nothing.ipynb", "/etc/passwd"])
def test_todo_and_check_take_only_the_books_pages(page, capsys):
    assert tr.main(["todo", "zh", page]) == 1
    assert "not pages of the book" in capsys.readouterr().err
    assert tr.main(["check", "zh", page]) == 1


@pytest.mark.slow
def test_the_chinese_instructor_page_runs_from_a_clone():
    """It reads its sibling chapters, which are the Chinese ones there ("## 练习", not "## Exercises")."""
    import nbformat
    from nbclient import NotebookClient

    folder = ROOT / "zh" / "book"
    notebook = nbformat.read(folder / "instructor.ipynb", as_version=4)
    NotebookClient(notebook, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(folder)}}).execute()


def test_no_stray_space_around_a_chinese_term():
    """Chinese sets no space between characters: "写成{term}`闭式解 <...>`", not "写成 {term}`闭式解 <...>`"."""
    cjk = r"[\u3400-\u9fff\u3000-\u303f\uff00-\uffef]"
    before = re.compile(rf"{cjk} +\{{term\}}`[\u3400-\u9fff]")
    after = re.compile(rf"\{{term\}}`[^`<]*?[\u3400-\u9fff]\s*(?:<[^`>]*>)?` +{cjk}")
    stray = [f"{path.name}: {match.group(0)[:40]}" for path in sorted((ROOT / "translations" / "zh").rglob("*.md"))
             for pattern in (before, after) for match in pattern.finditer(path.read_text(encoding="utf-8"))]
    assert not stray, stray[:10]


def test_words_in_chinese_formulas_are_chinese():
    """\\text{...} in a formula is prose: Chinese in the Chinese edition, except names such as MAML."""
    names = {"MAML", "lr"}
    english = [f"{path.name}: {match.group(0)}" for path in sorted((ROOT / "translations" / "zh").rglob("*.md"))
               for match in re.finditer(r"\\text\{([^}]*)\}", path.read_text(encoding="utf-8"))
               if re.search(r"[A-Za-z]{2,}", match.group(1)) and match.group(1).strip() not in names]
    assert not english, english


def test_the_sources_have_the_english_runs_outputs_translated_through_the_catalogue(project, tmp_path):
    from mtlcode.book.translation import outputs

    _translate_everything(project)
    catalogue = outputs.catalogue_path("zh", project)
    catalogue.write_text('# covered: book/01_a.ipynb\nmsgid ""\nmsgstr ""\n\n#: book/01_a.ipynb\nmsgid "hi"\n'
                         'msgstr "你好"\n\n#: book/01_a.ipynb\nmsgid "train loss"\nmsgstr "训练损失"\n',
                         encoding="utf-8")
    executed = tmp_path / "run"
    (executed / "book").mkdir(parents=True)
    run = json.loads((project / "book" / "01_a.ipynb").read_text())
    figure = {"output_type": "display_data", "data": {"image/png": "RU4=", "text/plain": "<Figure>"},
              "metadata": {"image/png": {"width": 500}, outputs.KEY: {"texts": ["train loss"], "png": {"zh": "Wkg="}}}}
    run["cells"][1]["outputs"] = [{"output_type": "stream", "name": "stdout", "text": "hi\n"}, figure]
    (executed / "book" / "01_a.ipynb").write_text(json.dumps(run))
    out = tr.write_source(ZH, tmp_path / "zh", project, executed)
    cell = json.loads((out / "book" / "01_a.ipynb").read_text())["cells"][1]
    assert cell["outputs"][0]["text"] == "你好\n"
    assert cell["outputs"][1]["data"] == {"image/png": "Wkg=", "text/plain": "<Figure>"}
    assert cell["outputs"][1]["metadata"] == {"image/png": {"width": 500}}
    # a covered page's text without a translation stops the build, naming it
    catalogue.write_text(catalogue.read_text(encoding="utf-8").replace('msgstr "你好"', 'msgstr ""'), encoding="utf-8")
    with pytest.raises(tr.TranslationError, match="'hi' has no translation"):
        tr.write_source(ZH, tmp_path / "zh", project, executed)
