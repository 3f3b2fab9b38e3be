"""The course's tools: what a teacher uses to hand out, collect and grade the exercises.

* ``exercises``: the checks the chapters' exercises call (one module per chapter);
* ``editions``: the student edition of the notebooks (solutions stubbed out), written without
  overwriting a student's work;
* ``grading``: grading handed-in notebooks, the checks in the grader's process; ``grading_process``:
  starting and stopping a notebook's student process; ``grading_worker``: the student's process
  that runs the solutions; ``answers``: the plain data that passes between them;
* ``nbgrader_export``: the chapters as an nbgrader course.

One command line, ``python -m mtlcode.course write|grade|nbgrader`` (see ``__main__``).
"""

from __future__ import annotations

from mtlcode._aliases import lazy_submodules

__getattr__ = lazy_submodules(__name__, ("answers", "editions", "exercises", "grading", "grading_process",
                                         "grading_worker", "nbgrader_export"))
