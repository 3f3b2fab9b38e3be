"""The 20 runs of Lake et al.'s original 20-way one-shot benchmark, as one-task batches."""

from __future__ import annotations

import functools
import os
from pathlib import Path, PurePosixPath
from typing import Any

import torch
from torch import Tensor

from mtlcode.data.archives import _RUNS, _locate
from mtlcode.data.images import _decode_pngs, _open_zip, _to_float
from mtlcode.tasks import TaskBatch, _count


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


def lake_style_runs(dataset: Any, count: int, seed: int = 0, ways: int = 20) -> list[TaskBatch]:
    """``count`` runs built the way Lake et al. built theirs, from the alphabets of ``dataset``.

    Each run takes one alphabet (in turn, over the alphabets with at least ``ways`` characters),
    ``ways`` of its characters and two of its drawers, all at random: the support set is the first
    drawer's drawing of each character (``support_y = 0..ways-1``), the query set the second
    drawer's drawings in a random order. This is how validation runs are made from alphabets held
    out of training, so that settings for Lake's 20 test runs are never chosen on those runs.

    ``dataset`` is an :class:`~mtlcode.data.Omniglot` without rotations (its ``drawings`` name the
    drawer of every image: ``"0108_07.png"`` is drawer 7). Same ``seed``, same runs.
    """
    count, ways = _count("count", count), _count("ways", ways, least=2)
    if getattr(dataset, "rotations", False):
        raise ValueError("lake_style_runs needs an Omniglot without rotations (each image one drawing)")
    by_alphabet: dict[str, dict[int, dict[str, int]]] = {}  # alphabet -> class -> drawer -> image
    for index, (target, file) in enumerate(zip(dataset.targets.tolist(), dataset.drawings)):
        drawer = PurePosixPath(file).stem.rsplit("_", 1)[-1]
        by_alphabet.setdefault(dataset.alphabet_of[target], {}).setdefault(target, {})[drawer] = index
    usable = sorted(a for a, classes in by_alphabet.items() if len(classes) >= ways)
    if not usable:
        sizes = {a: len(c) for a, c in sorted(by_alphabet.items())}
        raise ValueError(f"no alphabet has {ways} characters for a {ways}-way run; characters per alphabet: {sizes}")
    generator = torch.Generator().manual_seed(seed)
    runs = []
    for r in range(count):
        classes = by_alphabet[usable[r % len(usable)]]
        ids = sorted(classes)
        chosen = [ids[i] for i in torch.randperm(len(ids), generator=generator)[:ways].tolist()]
        drawers = sorted(set.intersection(*(set(classes[c]) for c in chosen)))
        if len(drawers) < 2:
            raise ValueError(f"fewer than two drawers drew all of {chosen} in {usable[r % len(usable)]}")
        first, second = (drawers[i] for i in torch.randperm(len(drawers), generator=generator)[:2].tolist())
        order = torch.randperm(ways, generator=generator)
        support = torch.stack([dataset.images[classes[c][first]] for c in chosen])
        query = torch.stack([dataset.images[classes[chosen[i]][second]] for i in order.tolist()])
        runs.append(TaskBatch(support_x=support[None], support_y=torch.arange(ways)[None],
                              query_x=query[None], query_y=order[None].clone()))
    return runs
