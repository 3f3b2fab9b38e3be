"""Meta-training on several processes, GPUs or machines with ``torch.distributed``.

The tasks of a meta-batch are independent of one another, which makes meta-training a natural
fit for data parallelism. Each process (a *rank*) adapts to its own share of the tasks and
back-propagates its own part of the meta-loss; one all-reduce then gives every rank the average
meta-gradient, and every rank takes the same Adam step. The ranks start from the same parameters
and apply the same update, so they stay in step without ever sending parameters.

``torchrun`` starts the processes and tells each one who it is through environment variables
(``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``); :func:`init` reads
them and joins the process group, choosing NCCL for CUDA devices and gloo for the CPU. Started
without ``torchrun`` (no ``WORLD_SIZE``), every function here degrades to its one-process
meaning: rank 0 of a world of one, barriers and collectives that do nothing.

The split of a meta-batch is described with *shards*: the meta-batch is made of ``shards``
equal parts, part ``s`` drawn from its own random generator seeded by :func:`shard_seed`. Rank
``r`` of ``W`` takes the consecutive shards :func:`shard_range` gives it. The tasks therefore
depend on the number of shards only, not on how many processes share them, which is what lets
one process reproduce a run of several.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

T = TypeVar("T")

TIMEOUT_ENV = "MTLCODE_DIST_TIMEOUT"
"""Environment variable: seconds a collective waits for the other processes (default 600)."""
DEFAULT_TIMEOUT = 600.0


def timeout_seconds() -> float:
    """How long a rank waits for the others in a collective before giving up (``MTLCODE_DIST_TIMEOUT``)."""
    value = os.environ.get(TIMEOUT_ENV, "")
    try:
        seconds = float(value) if value else DEFAULT_TIMEOUT
    except ValueError:
        raise ValueError(f"{TIMEOUT_ENV}={value!r} is not a number of seconds") from None
    if not seconds > 0:
        raise ValueError(f"{TIMEOUT_ENV} must be positive, got {value!r}")
    return seconds


# -- who am I ----------------------------------------------------------------------------------

def launched_by_torchrun() -> bool:
    """True when the launcher (``torchrun``) set the variables that describe the process group."""
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def env_world_size() -> int:
    """The number of processes the launcher started (1 without one); usable before :func:`init`."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_distributed() -> bool:
    """True when a process group is initialised in this process."""
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """This process's index among all processes of the job, 0 when not distributed."""
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    """How many processes share the work, 1 when not distributed."""
    return dist.get_world_size() if is_distributed() else 1


def local_rank() -> int:
    """This process's index on its own machine (which GPU it drives), 0 when not distributed."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main_process() -> bool:
    """True on rank 0, the one process that writes files, logs and shows progress bars."""
    return rank() == 0


# -- joining and leaving -----------------------------------------------------------------------

def backend_for(device: torch.device) -> str:
    """NCCL for CUDA devices (GPU to GPU, fastest there), gloo for everything on the CPU."""
    return "nccl" if device.type == "cuda" and dist.is_nccl_available() else "gloo"


def init(device: str | torch.device | None = None) -> torch.device:
    """Join the process group when started by ``torchrun``; return the device this rank uses.

    ``device`` None picks ``cuda:LOCAL_RANK`` when CUDA is available (one GPU per process, as
    ``torchrun --nproc_per_node`` expects) and the CPU otherwise; ``"cuda"`` without an index
    also means this process's own GPU. The backend follows the device (:func:`backend_for`).
    Without ``torchrun`` nothing is joined, and the device is the best one available.
    Calling it again once joined only returns the device.
    """
    if device is None:
        if not launched_by_torchrun():
            from mtlcode.utils import device as best_device

            return best_device()
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local_rank())
    if device.type == "cuda":
        # NCCL and the CUDA caching allocator both work on the *current* device: set it before
        # anything touches the GPU, or every rank would start a context on GPU 0.
        torch.cuda.set_device(device)
    if launched_by_torchrun() and not is_distributed():
        if not dist.is_available():
            raise RuntimeError("this PyTorch build has no torch.distributed; run with one process")
        # Without a timeout a rank whose peer stopped waits in its next collective forever.
        dist.init_process_group(backend=backend_for(device),
                                timeout=datetime.timedelta(seconds=timeout_seconds()))
    return device


def backend() -> str | None:
    """The backend of the process group ("gloo", "nccl"), or None when not distributed."""
    return dist.get_backend() if is_distributed() else None


def cleanup() -> None:
    """Leave the process group (when in one), so the process exits without warnings."""
    if is_distributed():
        dist.destroy_process_group()


def _collective_device() -> torch.device:
    # NCCL moves CUDA tensors only; gloo moves CPU tensors.
    if backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def barrier() -> None:
    """Wait until every rank gets here (nothing to wait for when not distributed)."""
    if backend() == "nccl":
        dist.barrier(device_ids=[torch.cuda.current_device()])
    elif is_distributed():
        dist.barrier()


@contextlib.contextmanager
def local_main_first() -> Iterator[None]:
    """Run the body on local rank 0 of each machine first, then on the other ranks.

    For work that fills a cache on disk, such as downloading or unpacking a data set: one process
    per machine does it while the others wait, and they then find the files in place instead of
    racing to write them.
    """
    if local_rank() != 0:
        barrier()
    try:
        yield
    finally:
        if local_rank() == 0:
            barrier()


# -- collectives -------------------------------------------------------------------------------

def broadcast_object(obj: T, src: int = 0) -> T:
    """Rank ``src``'s ``obj`` on every rank (picklable objects; the ranks trust one another)."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src, device=_collective_device())
    return box[0]


def all_gather_object(obj: T) -> list[T]:
    """Every rank's ``obj``, in rank order, on every rank."""
    if not is_distributed():
        return [obj]
    gathered: list[Any] = [None] * world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def broadcast_parameters(module: nn.Module, src: int = 0) -> None:
    """Copy rank ``src``'s parameters and buffers into every rank's ``module``.

    Ranks seeded alike already build identical models; this makes it a guarantee rather than an
    assumption, whatever the caller did before.
    """
    if not is_distributed():
        return
    with torch.no_grad():
        for tensor in [*module.parameters(), *module.buffers()]:
            dist.broadcast(tensor.data, src=src)


def average_gradients(parameters: Sequence[Tensor], tasks: int, totals: Tensor | None = None) -> tuple[int, Tensor]:
    """Turn each rank's ``.grad`` into the meta-gradient of the mean loss over all ranks' tasks.

    Each rank has back-propagated the mean query loss of its own ``tasks`` tasks, giving
    ``g_r``. The gradient of the mean over every task of the meta-batch is
    ``sum_r tasks_r * g_r / sum_r tasks_r``: one all-reduce (a sum) of ``tasks_r * g_r``
    computes it, whatever the ranks' shares. ``totals`` (a 1-d tensor of per-rank sums, such as
    the summed task losses) travel in the same message, so a step costs one collective.
    Returns the number of tasks over all ranks and the summed ``totals``.

    Why an explicit all-reduce and not ``DistributedDataParallel``: DDP averages gradients from
    hooks that its own ``forward`` arms, but MAML never calls the module through a wrapper: it
    evaluates it with ``torch.func.functional_call`` on adapted parameters. And the inner loop
    differentiates with ``torch.autograd.grad`` (or ``torch.func.grad``), which DDP does not
    support: it only synchronises gradients accumulated into ``.grad`` by ``backward``. Averaging
    after ``backward``, once the whole meta-gradient (second-order terms included) is in
    ``.grad``, is correct by construction. What DDP would add, overlapping communication with
    the backward pass, matters little for networks of this size.
    """
    totals = torch.zeros(0) if totals is None else totals.detach().reshape(-1)
    if not is_distributed():
        return tasks, totals
    parameters = list(parameters)
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in parameters]
    device = _collective_device()
    dtype = grads[0].dtype if grads else torch.float32
    flat = torch.cat([(g.reshape(-1) * tasks).to(device) for g in grads]
                     + [torch.tensor([float(tasks)], dtype=dtype, device=device), totals.to(device, dtype)])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    total_tasks = flat[-1 - len(totals)].item()
    offset = 0
    for p, g in zip(parameters, grads):
        n = g.numel()
        p.grad = (flat[offset:offset + n] / total_tasks).view_as(p).to(p.device, p.dtype)
        offset += n
    return round(total_tasks), flat[len(flat) - len(totals):].to(totals.device, totals.dtype)


# -- what meta_train needs, in one object -------------------------------------------------------

class PeerTimeoutError(RuntimeError):
    """The other processes of the job did not answer in time (a stopped or crashed worker)."""


@contextlib.contextmanager
def _peers_answer(what: str) -> Iterator[None]:
    try:
        yield
    except RuntimeError as error:  # gloo and NCCL report a timed-out collective as RuntimeError
        if "timeout" not in str(error).lower() and "timed out" not in str(error).lower():
            raise
        raise PeerTimeoutError(
            f"rank {rank()}: the other processes did not answer within {timeout_seconds():.0f} s during {what} "
            f"(a worker stopped, crashed or is much slower?). Stop the job and run the same command again: it "
            f"resumes from the last checkpoint. Set {TIMEOUT_ENV} to wait longer.") from error


@dataclass(frozen=True)
class Context:
    """This process's place in a meta-training job, and the collectives the training loop uses.

    Outside ``torchrun`` it is rank 0 of a world of one, and every collective returns its input.
    """

    rank: int
    world_size: int

    @classmethod
    def current(cls) -> Context:
        return cls(rank(), world_size())

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that validates, shows progress and writes files."""
        return self.rank == 0

    def shards(self, shards: int) -> range:
        """The shards of every meta-batch this rank draws (see :func:`shard_range`)."""
        return shard_range(shards, self.rank, self.world_size)

    def broadcast(self, obj: T) -> T:
        with _peers_answer("a broadcast"):
            return broadcast_object(obj)

    def gather(self, obj: T) -> list[T]:
        with _peers_answer("a gather"):
            return all_gather_object(obj)

    def sync_parameters(self, module: nn.Module) -> None:
        with _peers_answer("the broadcast of the parameters"):
            broadcast_parameters(module)

    def average_gradients(self, parameters: Sequence[Tensor], tasks: int, totals: Tensor) -> tuple[int, Tensor]:
        with _peers_answer("the all-reduce of the meta-gradient"):
            return average_gradients(parameters, tasks, totals)

    def barrier(self) -> None:
        with _peers_answer("a barrier"):
            barrier()


# -- sharding a meta-batch ---------------------------------------------------------------------

def shard_seed(seed: int, shard: int) -> int:
    """The seed of shard ``shard``'s task generator: ``seed`` itself for shard 0.

    Other shards get a seed hashed from ``(seed, shard)`` with NumPy's ``SeedSequence``, which
    is designed to give unrelated streams for related inputs (``seed + shard`` would make shard
    1 of seed 0 replay shard 0 of seed 1). Shard 0 keeping ``seed`` makes a one-shard run the
    plain ``torch.Generator().manual_seed(seed)`` stream.
    """
    if shard == 0:
        return seed
    state = np.random.SeedSequence([seed % 2**64, shard]).generate_state(1, dtype=np.uint64)[0]
    return int(state) >> 1  # a non-negative 63-bit seed


def shard_range(shards: int, rank: int, world_size: int) -> range:
    """The consecutive shards that rank ``rank`` of ``world_size`` processes takes."""
    if shards % world_size:
        raise ValueError(f"{shards} shards cannot be shared equally by {world_size} processes: "
                         "the number of shards must be a multiple of the number of processes")
    per_rank = shards // world_size
    return range(rank * per_rank, (rank + 1) * per_rank)


def check_split(meta_batch: int, shards: int, world_size: int) -> None:
    """Raise a ``ValueError`` saying why ``meta_batch`` tasks cannot go into ``shards`` equal
    shards shared equally by ``world_size`` processes."""
    for name, value in (("meta-batch", meta_batch), ("shards", shards), ("world size", world_size)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"the {name} must be a positive int, got {value!r}")
    if shards % world_size:
        raise ValueError(f"{shards} shards cannot be shared equally by {world_size} processes: "
                         "the number of shards must be a multiple of the number of processes")
    if meta_batch % shards:
        what = "processes" if shards == world_size else "shards"
        raise ValueError(f"a meta-batch of {meta_batch} tasks cannot be split into {shards} equal {what}: "
                         f"choose a meta-batch that is a multiple of {shards}")
