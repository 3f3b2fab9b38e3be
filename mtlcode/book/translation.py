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

Code is never translated: the generator copies every code cell from the English notebook, so the
translated notebooks (``zh/book/*.ipynb``, committed for Colab and Jupyter) hold the same code,
and the translated book reuses the English build's executed outputs instead of running again.

    python -m mtlcode.book.translation check zh          # what is missing, stale or broken
    python -m mtlcode.book.translation todo zh PAGE      # append the missing segments (English text) to PAGE's file
    python -m mtlcode.book.translation notebooks zh      # write zh/book/*.ipynb
    python -m mtlcode.book.translation source zh OUT     # the translated book's sources, with outputs, in OUT
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mtlcode.book.notebooks import cell_source, notebook_text, read_notebook

__all__ = ["LANGUAGES", "Language", "Segment", "TranslationError", "book_pages", "check", "fingerprint",
           "read_translations", "segments", "translate_markdown", "translate_notebook",
           "write_notebooks", "write_source"]

ROOT = Path(__file__).resolve().parents[2]


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
_MARKER = re.compile(r"^<!-- (?P<key>.+?) sha=(?P<sha>[0-9a-f]{12}) -->[ \t]*$", re.M)
_CJK = re.compile(r"[\u3400-\u9fff]")


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


@dataclass(frozen=True)
class Entry:
    sha: str
    text: str


# --- the English side ------------------------------------------------------------------------


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


# --- the translations ------------------------------------------------------------------------


def translation_file(language: Language, page: str, root: Path = ROOT) -> Path:
    return root / "translations" / language.code / Path(page).with_suffix(".md")


def read_translations(path: Path) -> dict[str, Entry]:
    """The entries of one translation file, by key ({} when the file does not exist).

    Refuses a file it cannot read whole (raises :class:`TranslationError` naming the line): text
    before the first marker, or a line that starts like a marker but is not one (a damaged
    marker would otherwise fold its translation into the previous one, or hide it, and ``todo``
    would then replace the translator's work with English). A UTF-8 byte-order mark is ignored.
    """
    if not path.exists():
        return {}
    text = path.read_text(encoding="utf-8").removeprefix("\ufeff")
    markers = list(_MARKER.finditer(text))
    _check_markers(path, text, markers)
    entries: dict[str, Entry] = {}
    for marker, following in zip(markers, markers[1:] + [None]):
        end = following.start() if following else len(text)
        key = marker.group("key")
        if key in entries:
            raise TranslationError(f"{path}: the segment {key!r} is translated twice")
        entries[key] = Entry(marker.group("sha"), text[marker.end():end].strip("\n"))
    return entries


def _check_markers(path: Path, text: str, markers: list[re.Match[str]]) -> None:
    first = markers[0].start() if markers else len(text)
    # A header comment may come first (strings.md has one); anything else there is damage.
    before = re.sub(r"<!--(?:(?!sha=).)*?-->", "", text[:first], flags=re.S)
    if before.strip():
        line = before.strip().splitlines()[0]
        raise TranslationError(f"{path}: text before the first marker ({line[:60]!r}); is the first marker damaged? "
                               "Each translation starts with a line `<!-- KEY sha=<12 hex digits> -->`. Repair the "
                               "file by hand; nothing was changed")
    marker_starts = {m.start() for m in markers}
    offset = 0
    for number, line in enumerate(text.splitlines(keepends=True), 1):
        if line.lstrip().startswith("<!--") and "sha=" in line and offset not in marker_starts:
            raise TranslationError(f"{path}, line {number}: {line.strip()[:80]!r} is not a valid marker (expected "
                                   "`<!-- KEY sha=<12 hex digits> -->` alone on its line). Repair it by hand; "
                                   "nothing was changed")
        offset += len(line)


def _entry_text(segment: Segment) -> str:
    return f"<!-- {segment.key} sha={segment.sha} -->\n{segment.text.strip(chr(10))}\n\n"


# Names a translation must keep: glue names, labels, cross-reference targets, citations.
_GLUE = re.compile(r"\{glue(?::\w+)?\}`([^`]+?)(?::[^`:]*)?`")
_LABEL = re.compile(r"^\(([^)\s]+)\)=[ \t]*$", re.M)
_REFERENCE = re.compile(r"\{(?:numref|ref|eq|doc)\}`(?:[^`<]*<)?([^`<>]+)>?`")
_CITE = re.compile(r"\{cite(?::\w+)?\}`([^`]+)`")
_TERM = re.compile(r"\{term\}`(?:[^`<]*<)?([^`<>]+)>?`")
_NAME = re.compile(r"^[ \t]*:name:[ \t]*(\S+)", re.M)
_NO_PROSE = re.compile(r"\$\$.*?\$\$|\$[^$]*\$|`[^`]*`|\{[\w:-]+\}|https?://\S+|<[^>]*>", re.S)


def _names(text: str) -> dict[str, set[str]]:
    cites = {key.strip() for group in _CITE.findall(text) for key in group.split(",")}
    return {"glue": set(_GLUE.findall(text)), "label": set(_LABEL.findall(text)) | set(_NAME.findall(text)),
            "reference": set(_REFERENCE.findall(text)), "citation": cites,
            "glossary link": set(_TERM.findall(text))}


def has_prose(text: str) -> bool:
    """Whether ``text`` has words to translate once maths, code, roles and links are removed."""
    return re.search(r"[A-Za-z]{3,}", _NO_PROSE.sub(" ", text)) is not None


def translation_problem(english: str, translation: str) -> str:
    """Why ``translation`` cannot stand for ``english`` ("" when it can)."""
    if has_prose(english) and not _CJK.search(translation):
        return "is not translated (no Chinese characters)"
    for kind, names in _names(english).items():
        kept = _names(translation)[kind]
        if names != kept:
            lost, extra = sorted(names - kept), sorted(kept - names)
            return f"changes the {kind} names of the English text (lost {lost}, added {extra})"
    return ""


def _match(segments_: list[Segment], entries: dict[str, Entry]) -> tuple[dict[str, tuple[str, Entry]], list[str]]:
    """Which entry translates each segment (segment key -> (entry key, entry)), and the unused keys.

    A notebook's segments are matched by key (the cell id). A Markdown page's blocks are matched
    by their text's fingerprint first, so that inserting a block, which renumbers the blocks after
    it, leaves their translations in place; a block whose text changed keeps the entry of its key
    (which is then stale).
    """
    matched: dict[str, tuple[str, Entry]] = {}
    free = dict(entries)
    if segments_ and not segments_[0].page.endswith(".ipynb"):
        for segment in segments_:
            same = [k for k, e in free.items() if e.sha == segment.sha]
            if same:
                key = segment.key if segment.key in same else same[0]
                matched[segment.key] = (key, free.pop(key))
    for segment in segments_:
        if segment.key not in matched and segment.key in free:
            matched[segment.key] = (segment.key, free.pop(segment.key))
    return matched, list(free)


def page_problems(language: Language, page: str, root: Path = ROOT) -> list[str]:
    """Every missing, stale, broken or unused translation of ``page``, one line each."""
    path = translation_file(language, page, root)
    rel = path.relative_to(root)
    problems = []
    wanted = segments(page, root)
    matched, unused = _match(wanted, read_translations(path))
    for segment in wanted:
        entry = matched.get(segment.key, (None, None))[1]
        where = f"{page}, {_describe(segment)}"
        if entry is None:
            problems.append(f"{where}: no translation in {rel} (run `python -m mtlcode.book.translation todo "
                            f"{language.code} {page}` to add its English text there)")
        elif entry.sha != segment.sha:
            problems.append(f"{where}: the English text changed since it was translated (sha {entry.sha} in "
                            f"{rel}, now {segment.sha}); update the translation, then its sha")
        elif problem := translation_problem(segment.text, entry.text):
            problems.append(f"{where}: the translation in {rel} {problem}")
    problems += [f"{rel}: {key!r} translates no segment of {page} any more; delete it" for key in sorted(unused)]
    return problems


def _describe(segment: Segment) -> str:
    if segment.page.endswith(".ipynb"):
        cell, _, part = segment.key.partition(".")
        what = f"the {part} of code cell" if part else "markdown cell"
        return f"{what} {cell} ({_first_words(segment.text)})"
    return f"block {segment.key[1:]} ({_first_words(segment.text)})"


def _first_words(text: str, limit: int = 60) -> str:
    line = " ".join(text.split())
    return repr(line if len(line) <= limit else line[:limit] + "...")


def string_problems(language: Language, root: Path = ROOT) -> list[str]:
    path = root / "translations" / language.code / "strings.md"
    entries = read_translations(path)
    problems = []
    for text in strings(root):
        entry = entries.get(text)
        if entry is None or not _CJK.search(entry.text):
            problems.append(f"the string {text!r} has no translation in {path.relative_to(root)} "
                            f"(add `<!-- {text} sha={fingerprint(text)} -->` and its translation)")
    return problems


def check(language: Language, root: Path = ROOT, pages: list[str] | None = None) -> list[str]:
    """Everything that keeps ``language``'s edition (or these ``pages`` of it) from being complete
    and current."""
    problems = [] if pages else string_problems(language, root)
    for page in pages or book_pages(root):
        problems += page_problems(language, page, root)
    return problems


def append_missing(language: Language, page: str, root: Path = ROOT) -> int:
    """Add ``page``'s untranslated segments, in English, to its translation file; their count.

    The file is rewritten in the page's order, under the segments' current keys (a Markdown
    page's blocks are renumbered when blocks were inserted); translations of segments that are
    gone stay at the end, for the translator to reuse or delete.
    """
    path = translation_file(language, page, root)
    entries = read_translations(path)
    wanted = segments(page, root)
    matched, unused = _match(wanted, entries)
    parts = []
    for segment in wanted:
        if segment.key in matched:
            entry = matched[segment.key][1]
            parts.append(f"<!-- {segment.key} sha={entry.sha} -->\n{entry.text}\n\n")
        else:
            parts.append(_entry_text(segment))
    parts += [f"<!-- {key} sha={entries[key].sha} -->\n{entries[key].text}\n\n" for key in unused]
    text = "".join(parts)
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return sum(segment.key not in matched for segment in wanted)


# --- the translated pages --------------------------------------------------------------------


def _lookup(language: Language, page: str, root: Path) -> dict[str, str]:
    problems = page_problems(language, page, root)
    if problems:
        raise TranslationError(f"{len(problems)} translation problem(s) in {page}:\n  " + "\n  ".join(problems))
    matched, _ = _match(segments(page, root), read_translations(translation_file(language, page, root)))
    return {key: entry.text for key, (_, entry) in matched.items()}


def _string_lookup(language: Language, root: Path) -> dict[str, str]:
    problems = string_problems(language, root)
    if problems:
        raise TranslationError("\n".join(problems))
    entries = read_translations(root / "translations" / language.code / "strings.md")
    return {key: entry.text for key, entry in entries.items()}


def translate_markdown(text: str, translations: dict[str, str]) -> str:
    """A Markdown page with its blocks replaced by their translations (keys ``b<n>``)."""
    out, n = [], 0
    for chunk, translatable in markdown_chunks(text):
        if translatable:
            trailing = chunk[len(chunk.rstrip("\n")):]
            out.append(translations[f"b{n}"].strip("\n") + trailing)
            n += 1
        else:
            out.append(chunk)
    return "".join(out)


def _lines(text: str) -> list[str]:
    return text.splitlines(keepends=True)


def translate_notebook(notebook: dict[str, Any], translations: dict[str, str],
                       strings: dict[str, str] | None = None) -> dict[str, Any]:
    """A copy of ``notebook`` whose markdown and figure texts are translated; code is unchanged."""
    notebook = copy.deepcopy(notebook)
    for cell in notebook["cells"]:
        if cell["cell_type"] == "markdown":
            cell["source"] = _lines(translations[cell["id"]])
        for name, where in _METADATA_TEXT.items():
            if _metadata_text(cell, where):
                parent = cell["metadata"]
                for key in where[:-1]:
                    parent = parent[key]
                parent[where[-1]] = translations[f"{cell['id']}.{name}"]
        prompts = cell.get("metadata", {}).get("mystnb", {})
        for prompt in _PROMPTS:
            if strings is not None and prompt in prompts:
                prompts[prompt] = strings[prompts[prompt]]
    return notebook


def _clear_outputs(notebook: dict[str, Any]) -> dict[str, Any]:
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
    return notebook


def translated_notebooks(language: Language, root: Path = ROOT) -> dict[Path, str]:
    """The translated notebooks readers open (no outputs), by path, as file text."""
    strings_zh = _string_lookup(language, root)
    out = {}
    for page in book_pages(root):
        if page.endswith(".ipynb"):
            english = read_notebook(root / page)
            translated = translate_notebook(english, _lookup(language, page, root), strings_zh)
            translated.setdefault("metadata", {})[GENERATED_KEY] = {"from": page, "language": language.code}
            out[root / language.code / page] = notebook_text(_clear_outputs(translated))
    return out


GENERATED_KEY = "mtlcode_translation"  # notebook metadata naming the English page it was generated from


def _generated(path: Path) -> bool:
    try:
        return GENERATED_KEY in json.loads(path.read_text(encoding="utf-8")).get("metadata", {})
    except (OSError, ValueError, AttributeError):
        return False


def write_notebooks(language: Language, root: Path = ROOT) -> list[Path]:
    """Write ``<lang>/book/*.ipynb``; delete the translated notebooks this command generated
    earlier whose English page is gone (marked in their metadata). Other notebooks under
    ``<lang>/``, a translator's drafts for instance, are never touched."""
    notebooks = translated_notebooks(language, root)
    for stale in (root / language.code).rglob("*.ipynb"):
        if stale not in notebooks and ".ipynb_checkpoints" not in stale.parts and _generated(stale):
            stale.unlink()
    for path, text in notebooks.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return sorted(notebooks)


def _with_english_outputs(translated: dict[str, Any], executed: Path, glue: Path, page: str) -> dict[str, Any]:
    """``translated`` with the outputs of the English build's run of the same code.

    myst-nb moves glued values out of the executed notebook into ``<page>.glue.json``; they go
    back into the first code cell, where myst-nb finds them wherever they are.
    """
    run = read_notebook(executed)
    code = [cell_source(c) for c in translated["cells"] if c["cell_type"] == "code"]
    ran = [cell_source(c) for c in run["cells"] if c["cell_type"] == "code"]
    if code != ran:
        raise TranslationError(f"{executed} is not the English build's run of {page}'s current code: "
                               "build the English book first (make book)")
    outputs = iter([c["outputs"], c.get("execution_count")] for c in run["cells"] if c["cell_type"] == "code")
    for cell in translated["cells"]:
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = next(outputs)
    if glue.exists():
        glued = list(json.loads(glue.read_text(encoding="utf-8")).values())
        for output in glued:  # myst-nb stripped the mime prefix that marks the data as glued
            prefix = output["metadata"]["scrapbook"].get("mime_prefix", "")
            output["data"] = {prefix + mime: value for mime, value in output["data"].items()}
        first = next(c for c in translated["cells"] if c["cell_type"] == "code")
        first["outputs"] = glued + first["outputs"]
    return translated


def _config(language: Language, root: Path, title: str) -> str:
    import yaml

    config = yaml.safe_load((root / "_config.yml").read_text(encoding="utf-8"))
    config["title"] = title
    # The English build's outputs are reused; how they are shown (stderr, timeout) stays the same.
    config["execute"] = {**config.get("execute", {}), "execute_notebooks": "off"}
    config["repository"]["path_to_book"] = language.code  # Colab opens zh/book/NN.ipynb
    config["sphinx"]["config"]["language"] = language.sphinx
    config["sphinx"]["config"]["book_language"] = language.code
    return ("# Generated by `python -m mtlcode.book.translation source`: edit ../../_config.yml instead.\n"
            + yaml.safe_dump(config, allow_unicode=True, sort_keys=False))


def write_source(language: Language, out: Path, root: Path = ROOT, executed: Path | None = None) -> Path:
    """The translated book's sources in ``out``: pages, notebooks with the English build's outputs,
    config, toc, static files. Raises :class:`TranslationError` when a translation is missing."""
    import yaml

    problems = check(language, root)
    if problems:
        raise TranslationError(f"the {language.name} edition is incomplete ({len(problems)} problem(s)); "
                               f"`python -m mtlcode.book.translation check {language.code}` lists them:\n  "
                               + "\n  ".join(problems[:20]))
    executed = executed or root / "_build" / "jupyter_execute"
    strings_zh = _string_lookup(language, root)
    _clear_source_folder(out)
    for page in book_pages(root):
        target = out / page
        target.parent.mkdir(parents=True, exist_ok=True)
        translations = _lookup(language, page, root)
        if page.endswith(".ipynb"):
            notebook = translate_notebook(read_notebook(root / page), translations, strings_zh)
            stem = Path(page).with_suffix("")
            notebook = _with_english_outputs(notebook, executed / f"{stem}.ipynb",
                                             executed / f"{stem}.glue.json", page)
            target.write_text(notebook_text(notebook), encoding="utf-8")
        else:
            english = (root / page).read_text(encoding="utf-8")
            target.write_text(translate_markdown(english, translations), encoding="utf-8")
    shutil.copy2(root / "book" / "references.bib", out / "book" / "references.bib")
    shutil.copytree(root / "_static", out / "_static")
    toc = yaml.safe_load((root / "_toc.yml").read_text(encoding="utf-8"))
    for part in toc["parts"]:
        part["caption"] = strings_zh[part["caption"]]
    (out / "_toc.yml").write_text(yaml.safe_dump(toc, allow_unicode=True, sort_keys=False), encoding="utf-8")
    (out / "_config.yml").write_text(_config(language, root, strings_zh[_title(root)]), encoding="utf-8")
    return out


SOURCE_STAMP = ".mtlcode-translated-source"


def _clear_source_folder(out: Path) -> None:
    """Empty ``out`` for a new build of the sources, but only if this command wrote it (its stamp
    file says so) or it is empty; any other folder is refused, never deleted."""
    if out.exists():
        if not out.is_dir():
            raise TranslationError(f"{out} is a file, not a folder; give a new folder for the sources (as "
                                   "`make book-zh` does: _build/zh)")
        if (out / SOURCE_STAMP).is_file():
            shutil.rmtree(out)
        elif any(out.iterdir()):
            raise TranslationError(f"{out} already holds files that `translation source` did not write; it is left "
                                   "as it is. Give a new or empty folder (`make book-zh` uses _build/zh)")
    out.mkdir(parents=True, exist_ok=True)
    (out / SOURCE_STAMP).write_text("written by python -m mtlcode.book.translation source; rewritten on each run\n")


def _title(root: Path) -> str:
    import yaml

    return yaml.safe_load((root / "_config.yml").read_text(encoding="utf-8"))["title"]


# --- command line ----------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = p.add_subparsers(dest="command", required=True)
    for name, text in (("check", "list what is missing, stale or broken"),
                       ("notebooks", "write the translated notebooks <lang>/book/*.ipynb"),
                       ("todo", "append the missing segments, in English, to each page's translation file"),
                       ("source", "write the translated book's sources (with the English build's outputs)")):
        command = commands.add_parser(name, help=text)
        command.add_argument("language", choices=sorted(LANGUAGES))
        if name in ("todo", "check"):
            command.add_argument("pages", nargs="*", help="pages such as book/05_practice.ipynb (default: all)")
        if name == "source":
            command.add_argument("out", type=Path)
    return p


def _known_pages(pages: list[str]) -> list[str]:
    """``pages`` as the table of contents names them; an unknown page is an error, never a new file."""
    known = book_pages()
    normalised = [Path(page).as_posix().removeprefix("./") for page in pages]
    unknown = [page for page, name in zip(pages, normalised) if name not in known]
    if unknown:
        raise TranslationError(f"not pages of the book: {unknown}; the pages are {known}")
    return normalised


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    language = LANGUAGES[args.language]
    try:
        if getattr(args, "pages", None):
            args.pages = _known_pages(args.pages)
        if args.command == "check":
            problems = check(language, pages=args.pages)
            print("\n".join(problems) or f"the {language.name} edition is complete and current")
            return 1 if problems else 0
        if args.command == "todo":
            for page in args.pages or book_pages():
                count = append_missing(language, page)
                if count:
                    print(f"{translation_file(language, page).relative_to(ROOT)}: {count} segment(s) to translate")
            return 0
        if args.command == "notebooks":
            for path in write_notebooks(language):
                print(path.relative_to(ROOT))
            return 0
        print(write_source(language, args.out))
        return 0
    except TranslationError as error:
        print(error, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
