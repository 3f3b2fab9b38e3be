"""The one meta-training loop of mtlcode: every learner, one process or many, resumable.

``meta_train`` owns the random generator that draws the tasks, and its checkpoints store that
generator's state next to the learner and the optimiser: a run that is stopped and resumed draws
exactly the tasks, and reaches exactly the parameters, of a run that never stopped.

Under ``torchrun`` each process takes a share of every meta-batch and the processes average their
meta-gradients; :class:`mtlcode.distributed.Context` holds the little the loop needs to know
about that. ``python -m mtlcode.train`` (:mod:`mtlcode.__main__`) is the command line.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from tqdm import tqdm

from mtlcode import distributed
from mtlcode.checkpoints import CheckpointError, load_checkpoint, remove_stale_temporaries, save_checkpoint
from mtlcode.learners.base import Learner, Stats

__all__ = ["History", "meta_train"]

TaskSource = Callable[[torch.Generator], Any]
History = dict[str, list[float]]
Callback = Callable[[int, History], None]


def _positive_int(name: str, value: Any, least: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ValueError(f"{name} must be an int >= {least}, got {value!r}")
    return value


def _trainable(learner: Learner) -> list[Tensor]:
    parameters = list(learner.parameters())
    if not parameters:
        raise ValueError(f"{type(learner.model).__name__} has no parameters: there is nothing to meta-train")
    trainable = [p for p in parameters if p.requires_grad]
    if not trainable:
        raise ValueError("every parameter of the model is frozen (requires_grad=False): unfreeze the ones to "
                         "meta-train, e.g. for p in model.parameters(): p.requires_grad_(True)")
    return trainable


def _check_structure(state: dict[str, Any], checkpoint: Path, my_shards: range) -> None:
    """The parts a checkpoint of :func:`meta_train` holds, of the right kinds; else a CheckpointError naming it."""
    wrong = []
    step = state.get("step")
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        wrong.append("'step' (a count of steps)")
    history = state.get("history")
    if not (isinstance(history, dict) and all(isinstance(v, list) for v in history.values())):
        wrong.append("'history' (a dict of lists)")
    for key in ("model", "optimizer"):
        if not isinstance(state.get(key), dict):
            wrong.append(f"'{key}' (a state dict)")
    generators = state.get("generators", [state["generator"]] if "generator" in state else None)
    if not (isinstance(generators, list) and len(generators) >= my_shards.stop
            and all(isinstance(g, Tensor) and g.dtype == torch.uint8 for g in generators)):
        wrong.append("'generators' (the states of the task samplers)")
    if wrong:
        raise CheckpointError(f"{checkpoint} is not a checkpoint of meta_train, or a damaged one: its "
                              f"{', '.join(wrong)} missing or of the wrong kind; move it away to start afresh")


def _restore(learner: Learner, optimizer: torch.optim.Optimizer, generators: list[torch.Generator],
             my_shards: range, shards: int, state: dict[str, Any], checkpoint: Path) -> tuple[History, int]:
    saved_kind, kind = state.get("learner"), _learner_kind(learner)
    if saved_kind is not None and saved_kind != kind:
        raise CheckpointError(f"{checkpoint} holds a {saved_kind} state: it cannot be resumed by {kind}; load it "
                              f"with {saved_kind}, or save this run's checkpoints elsewhere")
    saved_shards = state.get("shards", 1)
    if saved_shards != shards:
        raise ValueError(f"{checkpoint} was written by a run of {saved_shards} shard(s), not {shards}: "
                         f"resume with shards={saved_shards} (under torchrun, a number of processes "
                         f"that divides {saved_shards} and shards={saved_shards})")
    _check_structure(state, checkpoint, my_shards)
    try:
        learner.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
    except (KeyError, RuntimeError, ValueError) as error:  # another learner's or network's state
        raise CheckpointError(f"{checkpoint} cannot be resumed by {type(learner).__name__} (was it written by "
                              f"another learner or network?): {error}") from error
    generator_states = state["generators"] if "generators" in state else [state["generator"]]
    for generator, s in zip(generators, my_shards):
        generator.set_state(generator_states[s])
    return state["history"], state["step"]


def _learner_kind(learner: Learner) -> str:
    """The learner's class, and whether it is first-order: what a checkpoint must be resumed by
    (MAML's and first-order MAML's states look alike, and so do MAML's and ANIL's)."""
    first_order = getattr(learner, "first_order", False)
    return type(learner).__name__ + (" (first-order)" if first_order else "")


def _step_means(stats: list[Stats], context: distributed.Context, trainable: list[Tensor]) -> dict[str, float]:
    """The mean of every per-task statistic over the whole meta-batch (all shards, all ranks)."""
    merged = {key: torch.cat([s[key] for s in stats]) for key in stats[0]}
    if context.world_size == 1:
        return {key: values.float().mean().item() for key, values in merged.items()}
    sums = torch.stack([values.float().sum() for values in merged.values()])
    tasks, totals = context.average_gradients(trainable, len(merged["loss"]), sums)
    return dict(zip(merged, (totals / tasks).tolist()))


def meta_train(
    learner: Learner,
    sample_tasks: TaskSource,
    iterations: int,
    meta_lr: float = 1e-3,
    *,
    lr_halving_every: int | None = None,
    seed: int = 0,
    val_tasks: Any = None,
    val_every: int = 100,
    checkpoint: str | os.PathLike[str] | None = None,
    checkpoint_every: int = 100,
    device: torch.device | str | None = None,
    progress: bool = True,
    shards: int | None = None,
    callback: Callback | None = None,
    settings: dict[str, Any] | None = None,
) -> History:
    """Meta-train ``learner`` with Adam for ``iterations`` outer steps; returns the history.

    Args:
        learner: any :class:`~mtlcode.learners.base.Learner` (``MAML``, the meta-RL learner, ...).
        sample_tasks: ``generator -> batch``, one meta-batch per call, e.g.
            ``lambda g: Sinusoid().sample(25, 10, 10, generator=g)``; with ``shards``, one
            shard of the meta-batch per call.
        iterations: the total number of outer steps; a resumed run continues up to it. A
            checkpoint already past it is left as it is (never rewritten backwards).
        lr_halving_every: halve Adam's learning rate every this many steps (step ``s`` uses
            ``meta_lr * 0.5 ** (s // lr_halving_every)``), as Snell et al. (2017) train
            prototypical networks; default: a constant ``meta_lr``. The rate follows from the
            step alone, so a resumed run keeps the schedule; the history logs it as ``meta_lr``.
        seed: seeds the generator passed to ``sample_tasks``.
        val_tasks: a fixed batch scored every ``val_every`` steps (after adaptation).
        checkpoint: a file to resume from when it exists and to save to every
            ``checkpoint_every`` steps and at the end. It records which learner wrote it (a
            checkpoint of another learner is refused); a resumed run keeps Adam's moments and
            steps at the ``meta_lr`` given now.
        shards: draw each meta-batch as this many shards, shard ``s`` from its own generator
            seeded by :func:`mtlcode.distributed.shard_seed` (shard 0 by ``seed`` itself).
            Default: 1, or the world size when a ``torch.distributed`` process group is
            initialised. The tasks depend on the number of shards only, so one process with
            ``shards=N`` reproduces a run of N processes (up to float rounding).
        callback: ``callback(step, history)`` after every step, once its checkpoint (if due) is
            written; an exception raised there stops the run as a crash would.
        settings: what defines the run (plain values: numbers, strings, lists), saved in the
            checkpoint as ``"settings"``, so that whoever resumes it can compare them without
            any other file (``python -m mtlcode`` does); ``meta_train`` does not compare them.

    The history holds ``step``, ``loss`` and ``metric`` (query accuracy for classification,
    MSE for regression, after adaptation; learners may add statistics of their own) per step,
    and ``val_step``, ``val_loss``, ``val_metric`` per validation. A loss that is NaN or
    infinite stops training with an error naming the step.

    Under ``torch.distributed`` (see :mod:`mtlcode.distributed`) each of the W ranks takes
    ``shards / W`` consecutive shards, back-propagates their mean loss, and the ranks average
    the meta-gradient with one all-reduce before each Adam step; the logged statistics are
    those of the whole meta-batch. Rank 0 alone shows the progress bar, validates (only its
    history has ``val_*`` entries) and writes the checkpoint, which holds the generator of every
    shard; every rank resumes from rank 0's copy, with any number of processes that divides
    the shard count.
    """
    if not isinstance(learner, Learner):
        raise TypeError(f"meta_train needs a mtlcode learner (e.g. mtlcode.MAML), got {type(learner).__name__}")
    _positive_int("iterations", iterations, least=0)
    _positive_int("checkpoint_every", checkpoint_every)
    _positive_int("val_every", val_every)
    if lr_halving_every is not None:
        _positive_int("lr_halving_every", lr_halving_every)
    context = distributed.Context.current()
    shards = _positive_int("shards", context.world_size if shards is None else shards)
    my_shards = context.shards(shards)
    if device is not None:
        learner.to(device)
    trainable = _trainable(learner)
    device = trainable[0].device
    optimizer = torch.optim.Adam(learner.parameters(), lr=meta_lr)
    generators = [torch.Generator().manual_seed(distributed.shard_seed(seed, s)) for s in my_shards]
    history: History = {key: [] for key in ("step", "loss", "metric", "val_step", "val_loss", "val_metric")}
    start = 0

    # Rank 0 reads the checkpoint and sends it to the others: every rank resumes from the same
    # state, and machines without a shared file system need no copy of the file.
    state = None
    if checkpoint is not None:
        checkpoint = Path(checkpoint)
        if context.is_main:
            remove_stale_temporaries(checkpoint)  # left by a run killed while saving
        state = context.broadcast(load_checkpoint(checkpoint) if context.is_main and checkpoint.exists() else None)
    if state is not None:
        history, start = _restore(learner, optimizer, generators, my_shards, shards, state, checkpoint)
        for group in optimizer.param_groups:  # the saved optimizer state holds the old rate:
            group["lr"] = meta_lr              # a resumed run steps at the meta_lr it was given
    context.sync_parameters(learner.model)
    if start >= iterations:
        if start > iterations:
            warnings.warn(f"{checkpoint} is at step {start}, past iterations={iterations}: nothing to train, and "
                          "the checkpoint is left as it is", stacklevel=2)
        return history

    def save(step: int) -> None:
        if checkpoint is None:
            return
        # Every rank's generators go into rank 0's file, in shard order, so that a resumed run
        # draws on each rank the tasks that rank would have drawn.
        states = [s for part in context.gather([g.get_state() for g in generators]) for s in part]
        if context.is_main:
            save_checkpoint(checkpoint, {"model": learner.state_dict(), "optimizer": optimizer.state_dict(),
                                         "learner": _learner_kind(learner),
                                         **({"settings": settings} if settings is not None else {}),
                                         "generators": states, "shards": shards, "history": history,
                                         "step": step})
        context.barrier()  # nobody returns (and maybe reads the file) before it is written

    if val_tasks is not None:
        val_tasks = val_tasks.to(device)
    bar = tqdm(range(start, iterations), initial=start, total=iterations, desc="meta-train",
               disable=not progress or not context.is_main)
    for step in bar:
        batches = [sample_tasks(generator).to(device) for generator in generators]
        optimizer.zero_grad()
        stats = [learner.meta_backward(batch) for batch in batches]
        if len(batches) > 1:  # each shard added the gradient of its own mean: average them
            for p in trainable:
                if p.grad is not None:
                    p.grad.div_(len(batches))
        means = _step_means(stats, context, trainable)
        # After the all-reduce every rank sees the same loss, so all stop together.
        if not math.isfinite(means["loss"]):
            raise FloatingPointError(
                f"meta-loss became {means['loss']} at step {step}; lower meta_lr or inner_lr, or check the data"
            )
        if lr_halving_every is not None:
            lr = meta_lr * 0.5 ** (step // lr_halving_every)
            for group in optimizer.param_groups:
                group["lr"] = lr
            history.setdefault("meta_lr", []).append(lr)
        optimizer.step()

        history["step"].append(step + 1)
        for key, value in means.items():
            history.setdefault(key, []).append(value)
        if val_tasks is not None and context.is_main and ((step + 1) % val_every == 0 or step + 1 == iterations):
            val_losses, val_metrics = learner.evaluate_batch(val_tasks)
            history["val_step"].append(step + 1)
            history["val_loss"].append(val_losses.mean().item())
            history["val_metric"].append(val_metrics.mean().item())
        bar.set_postfix(loss=f"{means['loss']:.4f}", metric=f"{means['metric']:.3f}", refresh=False)
        if (step + 1) % checkpoint_every == 0 or step + 1 == iterations:
            save(step + 1)
        if callback is not None:
            callback(step + 1, history)
    return history
