"""The command line: meta-train a learner on sinusoid regression or Omniglot, on one or many processes::

    python -m mtlcode --dataset sinusoid --meta-batch 32 --iterations 2000 --out runs/sine
    torchrun --standalone --nproc_per_node=4 -m mtlcode.train --dataset omniglot --out runs/omniglot

``python -m mtlcode.train`` is the same command under the name the book uses. Running it again
with the same settings resumes from ``OUT/checkpoint.pt``; with other settings it refuses, naming
them, unless ``--allow-changes`` is given.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from mtlcode import distributed
from mtlcode.checkpoints import CheckpointError
from mtlcode.learners.anil import ANIL
from mtlcode.learners.base import Learner
from mtlcode.learners.incontext import CNP
from mtlcode.learners.maml import MAML
from mtlcode.learners.metasgd import MetaSGD
from mtlcode.learners.protonet import ProtoNet
from mtlcode.learners.reptile import Reptile
from mtlcode.learners.ridge import R2D2
from mtlcode.tasks import TaskBatch
from mtlcode.training import History, meta_train

PROG = "python -m mtlcode.train"
DEFAULTS = {"sinusoid": dict(shots=10, queries=10, meta_batch=25, inner_lr=0.01),
            "omniglot": dict(ways=5, shots=1, queries=15, meta_batch=32, inner_lr=0.4)}
# Settings a resumed run must share with the run that wrote the checkpoint: they define the
# model, the tasks and the optimisation. (--iterations, --device, --checkpoint-every and the
# number of processes may change between runs.)
RUN_DEFINING = ("method", "dataset", "ways", "shots", "queries", "meta_batch", "shards", "meta_lr", "inner_lr",
                "inner_steps", "first_order", "seed", "omniglot_sets")

# Settings that runs written before the setting existed had implicitly.
IMPLICIT = {"method": "maml"}
METHODS = ("maml", "anil", "metasgd", "reptile", "protonet", "r2d2", "cnp")


class ResumeMismatch(ValueError):
    """The settings of a resumed run differ from those of the run that wrote the checkpoint."""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Meta-train a learner (MAML, ANIL, Meta-SGD, Reptile, ProtoNets, R2-D2, conditional neural "
                    "processes) "
                    "on sinusoid regression or Omniglot. Run it as it is for one process, or under `torchrun "
                    "--nproc_per_node=N -m mtlcode.train ...` to split every meta-batch across N processes (gloo on "
                    "CPUs, NCCL on GPUs). Running the same command again resumes from OUT/checkpoint.pt.",
    )
    p.add_argument("--method", choices=METHODS, default="maml",
                   help="the learner (protonet, r2d2: omniglot only; cnp: sinusoid only, without inner loop; add "
                        "--first-order for first-order MAML or ANIL)")
    p.add_argument("--dataset", choices=["sinusoid", "omniglot"], default="sinusoid")
    p.add_argument("--ways", type=int, default=None, help="classes per task (omniglot only; default 5)")
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
    p.add_argument("--out", required=True,
                   help="output folder: checkpoint.pt, config.json, history.json (and .lock, held while a "
                   "run writes there)")
    p.add_argument("--checkpoint-every", type=int, default=100)
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda:LOCAL_RANK when there is a GPU)")
    p.add_argument("--omniglot-sets", nargs="+", default=None,
                   help="Omniglot archives to meta-train on (default: background; see mtlcode.data.Omniglot)")
    p.add_argument("--allow-changes", action="store_true",
                   help="resume even though settings differ from those the checkpoint was trained with")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return p


def _check_arguments(args: argparse.Namespace) -> None:
    if not args.out.strip():  # Path("") would be the current folder
        raise ValueError("--out must name a folder (it was empty)")
    args.out = Path(args.out)
    if args.dataset == "sinusoid":
        for name in ("ways", "omniglot_sets"):
            if getattr(args, name) is not None:
                raise ValueError(f"--{name.replace('_', '-')} applies to --dataset omniglot only")
    else:
        args.ways = DEFAULTS["omniglot"]["ways"] if args.ways is None else args.ways
        args.omniglot_sets = args.omniglot_sets or ["background"]
    if args.method in ("protonet", "r2d2") and args.dataset != "omniglot":
        raise ValueError(f"--method {args.method} classifies: use --dataset omniglot")
    if args.method == "cnp" and args.dataset != "sinusoid":
        raise ValueError("--method cnp regresses: use --dataset sinusoid")
    if args.first_order and args.method not in ("maml", "anil"):
        raise ValueError(f"--first-order applies to --method maml or anil, not {args.method}")
    if args.method == "reptile" and args.inner_steps < 1:
        raise ValueError("--method reptile needs --inner-steps >= 1")
    for name, value in DEFAULTS[args.dataset].items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    for name, least in (("iterations", 0), ("checkpoint_every", 1), ("inner_steps", 0), ("shots", 1),
                        ("queries", 1), ("ways", 2), ("seed", 0)):
        value = getattr(args, name, None)
        if value is not None and value < least:
            raise ValueError(f"--{name.replace('_', '-')} must be >= {least}, got {value}")
    for name in ("meta_lr", "inner_lr"):
        if not (math.isfinite(getattr(args, name)) and getattr(args, name) > 0):
            raise ValueError(f"--{name.replace('_', '-')} must be a positive number, got {getattr(args, name)}")


def _config(args: argparse.Namespace, shards: int, device: torch.device) -> dict[str, Any]:
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    return {**settings, "shards": shards, "world_size": distributed.world_size(),
            "backend": distributed.backend(), "device": str(device)}


def _recorded_settings(checkpoint: Path) -> dict[str, Any] | None:
    """The run-defining settings a checkpoint records (those of this command since they are saved), or None."""
    from mtlcode.checkpoints import load_checkpoint

    try:
        settings = load_checkpoint(checkpoint).get("settings")
    except (CheckpointError, OSError, AttributeError):  # a damaged one is named when meta_train loads it
        return None
    return settings if isinstance(settings, dict) else None


def _changed(saved: dict[str, Any], config: dict[str, Any]) -> str:
    changed = {k: (saved.get(k, IMPLICIT.get(k)), config.get(k)) for k in RUN_DEFINING
               if saved.get(k, IMPLICIT.get(k)) != config.get(k)}
    return "; ".join(f"--{k.replace('_', '-')}: {old!r} then, {new!r} now" for k, (old, new) in changed.items())


def check_resume(out: Path, config: dict[str, Any], allow_changes: bool = False) -> None:
    """Refuse to resume ``out``'s checkpoint with settings other than those it was trained with.

    They are read from ``config.json`` and from the checkpoint itself, which records them (a
    checkpoint written before it did, without its ``config.json``, is refused unless
    ``--allow-changes``).
    """
    saved_file, checkpoint = out / "config.json", out / "checkpoint.pt"
    has_checkpoint = checkpoint.exists()
    recorded = _recorded_settings(checkpoint) if has_checkpoint else None
    if has_checkpoint and recorded is None and not saved_file.exists() and not allow_changes:
        raise ResumeMismatch(
            f"{checkpoint} has no config.json beside it, so its settings cannot be checked against these. "
            "Nothing was changed. Put its config.json back, pick another --out for a new run, or add "
            "--allow-changes to resume it with these settings on purpose.")
    if not has_checkpoint and (out / "history.json").exists():
        raise ResumeMismatch(f"{out} holds a history.json but no checkpoint.pt: not a run this command can resume, "
                             "and its files would be overwritten. Nothing was changed; pick another --out.")
    if allow_changes:
        return
    sources = []
    if saved_file.exists():
        try:
            saved = json.loads(saved_file.read_text())
            if not isinstance(saved, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError) as error:
            raise ResumeMismatch(f"{saved_file} cannot be read ({error}). Nothing was changed; repair or remove it, "
                                 "or pick another --out.") from error
        sources.append((saved, f"in {saved_file}"))
    if recorded is not None:
        sources.append((recorded, f"recorded in {checkpoint.name}"))
    for saved, where in sources:
        listed = _changed(saved, config)
        if listed:
            raise ResumeMismatch(
                f"{checkpoint} was trained with other settings ({listed}). Nothing was changed. Rerun with "
                f"the saved settings ({where}) to resume, pick another --out for a new run, or add "
                "--allow-changes to resume with the new settings on purpose.")


def _lock(out: Path) -> Any:
    """Hold ``out/.lock`` for this run, or refuse at once when another run holds it.

    Two runs writing into one folder would take turns with its checkpoint, each resuming the
    other's under its own settings. The lock goes with the process (a killed run leaves none).
    """
    out.mkdir(parents=True, exist_ok=True)
    handle = open(out / ".lock", "a+")  # noqa: SIM115 - kept open for the whole run
    try:
        import fcntl
    except ImportError:  # not POSIX (Windows): no lock
        return handle
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        handle.close()
        raise ResumeMismatch(f"another run is writing to {out} (it holds {out / '.lock'}); wait for it to end or pick "
                             "another --out") from error
    return handle


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)  # atomic, like the checkpoints


def _write_json(path: Path, obj: Any) -> None:
    _write_text(path, json.dumps(obj, indent=2) + "\n")


def _file_id(path: Path) -> tuple[int, int, int] | None:
    """Which file ``path`` is now (every checkpoint save is a new file renamed over the old one)."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return stat.st_ino, stat.st_mtime_ns, stat.st_size


def _learner(args: argparse.Namespace, model: torch.nn.Module, loss: Any) -> Learner:
    if args.method == "protonet":
        return ProtoNet(model.body)
    if args.method == "r2d2":
        return R2D2(model.body)
    if args.method == "cnp":  # builds its own encoder and decoder; --inner-lr and --inner-steps do not apply
        return CNP(x_dim=1, y_dim=1)
    if args.method == "reptile":
        return Reptile(model, args.inner_lr, inner_steps=args.inner_steps, loss=loss)
    if args.method == "metasgd":
        return MetaSGD(model, args.inner_lr, inner_steps=args.inner_steps, loss=loss)
    learner = ANIL if args.method == "anil" else MAML
    return learner(model, args.inner_lr, loss=loss, inner_steps=args.inner_steps, first_order=args.first_order)


def _learner_and_tasks(args: argparse.Namespace, per_shard: int) -> tuple[Learner, Any]:
    from mtlcode.models import MLP, Conv4
    from mtlcode.tasks import NWayKShot, Sinusoid

    if args.dataset == "sinusoid":
        family = Sinusoid()
        model, loss = MLP([1, 40, 40, 1]), F.mse_loss

        def sample_tasks(generator: torch.Generator) -> TaskBatch:
            return family.sample(per_shard, args.shots, args.queries, generator=generator)
    else:
        from mtlcode.data import Omniglot

        with distributed.local_main_first():  # one download per machine, not one per process
            dataset = Omniglot(sets=args.omniglot_sets)
        tasks = NWayKShot(dataset, args.ways, args.shots, args.queries)
        model, loss = Conv4(ways=args.ways), F.cross_entropy

        def sample_tasks(generator: torch.Generator) -> TaskBatch:
            return tasks.sample(per_shard, generator=generator)

    return _learner(args, model, loss), sample_tasks


def main(argv: list[str] | None = None) -> History:
    """The ``python -m mtlcode.train`` command (``--help`` lists the options); returns the history."""
    from mtlcode.utils import seed_everything

    parser = _parser()
    args = parser.parse_args(argv)
    # Check everything before joining the process group, so that a bad command fails at once
    # (on every rank, with the same message) instead of after the rendezvous.
    world = distributed.env_world_size()
    shards = world if args.shards is None else args.shards
    try:
        _check_arguments(args)
        distributed.check_split(args.meta_batch, shards, world)
    except ValueError as error:
        if distributed.local_rank() != 0:
            sys.exit(2)  # one copy of the message per machine is enough
        parser.error(str(error))

    device = distributed.init(args.device)
    lock = None
    try:
        if distributed.is_main_process():
            lock = _lock(args.out)  # one run per output folder at a time
        config = _config(args, shards, device)
        check_resume(args.out, config, args.allow_changes)
        seed_everything(args.seed)  # the same seed on every rank: the same initial model
        learner, sample_tasks = _learner_and_tasks(args, args.meta_batch // shards)
        checkpoint, config_file = args.out / "checkpoint.pt", args.out / "config.json"
        previous = None  # (the config.json text, the checkpoint file) a failed start puts back
        if distributed.is_main_process():
            args.out.mkdir(parents=True, exist_ok=True)
            if config_file.exists():
                previous = config_file.read_text(), _file_id(checkpoint)
            _write_json(config_file, config)
        try:
            history = meta_train(learner, sample_tasks, args.iterations, args.meta_lr, seed=args.seed,
                                 checkpoint=checkpoint, checkpoint_every=args.checkpoint_every,
                                 device=device, progress=not args.no_progress, shards=shards,
                                 settings={k: config.get(k) for k in RUN_DEFINING})
        except BaseException:
            # Failed before saving a checkpoint (say, --allow-changes onto another learner's one):
            # config.json must go on describing the checkpoint that is still there.
            if previous is not None and _file_id(checkpoint) == previous[1]:
                _write_text(config_file, previous[0])
            raise
        if distributed.is_main_process():
            if history["step"]:
                _write_json(args.out / "history.json", history)
                print(f"step {history['step'][-1]}: meta-loss {history['loss'][-1]:.4f}, metric "
                      f"{history['metric'][-1]:.4f} ({distributed.world_size()} process(es), {shards} shard(s)); "
                      f"checkpoint in {args.out / 'checkpoint.pt'}")
            else:
                print(f"no steps to train (--iterations {args.iterations}); only config.json was written")
        return history
    finally:
        if lock is not None:
            lock.close()  # releases the lock
        distributed.cleanup()


def run() -> None:
    """Entry point: ``main()``, with the errors a user can fix reported in one line."""
    try:
        main()
    except (CheckpointError, ResumeMismatch, distributed.PeerTimeoutError, FloatingPointError,
            FileNotFoundError) as error:  # a diverged run, data that is not there: the message says what to do
        print(f"{PROG}: error: {error}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    run()
