"""Open every page of the built book in headless Chromium, the way a reader would.

For each page: the maths was typeset by MathJax, every figure loaded, every internal link leads
to an existing page and anchor; a screenshot is saved in ``_build/screenshots`` for review. The
exercises' solutions are collapsed until a reader opens them (a second screenshot per chapter
shows its exercises).
"""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urldefrag, urlparse

import pytest
import yaml

from conftest import HTML, ROOT, SCREENSHOTS


def toc_pages() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    pages = [toc["root"]]
    for part in toc.get("parts", []):
        pages += [chapter["file"] for chapter in part["chapters"]]
    return pages


def source_has_math(page: str) -> bool:
    for suffix in (".ipynb", ".md"):
        path = ROOT / f"{page}{suffix}"
        if path.exists():
            return "$" in path.read_text()
    return False


def wait_for(driver, script: str, timeout: float = 20.0, *args):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = driver.execute_script(script, *args)
        if value:
            return value
        time.sleep(0.25)
    return driver.execute_script(script, *args)


@pytest.mark.parametrize("page", toc_pages())
def test_page_renders(page, site, browser):
    html_file = HTML / f"{page}.html"
    assert html_file.is_file(), f"{page}: {html_file} was not built"
    url = f"{site}/{page}.html"
    browser.get(url)
    assert wait_for(browser, "return document.readyState === 'complete'")
    assert "404" not in browser.title

    if source_has_math(page):
        rendered = wait_for(browser, "return document.querySelectorAll('mjx-container').length")
        raw = browser.execute_script(
            "return Array.from(document.querySelectorAll('.math')).filter("
            "e => !e.querySelector('mjx-container')).length")
        assert rendered, f"{page}: no MathJax output on a page whose source has maths"
        assert raw == 0, f"{page}: {raw} maths elements were not typeset"

    broken = wait_for(browser, """
        const imgs = Array.from(document.querySelectorAll('main img'));
        if (!imgs.every(i => i.complete)) return null;
        return imgs.filter(i => i.naturalWidth === 0).map(i => i.src).concat(['done']);""")
    assert broken == ["done"], f"{page}: figures that did not load: {broken}"

    links = browser.execute_script(
        "return Array.from(document.querySelectorAll('a[href]')).map(a => a.href)")
    for link in sorted(set(links)):
        target, anchor = urldefrag(link)
        if urlparse(target).netloc != urlparse(site).netloc:
            continue
        try:
            with urllib.request.urlopen(target, timeout=10) as response:
                body = response.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as error:
            pytest.fail(f"{page}: broken internal link {link} ({error.code})")
        if anchor and target.endswith(".html"):
            assert f'id="{anchor}"' in body, f"{page}: link {link} points to a missing anchor"

    shot = SCREENSHOTS / (page.replace("/", "__") + ".png")
    browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 1000


def test_every_chapter_has_a_colab_launch_button_and_download(site, browser):
    for page in toc_pages():
        path = ROOT / f"{page}.ipynb"
        if not path.exists():
            continue
        browser.get(f"{site}/{page}.html")
        html = browser.page_source
        assert "colab.research.google.com" in html, f"{page}: no Colab launch button"
        assert Path(page).name + ".ipynb" in html, f"{page}: no .ipynb download link"


# Solutions: "Solution" dropdowns (sphinx-design) and code cells tagged `solution` (hidden inputs).
FIND_SOLUTIONS = """
const dropdowns = Array.from(document.querySelectorAll('details.sd-dropdown')).filter(
    d => d.querySelector('summary').textContent.trim().startsWith('Solution'));
return dropdowns.concat(Array.from(document.querySelectorAll('.cell.tag_solution details')));"""
SHOWN = ("return Array.from(arguments[0].children).filter(c => c.tagName !== 'SUMMARY')"
         ".some(c => c.checkVisibility());")


def solutions_in_source(page: str) -> int:
    """How many solutions the page's notebook holds: dropdowns titled Solution and solution cells."""
    path = ROOT / f"{page}.ipynb"
    if not path.exists():
        return 0
    count = 0
    for cell in json.loads(path.read_text())["cells"]:
        text = "".join(cell["source"])
        if cell["cell_type"] == "markdown":
            count += len(re.findall(r"\{dropdown\}[ \t]*Solution", text))
        elif "solution" in cell.get("metadata", {}).get("tags", []):
            count += 1
    return count


@pytest.mark.parametrize("page", [p for p in toc_pages() if solutions_in_source(p)])
def test_solutions_are_hidden_until_opened(page, site, browser):
    browser.get(f"{site}/{page}.html")
    assert wait_for(browser, "return document.readyState === 'complete'")
    solutions = browser.execute_script(FIND_SOLUTIONS)
    assert len(solutions) == solutions_in_source(page), f"{page}: not every solution is in a collapsed element"
    for i, element in enumerate(solutions):
        assert not browser.execute_script("return arguments[0].open", element), f"{page}: solution {i} is open"
        assert not browser.execute_script(SHOWN, element), f"{page}: solution {i} is displayed"
    # What a reader sees at the exercises, for review: every solution collapsed.
    browser.execute_script("(document.getElementById('exercises') || document.body).scrollIntoView()")
    browser.save_screenshot(str(SCREENSHOTS / (page.replace("/", "__") + "__exercises.png")))
    # A click opens one.
    last = solutions[-1]
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", last)
    last.find_element("tag name", "summary").click()
    assert wait_for(browser, "return arguments[0].open", 5, last) is True, f"{page}: a click does not open it"
    assert browser.execute_script(SHOWN, last), f"{page}: the opened solution is not displayed"


def _notebook_rules():
    # The notebook-level rules and the chapters not converted yet (tests/test_notebook_style.py).
    import importlib.util

    spec = importlib.util.spec_from_file_location("notebook_style", ROOT / "tests" / "test_notebook_style.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.NOT_YET


NOT_YET = _notebook_rules()

TABLES_AS_TEXT = """
return Array.from(document.querySelectorAll('main p')).map(p => p.textContent.trim())
    .filter(t => t.startsWith('|')).map(t => t.slice(0, 80));"""

FIGURES = """
return Array.from(document.querySelectorAll('main .cell_output img, main figure img')).map(img => {
    const figure = img.closest('figure');
    const caption = figure && figure.querySelector('figcaption');
    return {src: img.src.split('/').pop(), alt: img.alt || '',
            caption: caption ? caption.textContent.trim().slice(0, 80) : ''};
});"""

CLIPPED_CODE = """
return Array.from(document.querySelectorAll('main .cell_input pre'))
    .filter(pre => pre.scrollWidth > pre.clientWidth + 2)
    .map(pre => pre.textContent.split('\\n').reduce((a, b) => a.length > b.length ? a : b).slice(0, 80));"""


@pytest.mark.parametrize("page", toc_pages())
def test_what_a_reader_sees(page, site, browser):
    """Tables render as tables; figures are numbered, captioned, described; no code is cut off."""
    browser.get(f"{site}/{page}.html")
    assert wait_for(browser, "return document.readyState === 'complete'")
    as_text = browser.execute_script(TABLES_AS_TEXT)
    assert not as_text, f"{page}: a table rendered as a paragraph of pipes: {as_text}"
    name = Path(page).name
    if (ROOT / f"{page}.ipynb").exists() and name not in NOT_YET["figures"]:
        for figure in browser.execute_script(FIGURES):
            assert re.match(r"Fig\. \d+", figure["caption"]), f"{page}: figure {figure['src']} has no numbered caption"
            alt = figure["alt"]
            assert len(alt) >= 40 and not re.search(r"\.(png|svg|jpg)$", alt), \
                f"{page}: figure {figure['src']} has no alt text that describes it ({alt!r})"
    if (ROOT / f"{page}.ipynb").exists() and name not in NOT_YET["lines"]:
        clipped = browser.execute_script(CLIPPED_CODE)
        assert not clipped, f"{page}: code lines cut off at the column's edge: {clipped}"
