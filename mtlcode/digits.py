"""Handwritten digits drawn like Omniglot: a cross-domain few-shot test set that needs no download.

scikit-learn ships the UCI optical digits (``sklearn.datasets.load_digits``): 1,797 images of
8x8 pixels, 10 classes (0-9, about 180 each), with values 0..16 where 16 is ink. A model
meta-trained on Omniglot's alphabets has never seen digits, so few-shot tasks on them measure
how far its features transfer to another domain (cf. Chen et al., 2019, section 4.4).

:class:`Digits` makes them look like :class:`mtlcode.data.Omniglot`'s images: float
``[1, S, S]`` in ``[0, 1]`` with strokes 1.0 and paper 0.0. The digits already store ink as the
high value, so dividing by 16 gives Omniglot's polarity (the Omniglot PNGs, black strokes on
white, are the ones that must be inverted). A digit fills its 8x8 frame, while an Omniglot
character sits inside a margin, so each digit is upsampled (bilinear) into a box of
``S - 2 * margin`` pixels and padded with paper: 20x20 in 28x28 by default, the layout MNIST uses.
The strokes stay thicker than Omniglot's pen strokes; that is part of the domain shift.
"""

from __future__ import annotations

import functools
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

__all__ = ["Digits", "load_digit_images"]

_INK_MAX = 16.0  # load_digits counts ink in 0..16 (the number of set pixels in a 4x4 block)


@functools.lru_cache(maxsize=1)
def _sklearn_digits() -> tuple[Any, Any]:
    """``(images [1797, 8, 8], targets [1797])`` from scikit-learn, or an error saying how to get it."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as error:
        raise ImportError("mtlcode.digits needs scikit-learn (its digits are bundled with it, no download): "
                          "pip install scikit-learn, or pip install 'mtlcode[test]'") from error
    digits = load_digits()
    return digits.images, digits.target


def load_digit_images(image_size: int = 28, margin: int | None = None) -> tuple[Tensor, Tensor]:
    """All 1,797 digits as ``(images [N, 1, S, S] float in [0, 1], targets [N] long)``.

    ``margin`` is the paper border on each side (default ``image_size // 7``: 4 pixels at 28).
    """
    if not isinstance(image_size, int) or image_size < 8:
        raise ValueError(f"image_size must be an int >= 8, got {image_size!r}")
    margin = image_size // 7 if margin is None else margin
    box = image_size - 2 * margin
    if not isinstance(margin, int) or margin < 0 or box < 1:
        raise ValueError(f"margin must be an int with 0 <= 2 * margin < image_size, got {margin!r}")
    images, targets = _sklearn_digits()
    ink = torch.as_tensor(images, dtype=torch.float32).unsqueeze(1) / _INK_MAX
    if box != ink.shape[-1]:
        ink = F.interpolate(ink, size=(box, box), mode="bilinear", align_corners=False)
    ink = F.pad(ink, (margin, margin, margin, margin)).clamp_(0.0, 1.0)
    return ink.contiguous(), torch.as_tensor(targets, dtype=torch.long)


class Digits(Dataset):
    """scikit-learn's digits as a labelled data set of Omniglot-like images: ``ds[i] -> (image, digit)``.

    Attributes:
        images: float ``[1797, 1, image_size, image_size]``, strokes 1.0, paper 0.0.
        targets: the digit of every image (LongTensor), as :class:`mtlcode.tasks.NWayKShot` reads it.
        num_classes: 10.
    """

    def __init__(self, image_size: int = 28, margin: int | None = None) -> None:
        self.image_size = image_size
        self.images, self.targets = load_digit_images(image_size, margin)
        self.num_classes = int(self.targets.max()) + 1

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        return self.images[index], int(self.targets[index])

    def __repr__(self) -> str:
        return f"Digits(image_size={self.image_size}: {len(self)} images, {self.num_classes} classes)"
