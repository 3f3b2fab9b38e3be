"""The command line: ``python -m mtlcode.book.translation check|todo|notebooks|source LANG ...``.

Each command is one call to the package's functions; a :class:`TranslationError` is printed, not
raised, and the exit status is 1 (also when ``check`` finds a problem). The package's docstring
says what each command does.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mtlcode.book import translation
from mtlcode.book.translation import outputs
from mtlcode.book.translation.build import write_notebooks, write_source
from mtlcode.book.translation.catalogue import (
    append_missing,
    append_missing_comments,
    check,
    comment_file,
    translation_file,
)
from mtlcode.book.translation.english import LANGUAGES, ROOT, TranslationError, book_pages


def _parser() -> argparse.ArgumentParser:
    # The package's docstring describes the command; this file's name would make a poor `prog`.
    p = argparse.ArgumentParser(prog="python -m mtlcode.book.translation",
                                description=translation.__doc__.splitlines()[0])
    commands = p.add_subparsers(dest="command", required=True)
    for name, text in (("check", "list what is missing, stale or broken"),
                       ("notebooks", "write the translated notebooks <lang>/book/*.ipynb"),
                       ("todo", "append the missing segments and code comments, in English, to the translation files"),
                       ("source", "write the translated book's sources (with the English build's outputs)"),
                       ("outputs", "check the output texts of the English build's run (figures, printed messages, "
                                   "tables) against translations/<lang>/outputs.po")):
        command = commands.add_parser(name, help=text)
        command.add_argument("language", choices=sorted(LANGUAGES))
        if name == "outputs":
            command.add_argument("--executed", type=Path, default=ROOT / "_build" / "jupyter_execute",
                                 help="the English build's executed notebooks (default: _build/jupyter_execute)")
            command.add_argument("--todo", action="store_true",
                                 help="append the missing texts to the catalogue, with an empty translation")
        if name in ("todo", "check", "outputs"):
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


def _outputs(code: str, executed: Path, pages: list[str], todo: bool) -> int:
    """The ``outputs`` command: every missing or stale output text; fails on the covered pages'."""
    if not executed.is_dir():
        raise TranslationError(f"{executed} does not exist: build the English book first (make book), with "
                               f"{outputs.LANGUAGES_ENV}=en,{code} for the figures' texts")
    notebooks = [page for page in pages if page.endswith(".ipynb")]
    unrun = [page for page in notebooks if not (executed / page).exists()]
    if unrun:
        print(f"not in {executed} (not checked): {', '.join(unrun)}")
    report = outputs.check_outputs(code, executed, pages)
    for page, texts in report.missing.items():
        state = "covered: an error" if page in report.covered else "not covered yet: to do"
        print(f"{page} ({state}): {len(texts)} output text(s) without a translation")
        for text in texts:
            print(f"    {text!r}")
    for page, said in report.rendering.items():
        print(f"{page}: the translated figures' rendering said:")
        for text in said:
            print(f"    {text}")
    for msgid in report.stale:
        print(f"stale: the msgid {msgid!r} is produced by no output of its pages any more; delete it")
    if todo:
        count = outputs.append_missing_outputs(code, report)
        print(f"{outputs.catalogue_path(code).relative_to(ROOT)}: {count} text(s) added to translate")
        return 0
    problems = report.problems()
    if not report.missing and not problems:
        print(f"the output texts of {len(notebooks) - len(unrun)} notebook(s) are all translated")
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    """Run one command (``argv``, default: the process's arguments); the exit status."""
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
                if page.endswith(".ipynb") and (count := append_missing_comments(language, page)):
                    print(f"{comment_file(language, page).relative_to(ROOT)}: {count} comment(s) to translate")
            return 0
        if args.command == "outputs":
            return _outputs(language.code, args.executed, args.pages or book_pages(), args.todo)
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
