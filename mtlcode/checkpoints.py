"""Checkpoints that survive crashes and never run code: atomic writes, weights-only reads.

A checkpoint is a dict of tensors and plain containers written with ``torch.save``. Writing goes
to a temporary file that is renamed over the old one, so a run killed mid-write leaves the
previous checkpoint intact; reading uses ``weights_only=True``, which refuses pickled code.
"""

from __future__ import annotations

import os
import pickle
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch

__all__ = ["CheckpointError", "load_checkpoint", "remove_stale_temporaries", "save_checkpoint"]

_TMP_SUFFIX = ".tmp"


class CheckpointError(RuntimeError):
    """A checkpoint file that cannot be read (truncated, empty, not a checkpoint at all), or that
    does not fit the learner resuming it (written by another learner or network)."""


def save_checkpoint(path: str | os.PathLike[str], state: dict[str, Any]) -> None:
    """Write ``state`` with ``torch.save`` atomically: to a temporary file, then renamed.

    A crash mid-write leaves the previous checkpoint intact, never a truncated one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=_TMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as file:
            torch.save(state, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True``: tensors and plain containers only, no code.

    Raises :class:`CheckpointError` naming the file when it is damaged or not a checkpoint.
    """
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError, zipfile.BadZipFile) as error:
        # torch's own message for a file it cannot unpickle suggests weights_only=False, which
        # would run whatever code the file holds: never pass that advice on.
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise CheckpointError(
            f"{path} is damaged or not a checkpoint ({path.stat().st_size} bytes; {type(error).__name__}: "
            f"{reason[:200]}). It cannot be resumed from: delete it to start the run afresh, or put back "
            "a good copy. (Checkpoints are read with weights_only=True only: never load one you do not "
            "trust with weights_only=False.)"
        ) from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} holds a {type(state).__name__}, not a checkpoint dict; delete it or "
                              "point the run at another folder")
    return state


def remove_stale_temporaries(path: str | os.PathLike[str]) -> list[Path]:
    """Delete the temporary files a killed :func:`save_checkpoint` of ``path`` left behind.

    Only call this when no other process is writing the same checkpoint.
    """
    path = Path(path)
    stale = sorted(path.parent.glob(f"{path.name}*{_TMP_SUFFIX}")) if path.parent.is_dir() else []
    for tmp in stale:
        tmp.unlink(missing_ok=True)
    return stale
