"""The child process that runs one handed-in notebook's exercises (see :mod:`mtlcode.course.grading`).

Everything here runs in the process the student's code runs in, so none of it can be fully
trusted once that code has run; it is written to make the obvious ways of cheating fail, and
:mod:`mtlcode.course.grading` decides, from what arrives, what each exercise's grade is:

* the checks are looked up *before* any student code runs, and the check named by the check
  cell is called directly (the check cell itself is not run), so replacing
  ``mtlcode.course.exercises.check_*`` does not change which function checks the answer;
* a :class:`Guard` notices when the student's code has replaced functions the checks rely on
  (``mtlcode``'s modules, ``torch``'s functions, the builtins), and the exercise is then an
  error, not a pass;
* results go to a file, not to standard output, each line carrying a random token that the
  parent passed in, so printing "passed" forges nothing; file descriptors 1 and 2 are pointed
  at a log file, so ``sys.__stdout__`` does not reach the grader's terminal either.
"""

from __future__ import annotations

import builtins
import contextlib
import io
import json
import os
import sys
import types
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["Guard", "preload", "run"]

FEEDBACK_LIMIT = 8000  # characters of printed feedback kept per exercise
# Modules whose functions and classes the checks call: replacing one is tampering.
_WATCHED_MODULES = ("builtins", "json", "io", "torch", "torch.nn", "torch.nn.functional", "torch.autograd",
                    "torch.func")


def preload() -> None:
    """Import what the checks and the book's solutions use, before the :class:`Guard` looks.

    Some of torch's modules rebind torch's functions when first imported (``torch._dynamo``
    wraps ``torch.manual_seed``, and ``torch.func`` imports it): imported after the guard's
    snapshot, that would look like tampering. Run in the fork server too, so that a forked
    child starts in milliseconds.
    """
    import importlib

    for name in ("mtlcode.course.exercises", "torch.func", "torch._dynamo"):
        with contextlib.suppress(ImportError):
            importlib.import_module(name)


def _watched_namespaces() -> Iterator[tuple[str, dict[str, Any]]]:
    import torch

    for name, module in list(sys.modules.items()):
        if isinstance(module, types.ModuleType) and (name in _WATCHED_MODULES or name.split(".")[0] == "mtlcode"):
            yield name, dict(vars(module))
    yield "torch.Tensor", dict(vars(torch.Tensor))
    yield "torch.nn.Module", dict(vars(torch.nn.Module))
    yield "mtlcode.course.grading_worker.Guard", dict(vars(Guard))  # the guard's own methods


def _fingerprint(value: Any) -> tuple[Any, ...]:
    """What must stay the same: the object, and for a function also its code and defaults."""
    if isinstance(value, types.FunctionType):
        return value, value.__code__, value.__defaults__, value.__kwdefaults__
    return (value,)


def _is_exercises(name: str) -> bool:
    """``mtlcode.course.exercises`` and its submodules, where the checks and their tolerances live."""
    return name == "mtlcode.course.exercises" or name.startswith("mtlcode.course.exercises.")


class Guard:
    """Remembers the functions the checks rely on; :meth:`changes` lists those replaced since.

    Every value of :mod:`mtlcode.course.exercises` and its submodules is watched (the tolerances too); elsewhere only
    callables, because modules keep caches and counters that change in normal use.
    """

    def __init__(self) -> None:
        self._modules = dict(sys.modules)
        self._snapshot: dict[str, dict[str, tuple[Any, ...]]] = {}
        for name, namespace in _watched_namespaces():
            self._snapshot[name] = {key: _fingerprint(value) for key, value in namespace.items()
                                    if _is_exercises(name) or callable(value)}

    def changes(self) -> list[str]:
        """The watched names whose value is no longer the one seen at construction."""
        now = dict(_watched_namespaces())
        changed = [name for name in self._snapshot
                   if name in sys.modules and sys.modules[name] is not self._modules.get(name)]
        for name, before in self._snapshot.items():
            namespace = now.get(name, {})
            changed += [f"{name}.{key}" for key, value in before.items()
                        if key not in namespace or _fingerprint(namespace[key]) != value]
        return changed


def _describe(error: BaseException) -> str:
    """``Type: message``, even when the student's exception cannot print itself."""
    try:
        return f"{type(error).__name__}: {error}"
    except Exception:  # a __str__ that raises
        return type(error).__name__


def _clip(text: str) -> str:
    if len(text) <= FEEDBACK_LIMIT:
        return text
    half = FEEDBACK_LIMIT // 2
    return f"{text[:half]}\n... ({len(text) - FEEDBACK_LIMIT} characters left out) ...\n{text[-half:]}"


def _check(exercise: dict[str, Any], checks: dict[str, Callable[[Any], None]], guard: Guard) -> tuple[str, str]:
    """Run the solution cell in a fresh namespace, then each of its checks: (status, feedback)."""
    printed = io.StringIO()
    namespace: dict[str, Any] = {"__name__": "__exercise__", "__builtins__": builtins}
    try:
        with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
            exec(compile(exercise["source"], exercise["filename"], "exec"), namespace)  # noqa: S102
            for check_name, function_name in exercise["checks"]:
                if check_name not in checks:
                    return "error", f"{check_name} is not a check of mtlcode.course.exercises"
                if not callable(namespace.get(function_name)):
                    return "error", f"the solution cell defines no function {function_name}"
                checks[check_name](namespace[function_name])
        status, feedback = "passed", printed.getvalue()
    except NotImplementedError as error:
        status, feedback = "not done", _describe(error)
    except AssertionError:
        status, feedback = "failed", printed.getvalue()
    except SystemExit as error:
        ended = f"the solution tried to end the grading (sys.exit({error.code!r}))"
        status, feedback = "error", printed.getvalue() + ended
    except BaseException as error:  # the student's code may raise anything, KeyboardInterrupt included
        status, feedback = "error", printed.getvalue() + _describe(error)
    tampered = guard.changes()
    if tampered:
        status, feedback = "error", (f"the solution replaced {', '.join(tampered[:5])}, which the check relies on; "
                                     "the answer cannot be graded")
    return status, _clip(feedback.strip())


def _redirect_output(log: str) -> None:
    """Send file descriptors 1 and 2 (``sys.__stdout__``, C extensions, ...) to ``log``."""
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    for target in (1, 2):
        with contextlib.suppress(OSError):
            os.dup2(fd, target)
    os.close(fd)


def run(token: str, results: str, log: str, exercises: list[dict[str, Any]]) -> None:
    """Grade ``exercises`` one after another and append one JSON line per exercise to ``results``.

    Called in a fresh child process. Each line holds ``token`` (which the student's code does
    not know without digging it out of this process's memory), the exercise's ``index``, its
    ``status`` and the ``feedback``.
    """
    if hasattr(os, "setsid"):
        with contextlib.suppress(OSError):
            os.setsid()  # a process group of its own: the parent can kill what the student's code starts
    _redirect_output(log)
    out = open(results, "a", encoding="utf-8")  # noqa: SIM115 (kept open for the whole run)
    preload()
    import mtlcode.course.exercises as exercises_module

    checks = {name: getattr(exercises_module, name) for name in exercises_module.__all__}
    guard = Guard()
    for exercise in exercises:
        status, feedback = _check(exercise, checks, guard)
        out.write(json.dumps({"token": token, "index": exercise["index"], "status": status,
                              "feedback": feedback}) + "\n")
        out.flush()
    out.close()
