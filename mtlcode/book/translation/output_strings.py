"""The catalogue of the output texts of one language (``translations/<lang>/outputs.po``).

Reading it (msgid the English text, msgstr its translation, ``{}`` placeholders, the header's
rules), the rule that says which texts are prose to translate, and translating one text (a
printed line, a table cell, a figure text). :mod:`mtlcode.book.translation.outputs` explains the
whole and uses it on the English run's outputs; :mod:`mtlcode.book.translation.figures` on the
figures while they are drawn.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
from pathlib import Path

from mtlcode.book.translation.english import ROOT, TranslationError

LANGUAGES_ENV = "MTLCODE_BOOK_LANGUAGES"
KEY = "mtlcode.translations"  # the key of a figure output's metadata that holds its translations
CATALOGUE = "outputs.po"


# --- the catalogue -----------------------------------------------------------------------------

@dataclass
class Catalogue:
    """One language's output strings: exact translations, placeholder patterns, and the rules."""

    path: Path
    exact: dict[str, str] = field(default_factory=dict)  # msgid -> msgstr (translated ones only)
    patterns: list[tuple[re.Pattern[str], str, str]] = field(default_factory=list)  # (regex, msgid, msgstr)
    msgids: dict[str, tuple[str, ...]] = field(default_factory=dict)  # every msgid -> its pages (#:)
    ignore_words: frozenset[str] = frozenset()
    ignore_lines: tuple[re.Pattern[str], ...] = ()
    covered: tuple[str, ...] = ()

    def translate(self, text: str, used: set[str] | None = None) -> str | None:
        """The translation of ``text`` (one line, a table cell or a figure text), or None.

        A pattern's placeholders take the text they match, itself translated when it needs it
        (``"task {}: {}"`` translates ``"task 0: support loss 0.5"`` only if the catalogue also
        translates ``"support loss 0.5"``), so that a general pattern never leaves English behind.
        The msgids used are added to ``used``.
        """
        core = text.strip()
        if not core:
            return text
        found = self.exact.get(core)
        if found is not None:
            _add(used, core)
        else:
            for regex, msgid, msgstr in self.patterns:
                match = regex.fullmatch(core)
                if match:
                    groups = [self._part(group, used) for group in match.groups()]
                    if all(group is not None for group in groups):
                        found = _fill(msgstr, tuple(g for g in groups if g is not None))
                        _add(used, msgid)
                        break
        if found is None:
            return None
        start = text.index(core[0])
        return text[:start] + found + text[start + len(core):]

    def _part(self, text: str, used: set[str] | None) -> str | None:
        if not needs_translation(text, self):
            return text
        return self.translate(text, used)

    def msgid_of(self, text: str) -> str | None:
        """The msgid that covers ``text`` (translated or not), or None."""
        core = text.strip()
        if core in self.msgids:
            return core
        for msgid in self.msgids:
            if "{" in msgid and _pattern(msgid).fullmatch(core):
                return msgid
        return None


def _add(used: set[str] | None, msgid: str) -> None:
    if used is not None:
        used.add(msgid)


_PLACEHOLDER = re.compile(r"\{(\d*)\}")


# What a placeholder matches: any text whose brackets are closed (one level deep, quoted strings
# inside them aside; an interval "[0, 1)" counts), so that "network {}, {} steps" takes
# "[1, 12, 1]" whole, not "[1".
_ANY = r"((?:[^\[\]()]|[\[(](?:'[^'\n]*'|[^\[\]()])*[\])])+?)"


def _pattern(msgid: str) -> re.Pattern[str]:
    parts = _PLACEHOLDER.split(msgid)
    regex = "".join(re.escape(part) if i % 2 == 0 else _ANY for i, part in enumerate(parts))
    return re.compile(regex, re.S)


def _fill(msgstr: str, groups: tuple[str, ...]) -> str:
    counter = iter(range(len(groups)))

    def value(match: re.Match[str]) -> str:
        index = int(match.group(1)) if match.group(1) else next(counter, None)
        if index is None or index >= len(groups):
            raise TranslationError(f"the translation {msgstr!r} has more placeholders than its msgid")
        return groups[index]

    return _PLACEHOLDER.sub(value, msgstr)


def catalogue_path(code: str, root: Path = ROOT) -> Path:
    return root / "translations" / code / CATALOGUE


def _header(text: str) -> dict[str, list[str]]:
    """The ``# name: value`` rules of the comment lines at the top of the file."""
    rules: dict[str, list[str]] = {}
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        match = re.match(r"#\s*(ignore-words|ignore-lines|covered):\s?(.*)$", line)
        if match:
            rules.setdefault(match.group(1), []).append(match.group(2))
    return rules


_CACHE: dict[Path, tuple[float, Catalogue]] = {}


def read_catalogue(code: str, root: Path = ROOT) -> Catalogue | None:
    """The catalogue of language ``code``, or None when it has none (read again when it changed)."""
    path = catalogue_path(code, root)
    if not path.exists():
        return None
    cached = _CACHE.get(path)
    if cached and cached[0] == path.stat().st_mtime:
        return cached[1]
    from babel.messages.pofile import read_po

    text = path.read_text(encoding="utf-8")
    rules = _header(text)
    try:
        po = read_po(io.StringIO(text), abort_invalid=True)
    except Exception as error:  # babel's PoFileError, or a broken placeholder
        raise TranslationError(f"{path}: cannot read the catalogue: {error}") from error
    catalogue = Catalogue(
        path,
        ignore_words=frozenset(word for line in rules.get("ignore-words", []) for word in line.split()),
        ignore_lines=tuple(re.compile(line.strip()) for line in rules.get("ignore-lines", []) if line.strip()),
        covered=tuple(page for line in rules.get("covered", []) for page in line.split()))
    for message in po:
        if not message.id or not isinstance(message.id, str):
            continue
        catalogue.msgids[message.id] = tuple(sorted({location for location, _ in message.locations}))
        if message.string:
            if _PLACEHOLDER.search(message.id) and _PLACEHOLDER.sub("", message.id).strip():
                catalogue.patterns.append((_pattern(message.id), message.id, message.string))
            else:
                catalogue.exact[message.id] = message.string
    # The most specific pattern first: the one with the most literal text.
    catalogue.patterns.sort(key=lambda p: -len(_PLACEHOLDER.sub("", p[1])))
    _CACHE[path] = (path.stat().st_mtime, catalogue)
    return catalogue


# --- what needs a translation -------------------------------------------------------------------

_NOT_PROSE = re.compile(r"`[^`]*`|\$[^$]*\$|https?://\S+|\S*[/\\]\S*|\S*_\S*|'[^'\s]*'|\"[^\"\s]*\"|\S*=\S*"
                        r"|(?<!\S)--\S+")
_WORD = re.compile(r"(?<![\w.])[A-Za-z][A-Za-z'’-]*[a-z][A-Za-z'’-]*(?!\.?\w|\()")


def words(text: str, catalogue: Catalogue | None = None) -> list[str]:
    """The English words of ``text`` that make it prose (see the module's docstring)."""
    found = _WORD.findall(_NOT_PROSE.sub(" ", text))
    ignored = catalogue.ignore_words if catalogue else frozenset()
    return [word for word in found if word not in ignored and word.strip("'’-") not in ignored]


def needs_translation(text: str, catalogue: Catalogue | None = None) -> bool:
    if catalogue and any(rule.search(text) for rule in catalogue.ignore_lines):
        return False
    return bool(words(text, catalogue))



def _translate_figure_text(text: str, catalogue: Catalogue, used: set[str] | None = None) -> str | None:
    """A figure text's translation: the whole text (it may have several lines), else line by line."""
    whole = catalogue.translate(text, used)
    if whole is not None or "\n" not in text:
        return whole
    lines = [catalogue.translate(line, used) if needs_translation(line, catalogue) else line
             for line in text.split("\n")]
    if any(line is None for line in lines):
        return None
    return "\n".join(line for line in lines if line is not None)
