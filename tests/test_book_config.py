"""Static checks of the book's sources: toc, chapter conventions (book/STYLE.md), citations, glue."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
TOC = yaml.safe_load((ROOT / "_toc.yml").read_text())
TOC_FILES = [TOC["root"]] + [c["file"] for part in TOC["parts"] for c in part["chapters"]]
CHAPTERS = [ROOT / f"{f}.ipynb" for f in TOC_FILES if (ROOT / f"{f}.ipynb").exists()]
BIB_KEYS = set(re.findall(r"^@\w+\{([^,]+),", (ROOT / "book" / "references.bib").read_text(), re.M))


def cells(path: Path) -> list[dict]:
    return json.loads(path.read_text())["cells"]


def source(cell: dict) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def tags(cell: dict) -> list[str]:
    return cell.get("metadata", {}).get("tags", [])


def test_every_toc_entry_exists():
    missing = [f for f in TOC_FILES if not any((ROOT / f"{f}{s}").exists() for s in (".md", ".ipynb"))]
    assert not missing, f"_toc.yml lists files that do not exist: {missing}"


def test_repository_configured_once_for_launch_buttons():
    assert CONFIG["repository"]["url"].startswith("https://github.com/")
    assert CONFIG["launch_buttons"]["colab_url"] == "https://colab.research.google.com"
    assert CONFIG["html"]["use_download_button"] is True


def test_the_launch_buttons_open_the_reader_notebooks():
    """Colab opens path_to_book/<page>.ipynb: the reader notebook of every notebook page."""
    folder = ROOT / CONFIG["repository"]["path_to_book"]
    assert folder == ROOT / "readers" / "en"
    missing = [str(path.relative_to(ROOT)) for path in CHAPTERS if not (folder / path.relative_to(ROOT)).is_file()]
    assert not missing, f"no reader notebook for {missing}: run python -m mtlcode.book.readers"


def prose_lines(markdown: str) -> list[str]:
    """The lines of a markdown cell outside fenced code blocks (where '# ' is a comment)."""
    lines, fence = [], None
    for line in markdown.splitlines():
        marker = re.match(r"^\s*(`{3,}|~{3,})", line)
        if marker and (fence is None or marker.group(1).startswith(fence)):
            fence = marker.group(1) if fence is None else None
        elif fence is None:
            lines.append(line)
    return lines


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_chapter_conventions(path):
    nb = cells(path)
    first = [line for line in source(nb[0]).splitlines() if line.strip() and not re.match(r"^\(.+\)=$", line)]
    assert nb[0]["cell_type"] == "markdown" and first[0].startswith("# "), "first cell: '# Title'"
    titles = [line for c in nb if c["cell_type"] == "markdown" for line in prose_lines(source(c))
              if line.startswith("# ")]
    assert len(titles) == 1, f"exactly one '# ' title, found {titles}"
    setup = source(nb[1])
    assert nb[1]["cell_type"] == "code" and "google.colab" in setup, "second cell: the Colab install cell"
    assert f"git+{CONFIG['repository']['url']}" in setup, "the install URL must match _config.yml's repository"
    assert sum("parameters" in tags(c) for c in nb) <= 1, "at most one `parameters` cell"
    guards = [c for c in nb if "remove-cell" in tags(c) and "claim(" in source(c)]
    assert guards, "key claims need `claim(...)` checks in cells tagged remove-cell"
    markdown = "\n".join(source(c) for c in nb if c["cell_type"] == "markdown")
    assert re.search(r"^## Exercises", markdown, re.M), "a chapter ends with an Exercises section"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_citations_resolve(path):
    # (Glue names are checked by the book build itself: an unknown name is a warning, and the
    # build runs with warnings as errors.)
    markdown = "\n".join(source(c) for c in cells(path) if c["cell_type"] == "markdown")
    cited = {k.strip() for group in re.findall(r"\{cite[pt]?\}`([^`]+)`", markdown) for k in group.split(",")}
    assert cited <= BIB_KEYS, f"citations missing from book/references.bib: {sorted(cited - BIB_KEYS)}"


CLAIM_KEY = re.compile(r"""\bclaim\(\s*["']([^"']+)["']""")


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_claims_go_through_claim_with_a_key_of_their_own(path):
    """A hidden check of the prose is a `claim` (a reader's run gets a note, not a crash), never a
    bare `assert`; its key starts with the chapter's number (a page's name) and names one claim of the chapter
    (benchmarks/claims.py tallies the seeds per key)."""
    guards = [source(c) for c in cells(path) if c["cell_type"] == "code" and "remove-cell" in tags(c)]
    bare = [line.strip() for text in guards for line in text.splitlines() if re.match(r"\s*assert\b", line)]
    assert not bare, f"{path.name}: hidden checks with a bare assert; use mtlcode.book.claim: {bare}"
    keys = [key for text in guards for key in CLAIM_KEY.findall(text)]
    prefix = path.stem[:2] if path.stem[:2].isdigit() else path.stem
    assert all(key.startswith(prefix + ".") for key in keys), keys
    repeated = sorted({key for key in keys if keys.count(key) > 1})
    assert not repeated, f"{path.name}: claim keys used twice: {repeated}"
