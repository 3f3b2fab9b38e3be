"""Where the Omniglot archives are: found under the data root, else downloaded there; md5-checked.

A download waits at most :data:`mtlcode.data.DOWNLOAD_TIMEOUT` seconds on any one network
operation. That setting lives on the package, where readers change it, so it is read from there
each time.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from torchvision.datasets import utils as tv_utils

import mtlcode.data

ENV_VAR = "MTLCODE_DATA"
"""Environment variable naming the data folder (see :func:`data_root`)."""

URL_BASE = "https://raw.githubusercontent.com/brendenlake/omniglot/master/python/"
"""Public folder the archives are downloaded from."""


@dataclass(frozen=True)
class _Archive:
    filename: str
    md5: str
    url: str


_SETS: dict[str, _Archive] = {
    name: _Archive(f"images_{name}.zip", md5, f"{URL_BASE}images_{name}.zip")
    for name, md5 in {
        "background": "68d2efa1b9178cc56df9314c21c6e718",
        "evaluation": "6b91aef0f799c5bb55b94e3f2daec811",
        "background_small1": "e704a628b5459e08445c13499850abc4",
        "background_small2": "b75a71a51d3b13f821f212756fe481fd",
    }.items()
}

_RUNS = _Archive(
    "all_runs.zip", "e8996daecdf12afeeb4a53a179f06b19", f"{URL_BASE}one-shot-classification/all_runs.zip"
)


def data_root(root: str | os.PathLike[str] | None = None) -> Path:
    """The folder data is read from and downloaded to.

    ``root`` when given, else the environment variable ``MTLCODE_DATA``, else a per-user cache
    folder: ``$XDG_CACHE_HOME/mtlcode``, by default ``~/.cache/mtlcode``. Omniglot archives are
    looked for both in this folder and in its ``omniglot/`` subfolder, so ``MTLCODE_DATA`` may
    name either ``.../data`` or ``.../data/omniglot``; downloads land in the folder itself.
    """
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    return Path(cache).expanduser() / "mtlcode"


def _search_dirs(root: Path, archive: _Archive) -> list[Path]:
    dirs = [root, root / "omniglot"]
    if archive is _RUNS:  # upstream keeps it in python/one-shot-classification/
        dirs += [d / "one-shot-classification" for d in dirs]
    return dirs


def _how_to_get(archive: _Archive, root: Path) -> str:
    return (
        f"Download it from {archive.url} into {root} (download=True does this when online), "
        f"or point the environment variable {ENV_VAR} (or the `root` argument) at a folder that "
        f"holds {archive.filename}."
    )


def _remove(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink(missing_ok=True)


def _timeout() -> float:
    # Read at each use, from the package: readers set mtlcode.data.DOWNLOAD_TIMEOUT there, not here.
    return mtlcode.data.DOWNLOAD_TIMEOUT


def _download(url: str, path: Path) -> None:
    """Fetch ``url`` into ``path``, waiting at most :data:`DOWNLOAD_TIMEOUT` seconds per network operation.

    The bytes go to ``<name>.part`` first and are renamed only once all have arrived, so an
    interrupted download never leaves a file that looks like the archive. Tests replace this
    function (``_locate`` calls it through the module) to stay offline.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".part")
    request = urllib.request.Request(url, headers={"User-Agent": "mtlcode"})
    try:
        # urlopen is looked up on urllib.request at call time, so tests can switch the network off.
        with urllib.request.urlopen(request, timeout=_timeout()) as response, open(partial, "wb") as out:
            expected = response.headers.get("Content-Length")
            shutil.copyfileobj(response, out, 1 << 20)
            received = out.tell()
        # http.client ends a read early without an error when the server closes mid-file.
        if expected is not None and received != int(expected):
            raise OSError(f"the connection closed after {received} of {expected} bytes")
        os.replace(partial, path)
    finally:
        _remove(partial)


def _timed_out(error: BaseException) -> bool:
    # A read that times out raises TimeoutError; a connect that does is wrapped in a URLError.
    return isinstance(error, TimeoutError) or isinstance(getattr(error, "reason", None), TimeoutError)


def _download_failed(archive: _Archive, base: Path, searched: str, error: Exception) -> FileNotFoundError:
    """The error to raise when fetching ``archive`` into ``base`` failed with ``error``."""
    if _timed_out(error):
        return FileNotFoundError(
            f"Downloading {archive.filename} from {archive.url} timed out: the server did not answer "
            f"within {_timeout():g} s (mtlcode.data.DOWNLOAD_TIMEOUT, the limit on each connect "
            "or read). Check the connection or raise that limit and try again, or get the file by "
            "hand: " + _how_to_get(archive, base)
        )
    return FileNotFoundError(
        f"{archive.filename} not found (looked in {searched}) and downloading it from "
        f"{archive.url} to {base} failed ({type(error).__name__}: {error}); are you offline? "
        + _how_to_get(archive, base)
    )


def _check_md5(path: Path, archive: _Archive, *, downloaded: bool = False) -> None:
    if tv_utils.check_integrity(path, archive.md5):
        return
    actual = tv_utils.calculate_md5(path)
    size = path.stat().st_size
    if downloaded:  # never leave a bad download behind: the next call would trip over it
        _remove(path)
        raise RuntimeError(
            f"Downloaded {archive.filename} from {archive.url} but it is corrupt: md5 {actual}, "
            f"expected {archive.md5} ({size} bytes; the file was deleted). Try again, or "
            + _how_to_get(archive, path.parent)
        )
    raise RuntimeError(
        f"{archive.filename} at {path} is corrupt or not the published file: its md5 is {actual}, "
        f"expected {archive.md5} ({size} bytes; a truncated or interrupted download?). Delete it and "
        f"run again with download=True to fetch a fresh copy from {archive.url}, or replace it by a "
        "good copy."
    )


def _locate(archive: _Archive, root: str | os.PathLike[str] | None, download: bool) -> Path:
    """Path of a verified copy of ``archive``: found under the data root, else downloaded there."""
    base = data_root(root)
    dirs = _search_dirs(base, archive)
    for folder in dirs:
        path = folder / archive.filename
        if path.is_file():
            _check_md5(path, archive)
            return path
    searched = ", ".join(str(d) for d in dirs)
    if not download:
        raise FileNotFoundError(
            f"{archive.filename} not found (looked in {searched}) and download=False. "
            + _how_to_get(archive, base)
        )
    target = base / archive.filename
    try:
        _download(archive.url, target)
    except Exception as error:  # URLError, OSError (read-only folder, timeout...), HTTP errors, ...
        _remove(target)  # a partial download (by a swapped-in downloader) would fail the md5 check next time
        raise _download_failed(archive, base, searched, error) from error
    if not target.is_file():
        raise FileNotFoundError(
            f"Downloading {archive.filename} from {archive.url} to {base} produced no file. "
            + _how_to_get(archive, base)
        )
    _check_md5(target, archive, downloaded=True)
    return target

