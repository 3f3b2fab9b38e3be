"""The grader's side of one notebook's student process: starting it, the pipe to it, stopping it whole.

:mod:`mtlcode.course.grading` grades; this module starts :func:`grading_worker.supervise` for a
notebook (from the fork server, which is replaced when a hand-in killed, stopped or spoiled it),
sends it requests and reads its answers as plain data (``torch.load(weights_only=True)``), and at
the end has the supervisor kill every process the solution started, then kills the session's
process group.
"""

from __future__ import annotations

import contextlib
import io
import multiprocessing
import os
import pickle
import signal
import time
import warnings
from pathlib import Path
from typing import Any

import torch

from mtlcode.course import grading_worker
from mtlcode.course.grading_worker import describe as _describe

__all__ = ["MAX_ANSWER_BYTES", "Stopped", "Student"]

_LOG_TAIL = 2000  # characters of the child's own output shown when it died
MAX_ANSWER_BYTES = 256 * 2**20  # an answer larger than this is refused (a flood, not a result)
_CLEAN_UP_TIME = 15.0  # seconds the supervisor has to end what the student's code started


def _context(method: str = "forkserver") -> Any:
    """Fork children from a server that has imported torch once (fast); spawn where there is none."""
    if method not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context(method)
    if method == "forkserver":
        # Only takes effect if this process's fork server is not running yet; children are correct either way.
        context.set_forkserver_preload([
            "mtlcode.course.exercises", "mtlcode.course.grading_worker", "torch.func", "torch._dynamo", "cloudpickle"])
    return context


def _fork_server_pid() -> int | None:
    from multiprocessing import forkserver

    return getattr(forkserver._forkserver, "_forkserver_pid", None)


def _process_state(pid: int) -> str:
    """The state letter of ``pid`` in ``/proc`` (R, S, T, Z, ...); "" when unknown or gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            return file.read().rsplit(b")", 1)[1].split()[0].decode()
    except (OSError, IndexError):
        return ""


def _end_fork_server() -> None:
    """Kill the fork server, so that the next start launches a fresh one.

    A hand-in may have killed, stopped (``SIGSTOP``) or otherwise spoiled the server that all
    notebooks are forked from; it is the grader's child, so it is left a zombie for
    ``multiprocessing`` to reap and replace.
    """
    pid = _fork_server_pid()
    if pid is None:
        return
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while _process_state(pid) not in ("Z", "X", "") and time.monotonic() < deadline:
        time.sleep(0.01)


def _fork_server_is_sound() -> bool:
    pid = _fork_server_pid()
    return pid is None or _process_state(pid) in ("R", "S", "D", "")


def _start_supervisor(name: str, log: Path) -> tuple[Any, Any]:
    """Start :func:`grading_worker.supervise` for one notebook: (the grader's end of the pipe, the process).

    From the fork server; one found stopped or dead is replaced, and one that fails to start a
    process is replaced once, then the process is spawned (slower, shares nothing).
    """
    for method in ("forkserver", "forkserver", "spawn"):
        context = _context(method)
        if context.get_start_method() == "forkserver" and not _fork_server_is_sound():
            _end_fork_server()
        ours, theirs = context.Pipe()
        process = context.Process(target=grading_worker.supervise, args=(theirs, str(log)), name=f"grading {name}",
                                  daemon=True)
        try:
            process.start()
        except (OSError, EOFError, ValueError) as error:
            ours.close()
            theirs.close()
            if method == "spawn":
                raise
            warnings.warn(f"the grader's fork server failed ({_describe(error)}); starting another",
                          RuntimeWarning, stacklevel=2)
            _end_fork_server()
            continue
        theirs.close()  # else a process that ended would still look connected
        return ours, process
    raise AssertionError("unreachable")


class Stopped(BaseException):
    """The student's process cannot go on: out of time, ended, or it sent what is not an answer.

    A ``BaseException``, so that a check's ``except Exception`` does not take it for a wrong answer.
    """

    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


class Student:
    """One notebook's student process (:mod:`mtlcode.course.grading_worker`) and the pipe to it."""

    def __init__(self, name: str, timeout: float, log: Path) -> None:
        self.connection, self.process = _start_supervisor(name, log)
        self.deadline, self.timeout, self.log = time.monotonic() + timeout, timeout, log

    def request(self, message: dict[str, Any]) -> dict[str, Any]:
        """Send ``message``; its answer as plain data, or :class:`Stopped`."""
        try:
            self.connection.send_bytes(pickle.dumps(message))
            if not self.connection.poll(max(self.deadline - time.monotonic(), 0.0)):
                raise Stopped("timeout", f"the notebook was stopped after {self.timeout:g} s (--timeout) before "
                                          "this exercise was graded: an endless loop?")
            data = self.connection.recv_bytes(MAX_ANSWER_BYTES)
        except (EOFError, OSError) as error:
            self.process.join(1)
            tail = self.log.read_text(encoding="utf-8", errors="replace")[-_LOG_TAIL:] if self.log.exists() else ""
            tail = f"\nits last output:\n{tail}" if tail.strip() else ""
            raise Stopped("error", "the grading process ended before this exercise was graded (exit code "
                                    f"{self.process.exitcode}): the solution called os._exit, crashed Python or was "
                                    f"killed{tail}") from error
        try:  # plain data only: a tensor subclass or an object that runs code on loading is refused
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # forged bytes also make torch warn about their pickle protocol
                answer = torch.load(io.BytesIO(data), weights_only=True)
        except Exception as error:
            raise Stopped("error", "the solution's process sent something that is not an answer (a tensor "
                                    "subclass, an object of its own, or forged bytes): it cannot be graded") from error
        if not (isinstance(answer, dict) and isinstance(answer.get("status"), str)
                and isinstance(answer.get("printed", ""), str)):
            raise Stopped("error", "the solution's process sent an answer of the wrong form: it cannot be graded")
        return answer

    def stop(self) -> None:
        """End the process and every process it started, those that left its process group included.

        The supervisor (:func:`grading_worker.supervise`) ends the worker on ``stop`` or ``SIGTERM`` and
        kills what is left below it; the process group is killed too, should the supervisor be gone.
        """
        with contextlib.suppress(OSError, ValueError):
            self.connection.send_bytes(pickle.dumps({"kind": "stop"}))
        self.process.join(0.5)
        if self.process.is_alive() and self.process.pid is not None:
            with contextlib.suppress(OSError):
                os.kill(self.process.pid, signal.SIGTERM)
                os.kill(self.process.pid, signal.SIGCONT)  # were it stopped
            self.process.join(_CLEAN_UP_TIME)
        if hasattr(os, "killpg") and self.process.pid is not None:
            with contextlib.suppress(OSError):  # no group: it has ended, or not called setsid yet
                os.killpg(self.process.pid, signal.SIGKILL)
        if self.process.is_alive():
            self.process.kill()
        self.process.join(5)
        if self.process.exitcode is None:  # the fork server that reports it is stopped or spoiled: replaced
            _end_fork_server()
            self.process.join(5)
        self.connection.close()
