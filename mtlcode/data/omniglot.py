"""The Omniglot data set, from a choice of its archives, and random splits of its alphabets."""

from __future__ import annotations

import numbers
import operator
import os
import random
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from mtlcode.data.archives import _SETS, _locate, data_root
from mtlcode.data.images import _load_images, _to_float
from mtlcode.tasks import _count

_ROTATIONS = 4  # 0, 90, 180 and 270 degrees


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
