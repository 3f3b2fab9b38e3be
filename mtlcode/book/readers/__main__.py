"""The command line: ``python -m mtlcode.book.readers [--lang en|zh|all] [--check] [--record [FOLDER]]``.

Without options it writes the reader notebooks of both languages; ``--check`` writes nothing and
exits with status 1 when one is stale; ``--record FOLDER`` first records the glued values from a
book build's executed notebooks (``_build/jupyter_execute``), ``--record`` alone by running each
page once.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mtlcode.book import readers
from mtlcode.book.readers.glued import record
from mtlcode.book.readers.index import ReaderError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m mtlcode.book.readers", description=readers.__doc__.splitlines()[0])
    p.add_argument("--lang", choices=[*readers.LANGUAGES, "all"], default="all", help="the language (default: all)")
    p.add_argument("--check", action="store_true", help="write nothing; exit 1 when a reader notebook is stale")
    p.add_argument("--record", nargs="?", const="", metavar="FOLDER", type=str,
                   help="first record the glued values: from a build's executed notebooks in FOLDER "
                        "(_build/jupyter_execute), or, without FOLDER, by running each page")
    p.add_argument("--pages", nargs="*", default=None, help="with --record: only these pages (book/NN_x.ipynb)")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the command (``argv``, default: the process's arguments); the exit status."""
    from mtlcode.book.translation.english import ROOT, TranslationError, book_pages

    args = _parser().parse_args(argv)
    languages = list(readers.LANGUAGES) if args.lang == "all" else [args.lang]
    try:
        if args.record is not None:
            pages = args.pages or [p for p in book_pages(ROOT) if p.endswith(".ipynb")]
            for path in record(ROOT, pages, Path(args.record) if args.record else None):
                print(path.relative_to(ROOT))
        if args.check:
            problems = readers.check(languages, ROOT)
            print("\n".join(problems) or "the reader notebooks are current")
            if problems:
                print("regenerate them: python -m mtlcode.book.readers", file=sys.stderr)
            return 1 if problems else 0
        for path in readers.write(languages, ROOT):
            print(path.relative_to(ROOT))
        return 0
    except (ReaderError, TranslationError) as error:  # a translation missing: the Chinese pages cannot be written
        print(error, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
