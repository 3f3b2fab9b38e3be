"""Meta-training with progress bars, validation and resumable checkpoints; evaluation with
confidence intervals.

``meta_train`` owns the random generator that draws the tasks, and its checkpoints store that
generator's state next to the model and the optimiser: a run that is stopped and resumed draws
exactly the tasks, and reaches exactly the parameters, of a run that never stopped.

``meta_train`` also runs under ``torch.distributed``: launched by ``torchrun``, each process takes
a share of every meta-batch and the processes average their meta-gradients (the plumbing is in
:mod:`mtlcode.distributed`). ``python -m mtlcode.train`` is the command line for both::

    python -m mtlcode.train --dataset sinusoid --meta-batch 32 --iterations 2000 --out runs/sine
    torchrun --standalone --nproc_per_node=4 -m mtlcode.train --dataset omniglot --out runs/omniglot
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor
from tqdm import tqdm

from mtlcode import distributed
from mtlcode.maml import MAML
from mtlcode.tasks import TaskBatch

TaskSource = Callable[[torch.Generator], TaskBatch]
History = dict[str, list[float]]


# -- checkpoints -------------------------------------------------------------------------------

def save_checkpoint(path: str | os.PathLike[str], state: dict[str, Any]) -> None:
    """Write ``state`` with ``torch.save`` atomically: to a temporary file, then renamed.

    A crash mid-write leaves the previous checkpoint intact, never a truncated one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
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
    """Read a checkpoint with ``weights_only=True``: tensors and plain containers only, no code."""
    return torch.load(path, map_location="cpu", weights_only=True)


# -- metrics -----------------------------------------------------------------------------------

def _is_classification(predictions: Tensor, targets: Tensor) -> bool:
    return not torch.is_floating_point(targets) and predictions.dim() == targets.dim() + 1


def task_metric(predictions: Tensor, targets: Tensor) -> Tensor:
    """Per-task accuracy (classification) or mean squared error (regression).

    Both tensors are shaped ``[tasks, queries, ...]``; the result is ``[tasks]``.
    """
    if _is_classification(predictions, targets):
        return (predictions.argmax(-1) == targets).float().mean(dim=1)
    return ((predictions - targets) ** 2).flatten(1).mean(dim=1)


# -- meta-training -----------------------------------------------------------------------------

def _validate(maml: MAML, tasks: TaskBatch) -> tuple[float, float]:
    with torch.no_grad():
        losses, predictions = maml.task_losses(tasks)
    return losses.mean().item(), task_metric(predictions, tasks.query_y).mean().item()


def meta_train(
    maml: MAML,
    sample_tasks: TaskSource,
    iterations: int,
    meta_lr: float = 1e-3,
    *,
    seed: int = 0,
    val_tasks: TaskBatch | None = None,
    val_every: int = 100,
    checkpoint: str | os.PathLike[str] | None = None,
    checkpoint_every: int = 100,
    device: torch.device | str | None = None,
    progress: bool = True,
    shards: int | None = None,
    stop_after: int | None = None,
) -> History:
    """Meta-train ``maml.model`` with Adam for ``iterations`` outer steps; returns the history.

    Args:
        sample_tasks: ``generator -> TaskBatch``, one meta-batch per call, e.g.
            ``lambda g: Sinusoid().sample(25, 10, 10, generator=g)``; with ``shards``, one
            shard of the meta-batch per call.
        iterations: the total number of outer steps; a resumed run continues up to it.
        seed: seeds the generator passed to ``sample_tasks``.
        val_tasks: a fixed batch scored every ``val_every`` steps (after adaptation).
        checkpoint: a file to resume from when it exists and to save to every
            ``checkpoint_every`` steps and at the end.
        shards: draw each meta-batch as this many shards, shard ``s`` from its own generator
            seeded by :func:`mtlcode.distributed.shard_seed` (shard 0 by ``seed`` itself).
            Default: 1, or the world size when a ``torch.distributed`` process group is
            initialised. The tasks depend on the number of shards only, so one process with
            ``shards=N`` reproduces a run of N processes (up to float rounding).
        stop_after: leave after this many steps without saving, as a killed run would (the
            run then resumes from its last checkpoint); for testing resumption.

    The history holds ``step``, ``loss`` and ``metric`` (query accuracy for classification,
    MSE for regression, after adaptation) per step, and ``val_step``, ``val_loss``,
    ``val_metric`` per validation. A loss that is NaN or infinite stops training with an error
    naming the step.

    Under ``torch.distributed`` (see :mod:`mtlcode.distributed`) each of the W ranks takes
    ``shards / W`` consecutive shards, back-propagates their mean loss, and the ranks average
    the meta-gradient with one all-reduce before each Adam step; the logged loss and metric are
    those of the whole meta-batch. Rank 0 alone shows the progress bar, validates (only its
    history has ``val_*`` entries) and writes the checkpoint, which holds the generator of every
    shard; every rank resumes from rank 0's copy, with any number of processes that divides
    the shard count.
    """
    if not isinstance(iterations, int) or iterations < 0:
        raise ValueError(f"iterations must be an int >= 0, got {iterations!r}")
    rank, world = distributed.rank(), distributed.world_size()
    shards = world if shards is None else shards
    if not isinstance(shards, int) or shards < 1:
        raise ValueError(f"shards must be an int >= 1, got {shards!r}")
    my_shards = distributed.shard_range(shards, rank, world)
    if device is not None:
        maml.model.to(device)
    device = next(maml.model.parameters()).device
    optimizer = torch.optim.Adam(maml.model.parameters(), lr=meta_lr)
    generators = [torch.Generator().manual_seed(distributed.shard_seed(seed, s)) for s in my_shards]
    history: History = {key: [] for key in ("step", "loss", "metric", "val_step", "val_loss", "val_metric")}
    start = 0

    # Rank 0 reads the checkpoint and sends it to the others: every rank resumes from the same
    # state, and machines without a shared file system need no copy of the file.
    state = None
    if checkpoint is not None:
        state = distributed.broadcast_object(
            load_checkpoint(checkpoint) if rank == 0 and Path(checkpoint).exists() else None)
    if state is not None:
        saved_shards = state.get("shards", 1)
        if saved_shards != shards:
            raise ValueError(f"{checkpoint} was written by a run of {saved_shards} shard(s), not {shards}: "
                             f"resume with shards={saved_shards} (under torchrun, a number of processes "
                             f"that divides {saved_shards} and shards={saved_shards})")
        maml.model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        generator_states = state["generators"] if "generators" in state else [state["generator"]]
        for generator, s in zip(generators, my_shards):
            generator.set_state(generator_states[s])
        history, start = state["history"], state["step"]
    distributed.broadcast_parameters(maml.model)
    trainable = [p for p in maml.model.parameters() if p.requires_grad]

    def save(step: int) -> None:
        if checkpoint is None:
            return
        # Every rank's generators go into rank 0's file, in shard order, so that a resumed run
        # draws on each rank the tasks that rank would have drawn.
        states = [s for part in distributed.all_gather_object([g.get_state() for g in generators]) for s in part]
        if rank == 0:
            save_checkpoint(checkpoint, {"model": maml.model.state_dict(), "optimizer": optimizer.state_dict(),
                                         "generators": states, "shards": shards, "history": history,
                                         "step": step})
        distributed.barrier()  # nobody returns (and maybe reads the file) before it is written

    if val_tasks is not None:
        val_tasks = val_tasks.to(device)
    bar = tqdm(range(start, iterations), initial=start, total=iterations, desc="meta-train",
               disable=not progress or rank != 0)
    for step in bar:
        if stop_after is not None and step >= stop_after:
            bar.close()
            return history
        batches = [sample_tasks(generator).to(device) for generator in generators]
        outputs = [maml.task_losses(batch) for batch in batches]
        losses = torch.cat([task_loss for task_loss, _ in outputs])
        metrics = torch.cat([task_metric(predictions.detach(), batch.query_y)
                             for (_, predictions), batch in zip(outputs, batches)])
        loss = losses.mean()
        optimizer.zero_grad()
        loss.backward()
        if world > 1:
            tasks, totals = distributed.average_gradients(trainable, len(losses),
                                                          torch.stack([losses.detach().sum(), metrics.sum()]))
            loss_value, metric_value = (totals / tasks).tolist()
        else:
            loss_value, metric_value = loss.item(), metrics.mean().item()
        # After the all-reduce every rank sees the same loss, so all stop together.
        if not math.isfinite(loss_value):
            raise FloatingPointError(
                f"meta-loss became {loss_value} at step {step}; lower meta_lr or inner_lr, or check the data"
            )
        optimizer.step()

        history["step"].append(step + 1)
        history["loss"].append(loss_value)
        history["metric"].append(metric_value)
        if (val_tasks is not None and rank == 0
                and ((step + 1) % val_every == 0 or step + 1 == iterations)):
            val_loss, val_metric = _validate(maml, val_tasks)
            history["val_step"].append(step + 1)
            history["val_loss"].append(val_loss)
            history["val_metric"].append(val_metric)
        bar.set_postfix(loss=f"{history['loss'][-1]:.4f}", metric=f"{history['metric'][-1]:.3f}", refresh=False)
        if (step + 1) % checkpoint_every == 0:
            save(step + 1)
    save(iterations)
    return history


# -- evaluation --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Evaluation:
    """Mean of a per-task metric with the half-width of its 95% confidence interval."""

    mean: float
    ci95: float
    values: list[float]

    def __str__(self) -> str:
        return f"{self.mean:.4f} ± {self.ci95:.4f} (95% CI, {len(self.values)} tasks)"


Method = MAML | Callable[[Tensor, Tensor, Tensor], Tensor]


def _task_batches(tasks: TaskBatch | Iterable[TaskBatch] | TaskSource, num_tasks: int | None,
                  seed: int) -> Iterable[TaskBatch]:
    if isinstance(tasks, TaskBatch):
        yield tasks
    elif callable(tasks):
        if num_tasks is None:
            raise ValueError("num_tasks is needed when tasks is a sampling function")
        generator = torch.Generator().manual_seed(seed)
        drawn = 0
        while drawn < num_tasks:
            batch = tasks(generator)
            batch = batch[: num_tasks - drawn]
            drawn += len(batch)
            yield batch
    else:
        yield from tasks


def evaluate(
    method: Method,
    tasks: TaskBatch | Iterable[TaskBatch] | TaskSource,
    num_tasks: int | None = None,
    steps: int | None = None,
    seed: int = 0,
    device: torch.device | str | None = None,
    progress: bool = False,
) -> Evaluation:
    """Score ``method`` on test tasks: mean and 95% confidence interval over tasks.

    ``method`` is a :class:`MAML` (adapted with ``steps`` inner steps, default its own) or any
    ``adapt_and_predict(support_x, support_y, query_x) -> predictions`` function for one task,
    such as a fine-tuning baseline. ``tasks`` is a batch, an iterable of batches, or a sampling
    function ``generator -> TaskBatch`` called (with a generator seeded by ``seed``) until
    ``num_tasks`` tasks are drawn. The metric is query accuracy for classification and MSE for
    regression.
    """
    values: list[Tensor] = []
    for batch in tqdm(_task_batches(tasks, num_tasks, seed), desc="evaluate", disable=not progress):
        if device is not None:
            batch = batch.to(device)
        if isinstance(method, MAML):
            with torch.no_grad():
                _, predictions = method.task_losses(batch, steps=steps)
        else:
            predictions = torch.stack([method(t.support_x, t.support_y, t.query_x).detach() for t in batch])
        values.append(task_metric(predictions, batch.query_y).cpu())
    if not values:
        raise ValueError("no tasks to evaluate on")
    scores = torch.cat(values).double()
    n = len(scores)
    half_width = 1.96 * scores.std().item() / math.sqrt(n) if n > 1 else float("nan")
    return Evaluation(scores.mean().item(), half_width, scores.tolist())


# -- command line: python -m mtlcode.train, alone or under torchrun ------------------------------

def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m mtlcode.train",
        description="Meta-train MAML on sinusoid regression or Omniglot. Run it as it is for one process, or "
                    "under `torchrun --nproc_per_node=N -m mtlcode.train ...` to split every meta-batch across "
                    "N processes (gloo on CPUs, NCCL on GPUs). Running the same command again resumes from "
                    "OUT/checkpoint.pt.",
    )
    p.add_argument("--dataset", choices=["sinusoid", "omniglot"], default="sinusoid")
    p.add_argument("--ways", type=int, default=5, help="classes per task (omniglot)")
    p.add_argument("--shots", type=int, default=None, help="support examples per class (default: sinusoid 10, "
                   "omniglot 1)")
    p.add_argument("--queries", type=int, default=None, help="query examples per class (default: 10, omniglot 15)")
    p.add_argument("--meta-batch", type=int, default=None,
                   help="tasks per meta-batch over all processes (default: sinusoid 25, omniglot 32)")
    p.add_argument("--shards", type=int, default=None,
                   help="draw each meta-batch as this many shards, each from its own generator (default: the "
                        "number of processes); a one-process run with --shards N repeats an N-process run")
    p.add_argument("--iterations", type=int, default=1000, help="outer (meta) steps")
    p.add_argument("--meta-lr", type=float, default=1e-3)
    p.add_argument("--inner-lr", type=float, default=None, help="default: sinusoid 0.01, omniglot 0.4")
    p.add_argument("--inner-steps", type=int, default=1)
    p.add_argument("--first-order", action="store_true", help="first-order MAML")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True,
                   help="output folder: checkpoint.pt, config.json, history.json")
    p.add_argument("--checkpoint-every", type=int, default=100)
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda:LOCAL_RANK when there is a GPU)")
    p.add_argument("--omniglot-sets", nargs="+", default=["background"],
                   help="Omniglot archives to meta-train on (see mtlcode.data.Omniglot)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("--stop-after", type=int, default=None,
                   help="debugging: stop after this many steps without saving, as if the job were killed; "
                        "the same command without it then resumes from the last checkpoint")
    return p


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    os.replace(tmp, path)  # atomic, like the checkpoints


def main(argv: list[str] | None = None) -> History:
    """The ``python -m mtlcode.train`` command (``--help`` lists the options); returns the history."""
    from mtlcode.models import MLP, Conv4
    from mtlcode.tasks import NWayKShot, Sinusoid
    from mtlcode.utils import seed_everything

    parser = _parser()
    args = parser.parse_args(argv)
    defaults = {"sinusoid": dict(shots=10, queries=10, meta_batch=25, inner_lr=0.01),
                "omniglot": dict(shots=1, queries=15, meta_batch=32, inner_lr=0.4)}[args.dataset]
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    # Check the split before joining the process group, so that a bad command fails at once
    # (on every rank, with the same message) instead of after the rendezvous.
    world = distributed.env_world_size()
    shards = world if args.shards is None else args.shards
    try:
        distributed.check_split(args.meta_batch, shards, world)
        for name in ("iterations", "checkpoint_every", "inner_steps"):
            if getattr(args, name) < (1 if name == "checkpoint_every" else 0):
                raise ValueError(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    except ValueError as error:
        if distributed.local_rank() != 0:
            sys.exit(2)  # one copy of the message per machine is enough
        parser.error(str(error))

    device = distributed.init(args.device)
    try:
        seed_everything(args.seed)  # the same seed on every rank: the same initial model
        per_shard = args.meta_batch // shards
        if args.dataset == "sinusoid":
            family = Sinusoid()
            model, loss = MLP([1, 40, 40, 1]), F.mse_loss

            def sample_tasks(generator: torch.Generator) -> TaskBatch:
                return family.sample(per_shard, args.shots, args.queries, generator=generator)
        else:
            from mtlcode.data import Omniglot

            with distributed.local_main_first():  # one download per machine, not one per process
                dataset = Omniglot(sets=args.omniglot_sets)
            family = NWayKShot(dataset, args.ways, args.shots, args.queries)
            model, loss = Conv4(ways=args.ways), F.cross_entropy

            def sample_tasks(generator: torch.Generator) -> TaskBatch:
                return family.sample(per_shard, generator=generator)

        maml = MAML(model, args.inner_lr, args.inner_steps, args.first_order, loss)
        if distributed.is_main_process():
            args.out.mkdir(parents=True, exist_ok=True)
            _write_json(args.out / "config.json", {**{k: str(v) if isinstance(v, Path) else v
                                                      for k, v in vars(args).items()},
                                                   "shards": shards, "world_size": distributed.world_size(),
                                                   "backend": dist.get_backend() if distributed.is_distributed()
                                                   else None, "device": str(device)})
        history = meta_train(maml, sample_tasks, args.iterations, args.meta_lr, seed=args.seed,
                             checkpoint=args.out / "checkpoint.pt", checkpoint_every=args.checkpoint_every,
                             device=device, progress=not args.no_progress, shards=shards,
                             stop_after=args.stop_after)
        if distributed.is_main_process():
            done = history["step"][-1] if history["step"] else 0
            if done < args.iterations:
                print(f"stopped after step {done} (--stop-after) without saving; run the command again without "
                      f"--stop-after to resume from {args.out / 'checkpoint.pt'}")
            else:
                _write_json(args.out / "history.json", history)
                print(f"step {done}: meta-loss {history['loss'][-1]:.4f}, metric {history['metric'][-1]:.4f} "
                      f"({distributed.world_size()} process(es), {shards} shard(s)); "
                      f"checkpoint in {args.out / 'checkpoint.pt'}")
        return history
    finally:
        distributed.cleanup()


if __name__ == "__main__":
    main()
