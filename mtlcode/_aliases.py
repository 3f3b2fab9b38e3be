"""The module names of mtlcode 0.1, kept working while code written for them is updated.

Version 0.2 put the library's learners in :mod:`mtlcode.learners`, the book's tools in
:mod:`mtlcode.book` and the course's tools in :mod:`mtlcode.course`. Code written for 0.1 keeps
working: ``import mtlcode.maml``, ``from mtlcode.exercises import check_inner_loop`` (the check
cells of handed-in notebooks) and ``mtlcode.plots`` give the modules at their new places, the very
same module objects, so there is one ``MAML`` class, not two. ``python -m mtlcode.translation``
and ``python -m mtlcode.student_edition`` still run, with a note naming the new command; these
old names go in version 0.3.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from types import CodeType, ModuleType

# old name -> new name (a package's submodules follow it: mtlcode.exercises.practice too)
MOVED = {
    "mtlcode.learner": "mtlcode.learners.base",
    "mtlcode.maml": "mtlcode.learners.maml",
    "mtlcode.anil": "mtlcode.learners.anil",
    "mtlcode.metasgd": "mtlcode.learners.metasgd",
    "mtlcode.reptile": "mtlcode.learners.reptile",
    "mtlcode.protonet": "mtlcode.learners.protonet",
    "mtlcode.finetune": "mtlcode.learners.finetune",
    "mtlcode.rl": "mtlcode.learners.rl",
    "mtlcode.notebooks": "mtlcode.book.notebooks",
    "mtlcode.translation": "mtlcode.book.translation",
    "mtlcode.language_switch": "mtlcode.book.language_switch",
    "mtlcode.results": "mtlcode.book.results",
    "mtlcode.plots": "mtlcode.book.plots",
    "mtlcode.student_edition": "mtlcode.course.editions",
    "mtlcode.grading": "mtlcode.course.grading",
    "mtlcode.grading_worker": "mtlcode.course.grading_worker",
    "mtlcode.nbgrader_export": "mtlcode.course.nbgrader_export",
    "mtlcode.exercises": "mtlcode.course.exercises",
}
# old command -> (the module that runs it now, the command to use instead)
COMMANDS = {
    "mtlcode.translation": ("mtlcode.book.translation.__main__", "python -m mtlcode.book.translation"),
    "mtlcode.student_edition": ("mtlcode.course.__main__", "python -m mtlcode.course write|grade|nbgrader"),
}


def new_name(old: str) -> str | None:
    """Where module ``old`` lives now, or None when it did not move."""
    for before, after in MOVED.items():
        if old == before or old.startswith(before + "."):
            return after + old[len(before):]
    return None


class _Loader(importlib.abc.Loader):
    """Gives the module at its new place for the old name (importing it there if needed)."""

    def __init__(self, old: str, new: str) -> None:
        self.old, self.new = old, new

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        module = importlib.import_module(self.new)
        self._spec = module.__spec__  # the import system sets __spec__ to the old name's; put it back
        return module

    def exec_module(self, module: ModuleType) -> None:
        module.__spec__ = self._spec  # already executed at its new place

    def get_code(self, fullname: str) -> CodeType | None:
        # Only `python -m OLD` asks for the code: run the new command's, after a note. When OLD
        # stands for a package (mtlcode.translation), runpy asks for OLD.__main__'s code.
        runs = self.new
        command = fullname.removesuffix(".__main__")
        if command in COMMANDS:
            runs, instead = COMMANDS[command]
            print(f"note: `python -m {command}` is now `{instead}`; the old command goes in mtlcode 0.3",
                  file=sys.stderr)
        spec = importlib.util.find_spec(runs)
        return spec.loader.get_code(runs)  # type: ignore[union-attr]


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: object = None,
                  target: object = None) -> importlib.machinery.ModuleSpec | None:
        new = new_name(fullname)
        if new is None:
            return None
        target_spec = importlib.util.find_spec(new)
        if target_spec is None:
            return None
        return importlib.util.spec_from_loader(fullname, _Loader(fullname, new), origin=target_spec.origin,
                                               is_package=target_spec.submodule_search_locations is not None)


def install() -> None:
    """Let the old names be imported (once per process)."""
    if not any(isinstance(finder, _Finder) for finder in sys.meta_path):
        # First in line: otherwise the path finder would load mtlcode.exercises.practice a second time,
        # as a new module, from the folder of the package the old name stands for.
        sys.meta_path.insert(0, _Finder())


def lazy_submodules(package: str, names: tuple[str, ...]):  # noqa: ANN201 (a module's __getattr__)
    """A module ``__getattr__`` (PEP 562) that imports ``package.NAME`` the first time it is used.

    Heavy submodules (plots need matplotlib, data needs PIL) then load only where they are used:
    ``import mtlcode`` stays quick in every torchrun worker.
    """

    def __getattr__(name: str) -> ModuleType:
        if name in names:
            return importlib.import_module(f"{package}.{name}")
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
