"""The translation files and their checks.

One Markdown file per page under ``translations/<lang>/`` (and ``strings.md`` for the short
strings), each translation under a marker naming its segment and the fingerprint of the English
text it translates: reading them (refusing a damaged file), matching them to the English segments,
listing what is missing, stale, broken or unused (:func:`check`), and appending the missing
segments' English text for a translator (:func:`append_missing`). The comments of the code
(:mod:`mtlcode.book.translation.comments`) have files of their own, ``translations/<lang>/comments/``,
in the same format, keyed by their English text; a page's problems include theirs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from mtlcode.book.translation.comments import page_comments
from mtlcode.book.translation.english import (
    ROOT,
    Language,
    Segment,
    TranslationError,
    book_pages,
    fingerprint,
    segments,
    strings,
)

_MARKER = re.compile(r"^<!-- (?P<key>.+?) sha=(?P<sha>[0-9a-f]{12}) -->[ \t]*$", re.M)
_CJK = re.compile(r"[\u3400-\u9fff]")
_CODE_SPAN = re.compile(r"`[^`\n]+`")


@dataclass(frozen=True)
class Entry:
    """One translation in a file: the fingerprint of the English text it translates, and its text."""

    sha: str
    text: str


def translation_file(language: Language, page: str, root: Path = ROOT) -> Path:
    """The file that holds the translations of ``page`` into ``language``."""
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
    return problems + comment_problems(language, page, root)


def comment_file(language: Language, page: str, root: Path = ROOT) -> Path:
    """The file that holds the translations of the comments of ``page``'s code."""
    return root / "translations" / language.code / "comments" / Path(page).with_suffix(".md")


def comment_problems(language: Language, page: str, root: Path = ROOT) -> list[str]:
    """Every comment of ``page``'s code without a translation, with a broken one, and every
    translation of a comment the page no longer has, one line each."""
    wanted: dict[str, str] = {}  # English text -> the first cell that has it
    for cell, text in page_comments(page, root):
        wanted.setdefault(text, cell)
    if not wanted and not comment_file(language, page, root).exists():
        return []
    path = comment_file(language, page, root)
    rel = path.relative_to(root)
    entries = read_translations(path)
    problems = []
    for text, cell in wanted.items():
        entry = entries.get(text)
        where = f"{page}, the comment {_first_words(text)} in code cell {cell}"
        if entry is None:
            problems.append(f"{where}: no translation in {rel} (a new or changed comment: run `python -m "
                            f"mtlcode.book.translation todo {language.code} {page}` to add its English text there)")
        elif entry.sha != fingerprint(text):
            problems.append(f"{where}: the sha of its marker in {rel} is {entry.sha}, not the fingerprint of the "
                            f"English text, {fingerprint(text)}; check the translation, then correct the sha")
        elif not _CJK.search(entry.text):
            problems.append(f"{where}: the translation in {rel} is not translated (no Chinese characters)")
        elif lost := sorted(set(_CODE_SPAN.findall(text)) - set(_CODE_SPAN.findall(entry.text))):
            problems.append(f"{where}: the translation in {rel} lost the code names {lost}; keep them as they are")
    problems += [f"{rel}: the comment {_first_words(key)} is not in the code of {page} any more (changed or "
                 "deleted): reuse its translation for the new comment, or delete it" for key in entries
                 if key not in wanted]
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
    """Every short string of the book without a translation in ``strings.md``, one line each."""
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


def append_missing_comments(language: Language, page: str, root: Path = ROOT) -> int:
    """Add the English text of ``page``'s untranslated comments to its comment file; their count.

    The file is rewritten in the page's order; translations of comments that are gone stay at the
    end, for the translator to reuse or delete.
    """
    path = comment_file(language, page, root)
    entries = read_translations(path)
    wanted = list(dict.fromkeys(text for _, text in page_comments(page, root)))
    if not wanted and not entries:
        return 0
    parts = [f"<!-- {text} sha={entries[text].sha if text in entries else fingerprint(text)} -->\n"
             f"{entries[text].text if text in entries else text}\n\n" for text in wanted]
    parts += [f"<!-- {key} sha={entry.sha} -->\n{entry.text}\n\n" for key, entry in entries.items()
              if key not in wanted]
    text = "".join(parts)
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return sum(text not in entries for text in wanted)
