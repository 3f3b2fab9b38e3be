"""The student's process: it runs a handed-in notebook's solution cells and calls the student's functions.

:mod:`mtlcode.course.grading` starts one such process per notebook and runs the checks itself, in
its own process, which the student's code cannot reach. The two talk over a pipe:

* the grader sends requests (pickled: this process trusts the grader): ``exec`` a solution cell
  in a fresh namespace, ``call`` one of the functions it defined on the check's arguments (then,
  where a check needs it, a function of the result, such as the gradient of a loss through it,
  which only this process can compute), or ``stop``;
* this process answers with plain data only: tensors, numbers, strings, lists, tuples and dicts,
  written with ``torch.save`` and read by the grader with ``torch.load(weights_only=True)``, which
  refuses anything else (a tensor subclass, an object with a ``__reduce__`` that runs code). So the
  check compares plain arrays, and what arrives cannot act in the grader's process.

The check's expected answers never enter this process: a solution that walks up its stack, patches
``torch.allclose`` or replaces a check finds nothing to read and changes only its own answers.

The process the grader starts is a supervisor (:func:`supervise`): it opens a session of its own,
becomes the "subreaper" of what it starts (Linux), sends its output to a log file, keeps no pipe of
the grader but the request pipe, and forks the process that runs the solutions (:func:`serve`).
When that one ends or the grader asks it to (``SIGTERM``, at the time limit), the supervisor kills
every process it left behind, those that called ``setsid`` to leave the process group included
(orphans come back to a subreaper), and ends. So a background process outlives neither the
notebook's time limit nor its grading, and none holds the grader's output pipes
(``grade ... | tee log`` ends with the grader).
"""

from __future__ import annotations

import builtins
import contextlib
import io
import os
import pickle
import signal
import sys
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

import torch

from mtlcode.course.answers import plain, plain_state

__all__ = ["describe", "preload", "serve", "supervise"]

PRINTED_LIMIT = 8000  # characters of the student's printed output sent back per request


def preload() -> None:
    """Import what the solutions and the checks' follow-up functions use, once, in the fork server."""
    import importlib

    for name in ("mtlcode.course.exercises", "torch.func", "torch._dynamo", "cloudpickle"):
        with contextlib.suppress(ImportError):
            importlib.import_module(name)


def describe(error: BaseException) -> str:
    """``Type: message``, even when the student's exception cannot print itself."""
    try:
        return f"{type(error).__name__}: {error}"
    except Exception:  # a __str__ that raises
        return type(error).__name__


def _clip(text: str) -> str:
    return text if len(text) <= PRINTED_LIMIT else text[:PRINTED_LIMIT] + "\n... (output cut)"


# -- the requests -------------------------------------------------------------------------------

def _run_cell(namespace: dict[str, Any], source: str, filename: str) -> dict[str, Any]:
    namespace.clear()
    namespace.update({"__name__": "__exercise__", "__builtins__": builtins})
    exec(compile(source, filename, "exec"), namespace)  # noqa: S102 (this process exists to run it)
    return {"status": "ok"}


def _call(namespace: dict[str, Any], request: dict[str, Any]) -> dict[str, Any]:
    import cloudpickle

    function = namespace.get(request["function"])
    if not callable(function):
        return {"status": "missing", "message": f"the solution cell defines no function {request['function']}"}
    args, then = cloudpickle.loads(request["payload"])
    torch.set_rng_state(request["rng"])  # the check's random numbers go on where the grader's stand
    result = function(*args)
    if then is not None:
        result = then(result)
    return {"status": "ok", "result": plain(result), "arguments": plain_state(list(args)),
            "rng": torch.get_rng_state()}


def _answer(handle: Callable[[], dict[str, Any]], printed: io.StringIO) -> dict[str, Any]:
    """Run one request, turning whatever the student's code raises into an answer."""
    try:
        with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
            answer = handle()
    except NotImplementedError as error:
        answer = {"status": "not done", "message": describe(error)}
    except SystemExit as error:
        answer = {"status": "exit", "message": f"the solution tried to end the grading (sys.exit({error.code!r}))"}
    except BaseException as error:  # the student's code may raise anything, KeyboardInterrupt included
        answer = {"status": "error", "message": describe(error)}
    answer["printed"] = _clip(printed.getvalue())
    return answer


def _send(connection: Connection, answer: dict[str, Any]) -> None:
    buffer = io.BytesIO()
    try:
        torch.save(answer, buffer)
    except Exception as error:  # e.g. a tensor subclass that cannot be saved
        buffer = io.BytesIO()
        torch.save({"status": "error", "message": f"the answer could not be sent: {describe(error)}",
                    "printed": answer.get("printed", "")}, buffer)
    connection.send_bytes(buffer.getvalue())


def _redirect_output(log: str) -> None:
    """Descriptors 1 and 2 to ``log``, 0 to ``/dev/null``: the grader's terminal and pipes are not the student's."""
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    for target in (1, 2):
        with contextlib.suppress(OSError):
            os.dup2(fd, target)
    os.close(fd)
    with contextlib.suppress(OSError):
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)


def _close_inherited_pipes(keep: int) -> None:
    """Close every pipe and socket but ``keep``: the fork server's "alive" pipe, the resource tracker's.

    Both keep a helper process of the grader alive, and those hold the grader's standard output: a
    background process that kept them would hold ``grade ... | tee log`` open.
    """
    folder = "/proc/self/fd"
    if not os.path.isdir(folder):
        return
    for name in os.listdir(folder):
        fd = int(name)
        if fd <= 2 or fd == keep:
            continue
        with contextlib.suppress(OSError):
            if os.readlink(f"{folder}/{name}").startswith(("pipe:", "socket:")):
                os.close(fd)


def _become_subreaper() -> bool:
    """Have orphaned descendants reparented to this process (Linux ``PR_SET_CHILD_SUBREAPER``)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(36, 1, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        return False


def _descendants(root: int) -> list[int]:
    """The processes below ``root``, read from ``/proc`` (parents before their children)."""
    children: dict[int, list[int]] = {}
    with contextlib.suppress(OSError):
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                with open(f"/proc/{name}/stat", "rb") as file:
                    fields = file.read().rsplit(b")", 1)[1].split()
            except (OSError, IndexError):
                continue
            children.setdefault(int(fields[1]), []).append(int(name))
    found, todo = [], list(children.get(root, []))
    while todo:
        pid = todo.pop(0)
        found.append(pid)
        todo += children.get(pid, [])
    return found


def end_descendants(limit: float = 10.0) -> None:
    """Kill every process below this one and reap them, until none is left (or ``limit`` seconds pass).

    As a subreaper this process gets back the children of those it kills, so one that called
    ``setsid`` or forked again is found in a later round.
    """
    if not os.path.isdir("/proc"):
        return  # no way to find them here: the grader kills the session's process group
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        for pid in _descendants(os.getpid()):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        try:
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass
        except ChildProcessError:
            return  # no child left
        time.sleep(0.01)


def supervise(connection: Connection, log: str) -> None:
    """The grader's child for one notebook: start :func:`serve` below it, and end all it leaves behind."""
    if hasattr(os, "setsid"):
        with contextlib.suppress(OSError):
            os.setsid()  # a session and process group of its own: killed whole at the end
    _become_subreaper()
    _redirect_output(log)
    _close_inherited_pipes(keep=connection.fileno())
    if not hasattr(os, "fork"):
        serve(connection)
        return
    worker = os.fork()
    if worker == 0:
        code = 0
        try:
            serve(connection)
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    connection.close()  # the grader sees the pipe close when the worker ends
    signal.signal(signal.SIGTERM, lambda *_: _kill(worker))
    status = 0
    while True:
        try:
            status = os.waitpid(worker, 0)[1]
            break
        except ChildProcessError:
            break
        except InterruptedError:
            continue
    code = os.waitstatus_to_exitcode(status) if hasattr(os, "waitstatus_to_exitcode") else 0
    end_descendants()
    os._exit(code if 0 <= code < 256 else 128 + (-code % 128))


def _kill(pid: int) -> None:
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGKILL)


def serve(connection: Connection, log: str | None = None) -> None:
    """Answer the grader's requests until it says ``stop`` or goes away (a fresh process per notebook)."""
    if log is not None:  # started on its own, without supervise()
        if hasattr(os, "setsid"):
            with contextlib.suppress(OSError):
                os.setsid()
        _redirect_output(log)
    preload()
    namespace: dict[str, Any] = {}
    while True:
        try:
            request = pickle.loads(connection.recv_bytes())  # noqa: S301 (from the grader, which this process trusts)
        except (EOFError, OSError):
            return
        if request["kind"] == "stop":
            return
        if request["kind"] == "exec":
            answer = _answer(lambda r=request: _run_cell(namespace, r["source"], r["filename"]), io.StringIO())
        else:
            answer = _answer(lambda r=request: _call(namespace, r), io.StringIO())
        _send(connection, answer)
