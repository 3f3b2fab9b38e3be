"""Decoding the PNG drawings of a zip archive into ink tensors (strokes 255, paper 0), cached per process."""

from __future__ import annotations

import functools
import io
import zipfile
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

import numpy as np
import torch
from PIL import Image
from torch import Tensor


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

