"""A reader notebook, rendered as JupyterLab renders it, opened in headless Chromium.

The reader notebooks (``readers/<lang>/book/``, written by ``python -m mtlcode.book.readers``) are
what Colab and ``make lab`` open. nbconvert's ``lab`` template renders their Markdown with
JupyterLab's own styles and Markdown rules; the page must show no MyST markup, the book's numbers,
numbered figure captions and solutions that stay collapsed until a reader opens one. Screenshots
(the top of the chapter, and its exercises with one solution opened) go to ``_build/screenshots``.
"""

from __future__ import annotations

import re

import pytest

from conftest import ROOT, SCREENSHOTS, wait_for

CHAPTER = "05_practice"
EXPECTED = {"en": ("Figure 5.1.", "References", "Solution"), "zh": ("图 5.1", "参考文献", "解答")}
MYST = re.compile(r"\{(glue|term|cite|numref|ref|doc|eq)[^}]*\}`|```\{|\{dropdown\}|\{admonition\}")


def export(language: str) -> str:
    """The chapter's reader notebook as JupyterLab's HTML, in _build/readers_html; its file URL."""
    from nbconvert import HTMLExporter

    html, _ = HTMLExporter(template_name="lab").from_filename(
        str(ROOT / "readers" / language / "book" / f"{CHAPTER}.ipynb"))
    out = ROOT / "_build" / "readers_html" / language / f"{CHAPTER}.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(html, encoding="utf-8")
    return out.as_uri()


@pytest.mark.parametrize("language", sorted(EXPECTED))
def test_a_reader_notebook_reads_in_jupyter(language, browser):
    figure, references, solution = EXPECTED[language]
    browser.get(export(language))
    # Read the page once it has loaded and laid out its last cell (get() may return earlier).
    text = wait_for(browser, "const cells = document.querySelectorAll('.jp-Cell');"
                    "return document.readyState === 'complete' && cells.length"
                    " && cells[cells.length - 1].offsetHeight > 0 && document.body.innerText")
    assert not MYST.search(text), f"MyST markup on the page: {MYST.search(text).group(0)!r}"
    assert figure in text, "no numbered figure caption"
    assert references in text, "no list of references"
    assert re.search(r"\b5\.2\. ", text), "the sections are not numbered as in the book"
    bold = browser.execute_script("return [...document.querySelectorAll('.jp-MarkdownOutput b')]"
                                  ".map(b => b.innerText)")
    assert any(re.fullmatch(r"[-\d.,%]+", b) for b in bold), "no glued value in bold"
    shot = SCREENSHOTS / f"readers__{language}__{CHAPTER}.png"
    browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 1000

    details = browser.execute_script("return [...document.querySelectorAll('details')].map(d => d.open)")
    assert details and not any(details), "the solutions must be collapsed until opened"
    summaries = browser.execute_script("return [...document.querySelectorAll('details > summary')]"
                                       ".map(s => s.innerText)")
    assert set(summaries) == {solution}, summaries
    browser.execute_script("const d = document.querySelector('details'); d.open = true; d.scrollIntoView();")
    opened = browser.execute_script("return document.querySelector('details').innerText")
    assert len(opened) > len(solution) + 20, "an opened solution shows its text"
    shot = SCREENSHOTS / f"readers__{language}__{CHAPTER}__solution.png"
    browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 1000
