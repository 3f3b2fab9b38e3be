"""Open every page of the built book in headless Chromium, the way a reader would.

For each page: the maths was typeset by MathJax, every figure loaded, every internal link leads
to an existing page and anchor; a screenshot is saved in ``_build/screenshots`` for review.
"""

from __future__ import annotations

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


def wait_for(driver, script: str, timeout: float = 20.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = driver.execute_script(script)
        if value:
            return value
        time.sleep(0.25)
    return driver.execute_script(script)


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
