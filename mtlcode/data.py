"""Omniglot: the character data set of few-shot learning, read straight from its zip archives.

Omniglot (Lake, Salakhutdinov & Tenenbaum, Science 2015) holds 1623 handwritten characters from
50 alphabets, each drawn once by 20 different people. It comes as zip archives of 105x105 PNGs,
laid out ``images_<set>/<alphabet>/<character>/<drawing>.png``:

============================  ===========================================================
``background``                30 alphabets, 964 characters (the usual meta-training pool)
``evaluation``                20 alphabets, 659 characters (the usual meta-test pool)
``background_small1``         5 background alphabets, 136 characters
``background_small2``         5 background alphabets, 156 characters (Greek and Latin are
                              the same 50 characters as in ``background_small1``)
============================  ===========================================================

:class:`Omniglot` decodes a choice of these archives into one tensor (strokes 1.0, paper 0.0);
:func:`split_alphabets` divides alphabets into meta-train / validation / meta-test parts; and
:func:`lake_one_shot_runs` loads the 20 runs of the original 20-way one-shot benchmark.

Where the files live: see :func:`data_root`. Each archive is checked against its published md5
before use, and fetched from the public repository ``brendenlake/omniglot`` when missing (unless
``download=False``); a download gives up when the server stays silent for
:data:`DOWNLOAD_TIMEOUT` seconds.
"""

from __future__ import annotations

import contextlib
import functools
import io
import numbers
import operator
import os
import random
import shutil
import urllib.request
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset
from torchvision.datasets import utils as tv_utils

from mtlcode.tasks import TaskBatch, _count

__all__ = ["DOWNLOAD_TIMEOUT", "ENV_VAR", "URL_BASE", "Omniglot", "data_root", "lake_one_shot_runs", "split_alphabets"]

ENV_VAR = "MTLCODE_DATA"
"""Environment variable naming the data folder (see :func:`data_root`)."""

URL_BASE = "https://raw.githubusercontent.com/brendenlake/omniglot/master/python/"
"""Public folder the archives are downloaded from."""

DOWNLOAD_TIMEOUT: float = 60
"""Seconds a download waits on any one network operation (connecting, or one read) before giving up.

It bounds each wait, not the whole download, so a slow but steady connection is never cut off,
while one that stops answering fails within this time instead of hanging forever.
"""


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

_ROTATIONS = 4  # 0, 90, 180 and 270 degrees


# --------------------------------------------------------------------------------------------
# Finding, downloading and checking the archives
# --------------------------------------------------------------------------------------------


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
        with urllib.request.urlopen(request, timeout=DOWNLOAD_TIMEOUT) as response, open(partial, "wb") as out:
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
            f"within {DOWNLOAD_TIMEOUT:g} s (mtlcode.data.DOWNLOAD_TIMEOUT, the limit on each connect "
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


# --------------------------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------------------------


def _decode_pngs(blobs: Sequence[bytes], image_size: int, source: Path, names: Sequence[str]) -> Tensor:
    """PNG bytes -> uint8 tensor ``[n, 1, image_size, image_size]`` of ink: strokes 255, paper 0.

    Kept as bytes (4x smaller than floats) in the caches; :func:`_to_float` makes them ``[0, 1]``.
    """
    out = np.empty((len(blobs), image_size, image_size), dtype=np.uint8)
    for i, blob in enumerate(blobs):
        try:
            with Image.open(io.BytesIO(blob)) as image:
                gray = image.convert("L")
        except (OSError, ValueError) as error:  # PIL raises OSError subclasses on bad data
            raise RuntimeError(
                f"cannot decode {names[i]} in {source} ({error}); the archive looks corrupt: delete it and "
                "download it again"
            ) from error
        if gray.size != (image_size, image_size):
            gray = gray.resize((image_size, image_size), Image.Resampling.LANCZOS)
        out[i] = np.asarray(gray)
    # The PNGs are black strokes on white paper; the book uses ink = 1, so invert.
    return torch.from_numpy(255 - out).unsqueeze(1)


def _to_float(ink: Tensor) -> Tensor:
    """uint8 ink (0..255) -> a new float32 tensor in ``[0, 1]``."""
    return ink.float().div_(255.0)


def _open_zip(path: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as error:
        raise RuntimeError(
            f"{path} is not a readable zip archive ({error}); delete it and download it again"
        ) from error


@functools.lru_cache(maxsize=8)
def _load_images(path: str, md5: str, image_size: int) -> tuple[tuple[tuple[str, str, str], ...], Tensor]:
    """All drawings of an image archive: ``((alphabet, character, file), ...)`` and their uint8 ink.

    Cached per process; ``md5`` is part of the key so that only verified contents are reused.
    """
    with _open_zip(Path(path)) as archive:
        names = sorted(n for n in archive.namelist() if n.lower().endswith(".png"))
        keys = []
        for name in names:
            parts = PurePosixPath(name).parts
            if len(parts) < 3:
                raise RuntimeError(
                    f"unexpected entry {name!r} in {path}: expected <alphabet>/<character>/<file>.png"
                )
            keys.append((parts[-3], parts[-2], parts[-1]))
        blobs = [archive.read(n) for n in names]
    if not blobs:
        raise RuntimeError(f"{path} holds no PNG images; delete it and download it again")
    return tuple(keys), _decode_pngs(blobs, image_size, Path(path), names)


# --------------------------------------------------------------------------------------------
# The data set
# --------------------------------------------------------------------------------------------


def _names(argument: str, value: str | Iterable[str], what: str, valid: Sequence[str] = ()) -> tuple[str, ...]:
    """``value`` (one name, or any iterable of names) as a tuple of distinct names, in order.

    Anything else is a ``TypeError`` saying what ``argument`` takes, with the ``valid`` names.
    """
    choices = f"; valid names: {', '.join(map(repr, valid))}" if valid else ""
    wanted = f"{argument} must be {what} name or a sequence of names, got {value!r}"
    if isinstance(value, str):
        return (value,)
    try:
        names = tuple(value)
    except TypeError:
        raise TypeError(wanted + choices) from None
    odd = [name for name in names if not isinstance(name, str)]
    if odd:
        raise TypeError(f"{wanted}, which holds {odd[0]!r}, not a str{choices}")
    return tuple(dict.fromkeys(names))


class Omniglot(Dataset):
    """Omniglot characters as a classification data set: ``ds[i] -> (image, class_index)``.

    Args:
        root: data folder (see :func:`data_root`); None uses ``MTLCODE_DATA`` or the user cache.
        sets: which archives to load, by name: ``"background"``, ``"evaluation"``,
            ``"background_small1"``, ``"background_small2"`` (a single name may be given as a str).
            Archives are merged by (alphabet, character) name and, within a character, by file
            name, so overlapping archives (small1 and small2 share Greek and Latin) add no
            duplicate classes or images.
        image_size: side of the square images after resizing (Lanczos); 105 keeps the originals.
        download: fetch missing archives from the public repository.
        rotations: add the 90, 180 and 270-degree rotations of every character as new classes,
            as the MAML paper does. Rotation ``r`` (``torch.rot90`` with ``k=r``, counter-clockwise)
            of character ``c`` has class id ``c + r * num_characters`` and example index
            ``i + r * len(images)``; rotated images are made on the fly, never stored.
        alphabets: keep only these alphabets (names as in :attr:`alphabets` of the full load);
            class ids are then renumbered ``0..num_classes-1``.
        transform: applied to each image tensor in ``__getitem__``.

    Attributes:
        images: the unrotated images, float ``[N, 1, image_size, image_size]`` in ``[0, 1]``,
            strokes 1.0 and background 0.0; grouped by class, in class order.
        targets: class id of every example (LongTensor of ``len(self)``, rotations included).
        characters: ``"Alphabet/character"`` name of every class id (``".../rot90"`` etc. for the
            rotated classes).
        alphabet_of: alphabet name of every class id.
        alphabets: sorted names of the alphabets loaded.
        num_characters: number of distinct characters; ``num_classes`` is 4x that with rotations.
        drawings: file name (``"0108_01.png"``: character code and drawer) of every unrotated image.
        archives: the verified archive files the images were read from, one per set.

    Class ids follow the sorted (alphabet, character) names, so they do not depend on the order
    of ``sets``.
    """

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        sets: Sequence[str] | str = ("background",),
        image_size: int = 28,
        download: bool = True,
        *,
        rotations: bool = False,
        alphabets: Sequence[str] | str | None = None,
        transform: Callable[[Tensor], Any] | None = None,
    ) -> None:
        sets = _names("sets", sets, "an Omniglot set", valid=list(_SETS))
        valid = ", ".join(repr(s) for s in _SETS)
        if not sets:
            raise ValueError(f"sets must name at least one Omniglot archive; valid names: {valid}")
        unknown = [s for s in sets if s not in _SETS]
        if unknown:
            raise ValueError(f"unknown Omniglot set(s) {unknown}; valid names: {valid}")
        image_size = _count("image_size", image_size)
        # Checked before the slow loading; whether the names exist is known only after it.
        wanted = None if alphabets is None else _names("alphabets", alphabets, "an alphabet")

        self.root = data_root(root)
        self.sets = sets
        self.image_size = image_size
        self.rotations = bool(rotations)
        self.transform = transform

        # (alphabet, character) -> {file name: row in the concatenation of all loaded archives}
        drawings: dict[tuple[str, str], dict[str, int]] = {}
        parts, offset = [], 0
        self.archives: list[Path] = []
        for name in sets:
            archive = _SETS[name]
            path = _locate(archive, root, download)
            self.archives.append(path)
            keys, images = _load_images(str(path.resolve()), archive.md5, image_size)
            for row, (alphabet, character, file) in enumerate(keys):
                drawings.setdefault((alphabet, character), {}).setdefault(file, offset + row)
            parts.append(images)
            offset += len(images)

        available = sorted({alphabet for alphabet, _ in drawings})
        if wanted is not None:
            missing = sorted(set(wanted) - set(available))
            if missing:
                raise ValueError(
                    f"unknown alphabet(s) {missing} in sets {list(sets)}; available: {available}"
                )
            if not wanted:
                raise ValueError(f"alphabets is empty; choose from {available}")
            drawings = {key: files for key, files in drawings.items() if key[0] in set(wanted)}

        characters = sorted(drawings)
        rows, targets, files = [], [], []
        for class_id, key in enumerate(characters):
            for file in sorted(drawings[key]):
                rows.append(drawings[key][file])
                targets.append(class_id)
                files.append(file)
        everything = parts[0] if len(parts) == 1 else torch.cat(parts)
        self.images: Tensor = _to_float(everything[torch.tensor(rows, dtype=torch.long)])  # not the cache
        self.drawings: list[str] = files
        self.num_characters = len(characters)
        self.alphabets: list[str] = sorted({alphabet for alphabet, _ in characters})

        names = [f"{alphabet}/{character}" for alphabet, character in characters]
        alphabet_of = [alphabet for alphabet, _ in characters]
        base_targets = torch.tensor(targets, dtype=torch.long)
        if self.rotations:
            self.characters = names + [f"{n}/rot{90 * r}" for r in range(1, _ROTATIONS) for n in names]
            self.alphabet_of = alphabet_of * _ROTATIONS
            self.targets = torch.cat([base_targets + r * self.num_characters for r in range(_ROTATIONS)])
        else:
            self.characters = names
            self.alphabet_of = alphabet_of
            self.targets = base_targets

    @property
    def num_classes(self) -> int:
        """Number of classes: characters, times 4 with ``rotations``."""
        return len(self.characters)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        index = operator.index(index)
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for an Omniglot set of {len(self)} images")
        index %= len(self)
        rotation, base = divmod(index, len(self.images))
        image = self.images[base]
        if rotation:
            image = torch.rot90(image, k=rotation, dims=(1, 2))
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.targets[index])

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(sets={list(self.sets)}, image_size={self.image_size}, "
            f"rotations={self.rotations}: {len(self.alphabets)} alphabets, {self.num_characters} "
            f"characters, {self.num_classes} classes, {len(self)} images, root={str(self.root)!r})"
        )


def split_alphabets(
    alphabets: Sequence[str],
    fractions: Sequence[float] = (0.6, 0.2, 0.2),
    seed: int = 0,
) -> tuple[list[str], list[str], list[str]]:
    """Divide alphabets at random into (train, validation, test) parts, e.g. for ``Omniglot(alphabets=...)``.

    ``fractions`` are three non-negative shares summing to 1, or three ints summing to
    ``len(alphabets)`` giving the sizes outright. Every part with a positive share gets at least
    one alphabet (a ``ValueError`` says so when there are too few). The split depends only on the
    set of names and ``seed``, not on their order; each part comes back sorted.
    """
    seed = _count("seed", seed, least=None)
    names = sorted(alphabets) if not isinstance(alphabets, str) else [alphabets]
    if len(set(names)) != len(names):
        raise ValueError(f"alphabet names must be distinct, got {list(alphabets)}")
    if not names:
        raise ValueError("no alphabets to split")
    shares = list(fractions)
    if len(shares) != 3:
        raise ValueError(f"fractions needs three entries (train, val, test), got {fractions!r}")
    # numbers.Real / Integral also admit numpy scalars (and arrays' elements); bool stays out.
    if any(isinstance(s, bool) or not isinstance(s, numbers.Real) or s < 0 for s in shares):
        raise ValueError(f"fractions must be non-negative numbers, got {fractions!r}")
    n = len(names)
    if all(isinstance(s, numbers.Integral) for s in shares) and sum(shares) == n:
        counts = [int(s) for s in shares]
    elif abs(sum(shares) - 1.0) < 1e-6:
        wanted = [s * n for s in shares]
        counts = [int(w) for w in wanted]
        by_remainder = sorted(range(3), key=lambda i: wanted[i] - counts[i], reverse=True)
        for i in by_remainder[: n - sum(counts)]:
            counts[i] += 1
        needed = [i for i in range(3) if shares[i] > 0]
        if len(needed) > n:
            raise ValueError(
                f"cannot give each of the {len(needed)} parts with a positive share at least one "
                f"alphabet: there are only {n} ({names})"
            )
        for i in needed:
            if counts[i] == 0:
                counts[max(range(3), key=lambda j: counts[j])] -= 1
                counts[i] = 1
    else:
        raise ValueError(
            f"fractions must be three shares summing to 1 or three ints summing to {n} "
            f"(the number of alphabets), got {fractions!r}"
        )
    random.Random(seed).shuffle(names)
    train, val = counts[0], counts[0] + counts[1]
    return sorted(names[:train]), sorted(names[train:val]), sorted(names[val:])


# --------------------------------------------------------------------------------------------
# The one-shot benchmark of Lake et al.
# --------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=4)
def _load_runs(path: str, md5: str, image_size: int) -> tuple[tuple[Tensor, Tensor, Tensor], ...]:
    """``(support ink [20,1,S,S], query ink [20,1,S,S], query_y [20])`` of every run, in run order."""
    source = Path(path)
    with _open_zip(source) as archive:
        entries = archive.namelist()
        run_names = sorted({PurePosixPath(n).parts[0] for n in entries if n.endswith("class_labels.txt")})
        if not run_names:
            raise RuntimeError(f"{path} holds no run folders with a class_labels.txt")
        runs = []
        for run in run_names:
            training = sorted(n for n in entries if n.startswith(f"{run}/training/") and n.endswith(".png"))
            test = sorted(n for n in entries if n.startswith(f"{run}/test/") and n.endswith(".png"))
            class_of = {PurePosixPath(n).name: c for c, n in enumerate(training)}
            answer = {}
            for line in archive.read(f"{run}/class_labels.txt").decode().splitlines():
                if line.strip():
                    test_file, train_file = line.split()
                    answer[PurePosixPath(test_file).name] = class_of[PurePosixPath(train_file).name]
            missing = [n for n in test if PurePosixPath(n).name not in answer]
            if missing or len(training) != len(test):
                raise RuntimeError(f"{path}: run {run} has an incomplete answer key or unequal image counts")
            support = _decode_pngs([archive.read(n) for n in training], image_size, source, training)
            query = _decode_pngs([archive.read(n) for n in test], image_size, source, test)
            labels = torch.tensor([answer[PurePosixPath(n).name] for n in test], dtype=torch.long)
            runs.append((support, query, labels))
    return tuple(runs)


def lake_one_shot_runs(
    root: str | os.PathLike[str] | None = None, image_size: int = 28, download: bool = True
) -> list[TaskBatch]:
    """The 20 runs of the original 20-way, within-alphabet, one-shot benchmark (Lake et al., 2015).

    Each run is a one-task :class:`~mtlcode.tasks.TaskBatch`: ``support_x`` ``[1, 20, 1, S, S]``
    holds one drawing of each of 20 characters of one evaluation alphabet, labelled
    ``support_y = 0..19`` (in the order of the run's ``training/classNN.png`` files);
    ``query_x`` holds 20 other drawings of the same characters (``test/itemNN.png``) and
    ``query_y`` their classes according to the run's ``class_labels.txt``. Score = fraction of
    query images classified right; the paper reports 4.5% error for people.
    Images are processed as in :class:`Omniglot` (strokes 1.0, resized to ``image_size``).
    """
    image_size = _count("image_size", image_size)
    path = _locate(_RUNS, root, download)
    batches = []
    for support, query, labels in _load_runs(str(path.resolve()), _RUNS.md5, image_size):
        batches.append(
            TaskBatch(
                support_x=_to_float(support)[None],
                support_y=torch.arange(len(support))[None],
                query_x=_to_float(query)[None],
                query_y=labels.clone()[None],
            )
        )
    return batches
