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
