"""The course's command line: ``python -m mtlcode.course COMMAND ...``.

    python -m mtlcode.course write OUT_DIR [--lang zh]          # the student notebooks, into OUT_DIR
    python -m mtlcode.course grade NB.ipynb ... [--timeout 120]  # grade handed-in notebooks
    python -m mtlcode.course nbgrader COURSE_DIR                 # the chapters as an nbgrader course

``write`` and ``nbgrader`` never overwrite a notebook edited since it was written (a student's
work) unless ``--force``. ``grade`` runs each notebook in a child process with a time limit; it is
not a sandbox, see :mod:`mtlcode.course.grading`. The spelling of version 0.1 (``--grade NB ...``,
``--nbgrader DIR``, a bare ``OUT_DIR``) still works, with a note, until version 0.3.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from mtlcode.course.editions import EditedFilesError, write_student_edition
from mtlcode.course.grading import DEFAULT_TIMEOUT, grade_notebooks

COMMANDS = ("write", "grade", "nbgrader")


def _seconds(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text}")
    return value


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m mtlcode.course",
                                description="The course's tools: the student edition, grading, nbgrader.",
                                epilog="\n".join(__doc__.splitlines()[1:6]),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    book = {"type": Path, "default": None, "help": "the book's folder (default: book/ of this project)"}
    force = {"action": "store_true", "help": "overwrite notebooks that were edited since they were written"}

    write = commands.add_parser("write", help="write the student edition (solutions stubbed out)")
    write.add_argument("out_dir", type=Path, help="where to write the student notebooks")
    write.add_argument("--book", **book)
    write.add_argument("--lang", choices=("en", "zh"), default="en",
                       help="the edition: en (book/) or zh (the Chinese edition, zh/book/)")
    write.add_argument("--force", **force)

    grade = commands.add_parser("grade", help="grade handed-in notebooks, each in a child process")
    grade.add_argument("notebooks", nargs="+", type=Path, metavar="NOTEBOOK")
    grade.add_argument("--timeout", type=_seconds, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                       help=f"stop grading a notebook after this long (default {DEFAULT_TIMEOUT:g})")
    grade.add_argument("--verbose", action="store_true", help="print the feedback of every exercise")

    nbgrader = commands.add_parser("nbgrader", help="write an nbgrader course: one assignment per chapter")
    nbgrader.add_argument("course_dir", type=Path)
    nbgrader.add_argument("--book", **book)
    nbgrader.add_argument("--exercises-only", action="store_true",
                          help="assignments hold only the exercises, not the whole chapter")
    nbgrader.add_argument("--force", **force)
    return p


def _from_old_spelling(argv: list[str]) -> list[str]:
    """``--grade NB ...``, ``--nbgrader DIR`` or ``OUT_DIR`` (version 0.1) as a subcommand line."""
    if not argv or argv[0] in COMMANDS or argv[0] in ("-h", "--help"):
        return argv
    for flag, command in (("--grade", "grade"), ("--nbgrader", "nbgrader")):
        if flag in argv:
            rest = [a for a in argv if a != flag]
            new = [command, *rest]
            break
    else:
        new = ["write", *argv]
    print(f"note: the command is now `python -m mtlcode.course {' '.join(new)}`; the old spelling goes in "
          "mtlcode 0.3", file=sys.stderr)
    return new


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(_from_old_spelling(list(sys.argv[1:] if argv is None else argv)))
    if args.command == "grade":
        return grade_notebooks(args.notebooks, args.timeout, args.verbose)
    try:
        if args.command == "nbgrader":
            from mtlcode.course.nbgrader_export import write_nbgrader_course

            written = write_nbgrader_course(args.course_dir, args.book, exercises_only=args.exercises_only,
                                            force=args.force)
            print(f"wrote {len(written)} nbgrader assignments to {args.course_dir / 'source'}")
        else:
            written = write_student_edition(args.out_dir, args.book, force=args.force, language=args.lang)
            print(f"wrote {len(written)} student notebooks to {args.out_dir}")
    except (EditedFilesError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
