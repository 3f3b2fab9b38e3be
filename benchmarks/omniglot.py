"""Omniglot: MAML, first-order MAML and fine-tuning baselines, on held-out alphabets and Lake's runs.

Small protocol (the default; the data this project ships with): the two small background sets
(8 alphabets, 242 characters) are split by alphabet into training, validation and test parts.
Conv4 is meta-trained on 20-way 1-shot tasks of the training alphabets, with every character's
90-degree rotations as extra classes (as in Finn et al., 2017). The transfer-learning baseline of
Chen et al. (2019) pre-trains the same Conv4 on all training classes with ordinary supervised
learning, then fine-tunes a fresh head on each test task's support set (body frozen: "head", or
everything: "all"). Every method is scored on

* ``heldout_5way1shot`` / ``heldout_5way5shot``: 600 tasks of the test alphabets (accuracy);
* ``lake20``: the 20 runs of Lake et al.'s (2015) 20-way within-alphabet one-shot task, drawn from
  the evaluation alphabets, which no method has seen (error, beside the published figures).

Test-time settings (MAML's number of steps, the baselines' step sizes) are picked on validation
tasks with the same number of ways (5 or 20). MAML models are trained 20-way; for 5-way tasks the
first five rows of the head are used (labels are shuffled in every training task, so the twenty
rows are interchangeable).

Full protocol (``--full``): the MAML paper's setting on the complete background and evaluation
sets (1,200 training characters with rotations, 5- and 20-way, 1- and 5-shot, 60,000 iterations),
for a GPU or Colab. Without the full archives it says so and exits cleanly.

    python -m benchmarks.omniglot            # small protocol, under an hour on 2 CPU cores
    python -m benchmarks.omniglot --quick    # tiny sizes, for the tests
    python -m benchmarks.omniglot --full     # the paper's protocol (needs the full archives)
"""

from __future__ import annotations

import os
import random
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

import mtlcode
from benchmarks.common import RESULTS, parser, write_result
from mtlcode import MAML
from mtlcode.checkpoints import save_checkpoint
from mtlcode.data import Omniglot, lake_one_shot_runs, split_alphabets
from mtlcode.finetune import finetune, pretrain
from mtlcode.models import Conv4
from mtlcode.tasks import NWayKShot, TaskBatch

SMALL_SETS = ("background_small1", "background_small2")
FULL_SETS = ("background", "evaluation")
# Lake, Salakhutdinov & Tenenbaum (2015): error on the 20-way within-alphabet one-shot task.
PUBLISHED_LAKE20 = {"people": 0.045, "bayesian_program_learning": 0.033, "deep_convnet": 0.135}
# Finn, Abbeel & Levine (2017), table 1: MAML accuracy with the full protocol.
PUBLISHED_FULL = {(5, 1): 0.987, (5, 5): 0.999, (20, 1): 0.958, (20, 5): 0.989}


@dataclass(frozen=True)
class Protocol:
    """Sizes of one run. The defaults are the small protocol's (CPU, about an hour)."""

    image_size: int = 28
    hidden: int = 64
    split: tuple[int, int, int] = (5, 1, 2)        # alphabets for training, validation, test
    ways: int = 20                                 # meta-training tasks
    shots: int = 1
    queries: int = 2                               # per class, in meta-training tasks
    meta_batch: int = 8                            # paper: 16 (20-way)
    iterations: int = 2000                         # paper: 60,000
    inner_lr: float = 0.4
    inner_steps: int = 1
    meta_lr: float = 1e-3
    test_steps: tuple[int, ...] = (1, 3, 5, 10, 20)  # MAML steps at test time, picked on validation
    pretrain_steps: int = 3000
    pretrain_batch: int = 64
    head_steps: int = 100
    head_lrs: tuple[float, ...] = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
    all_steps: int = 20
    all_lrs: tuple[float, ...] = (0.01, 0.03, 0.1, 0.3, 1.0)
    test_queries: int = 15                         # per class, held-out tasks
    test_tasks: int = 600
    val_tasks: int = 100


QUICK = Protocol(hidden=8, ways=20, queries=1, meta_batch=2, iterations=3, test_steps=(1, 2), pretrain_steps=3,
                 pretrain_batch=16, head_steps=2, head_lrs=(0.1,), all_steps=2, all_lrs=(0.1,), test_queries=2,
                 test_tasks=4, val_tasks=2)
BUDGET_SECONDS = 3600.0


# -- data ----------------------------------------------------------------------------------------

@dataclass
class Splits:
    train: Dataset        # with rotations, classes 0..C-1
    val: Dataset
    test: Dataset
    alphabets: dict[str, list[str]]


def small_splits(protocol: Protocol, root: str | None, seed: int) -> Splits:
    """Training, validation and test alphabets of the two small background sets."""
    everything = Omniglot(root, SMALL_SETS, protocol.image_size)
    train, val, test = split_alphabets(everything.alphabets, protocol.split, seed=seed)

    def part(names: list[str], rotations: bool) -> Omniglot:
        return Omniglot(root, SMALL_SETS, protocol.image_size, rotations=rotations, alphabets=names)

    return Splits(part(train, True), part(val, False), part(test, False),
                  {"train": train, "val": val, "test": test})


class Classes(Dataset):
    """The examples of some classes of a labelled dataset, relabelled ``0..len(classes)-1``."""

    def __init__(self, dataset: Omniglot, classes: list[int]) -> None:
        new_label = torch.full((dataset.num_classes,), -1, dtype=torch.long)
        new_label[torch.tensor(classes)] = torch.arange(len(classes))
        self.dataset = dataset
        self.indices = torch.nonzero(new_label[dataset.targets] >= 0).flatten()
        self.targets = new_label[dataset.targets[self.indices]]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        return self.dataset[int(self.indices[index])][0], int(self.targets[index])


def full_splits(protocol: Protocol, root: str | None, seed: int, download: bool,
                train_characters: int = 1200) -> Splits:
    """The MAML paper's split: 1,200 characters (any alphabet) for training, the rest for testing,
    rotations as extra classes everywhere; 100 of the test characters serve as validation."""
    data = Omniglot(root, FULL_SETS, protocol.image_size, download=download, rotations=True)
    n = data.num_characters
    order = list(range(n))
    random.Random(seed).shuffle(order)
    train_characters = min(train_characters, n - 2 * protocol.ways)
    val_characters = max(protocol.ways, min(100, (n - train_characters) // 4))
    parts = order[:train_characters], order[train_characters:train_characters + val_characters], \
        order[train_characters + val_characters:]

    def with_rotations(characters: list[int]) -> list[int]:
        return [c + r * n for r in range(4) for c in characters]

    return Splits(*(Classes(data, with_rotations(p)) for p in parts),
                  alphabets={"train": [], "val": [], "test": []})


def tasks(dataset: Dataset, ways: int, shots: int, queries: int, count: int, seed: int) -> TaskBatch:
    """``count`` seeded tasks (the same for every method)."""
    return NWayKShot(dataset, ways, shots, queries).sample(count, generator=torch.Generator().manual_seed(seed))


# -- methods -------------------------------------------------------------------------------------

def conv4(protocol: Protocol, ways: int, seed: int) -> Conv4:
    torch.manual_seed(seed)
    return Conv4(ways=ways, hidden=protocol.hidden, image_size=protocol.image_size)


def with_ways(model: Conv4, ways: int, protocol: Protocol) -> Conv4:
    """A copy of a meta-trained model for ``ways``-way tasks: the first ``ways`` rows of its head."""
    if ways > model.head.out_features:
        raise ValueError(f"the model was meta-trained {model.head.out_features}-way; cannot answer {ways}-way tasks")
    smaller = Conv4(ways=ways, hidden=protocol.hidden, image_size=protocol.image_size)
    state = model.state_dict()
    state["head.weight"], state["head.bias"] = state["head.weight"][:ways], state["head.bias"][:ways]
    smaller.load_state_dict(state)
    return smaller


def score_maml(model: Conv4, protocol: Protocol, ways: int, steps: int, batch: TaskBatch,
               first_order: bool) -> mtlcode.evaluation.Evaluation:
    device = model.head.weight.device
    maml = MAML(with_ways(model, ways, protocol).to(device), protocol.inner_lr, loss=F.cross_entropy,
                first_order=first_order)
    return mtlcode.evaluate(maml, batch, steps=steps, device=device)


def fine_tuner(model: Conv4, mode: str, steps: int, lr: float):
    """``(support_x, support_y, query_x) -> logits``: fine-tune a copy, then predict."""
    def adapt_and_predict(support_x: Tensor, support_y: Tensor, query_x: Tensor) -> Tensor:
        ways = int(support_y.max()) + 1
        tuned = finetune(model, support_x, support_y, steps, lr, mode=mode, ways=ways)
        with torch.no_grad():
            return tuned(query_x)
    return adapt_and_predict


# -- one worker per method -----------------------------------------------------------------------

@dataclass(frozen=True)
class Job:
    method: str                      # "maml", "fomaml" or "pretrained"
    protocol: Protocol
    seed: int
    root: str | None
    benchmarks: tuple[tuple[str, int, int], ...]   # (name, ways, shots) of held-out task sets
    lake: bool = True
    full: bool = False
    download: bool = False
    progress: bool = False
    device: str = "cpu"
    models: str | None = None        # a folder to save the trained weights in


def save_model(job: Job, model: Conv4) -> None:
    if job.models is not None:
        save_checkpoint(Path(job.models) / f"{job.method}.pt", model.state_dict())


def run_job(job: Job) -> dict[str, Any]:
    """Train one method, pick its test-time setting on validation tasks, score it everywhere."""
    torch.set_num_threads(1)
    started = time.perf_counter()
    protocol, seed = job.protocol, job.seed
    splits = full_splits(protocol, job.root, seed, job.download) if job.full else small_splits(protocol, job.root, seed)
    lake = lake_one_shot_runs(job.root, protocol.image_size, download=job.download) if job.lake else []
    lake_batch = TaskBatch(*(torch.cat([getattr(run, f) for run in lake]) for f in
                             ("support_x", "support_y", "query_x", "query_y"))) if lake else None
    held_out = {name: tasks(splits.test, ways, shots, protocol.test_queries, protocol.test_tasks, seed + 100 + i)
                for i, (name, ways, shots) in enumerate(job.benchmarks)}
    scored = [(name, ways, shots, held_out[name]) for name, ways, shots in job.benchmarks]
    if lake_batch is not None:
        scored.append(("lake20", 20, 1, lake_batch))
    # Test-time settings are picked per way count, on 1-shot tasks of the validation alphabets.
    val = {ways: tasks(splits.val, ways, 1, protocol.test_queries, protocol.val_tasks, seed + 99 + ways)
           for ways in sorted({ways for _, ways, _, _ in scored})}
    rows: list[dict[str, Any]] = []
    info: dict[str, Any] = {}

    def add(method: str, benchmark: str, ways: int, shots: int, score: mtlcode.evaluation.Evaluation) -> None:
        if benchmark == "lake20":
            rows.append({"method": method, "benchmark": benchmark, "ways": ways, "shots": shots, "metric": "error",
                         "mean": 1 - score.mean, "ci95": score.ci95, "tasks": len(score.values)})
        else:
            rows.append({"method": method, "benchmark": benchmark, "ways": ways, "shots": shots,
                         "metric": "accuracy", "mean": score.mean, "ci95": score.ci95, "tasks": len(score.values)})

    if job.method in ("maml", "fomaml"):
        first_order = job.method == "fomaml"
        model = conv4(protocol, protocol.ways, seed).to(job.device)
        maml = MAML(model, protocol.inner_lr, loss=F.cross_entropy, inner_steps=protocol.inner_steps,
                    first_order=first_order)
        sampler = NWayKShot(splits.train, protocol.ways, protocol.shots, protocol.queries)
        history = mtlcode.meta_train(maml, lambda g: sampler.sample(protocol.meta_batch, generator=g),
                                     protocol.iterations, protocol.meta_lr, seed=seed, progress=job.progress,
                                     device=job.device)
        info["train_seconds"] = time.perf_counter() - started
        save_model(job, model)
        info["final_train_accuracy"] = sum(history["metric"][-50:]) / len(history["metric"][-50:])
        val_scores = {ways: {s: score_maml(model, protocol, ways, s, batch, first_order).mean
                             for s in protocol.test_steps} for ways, batch in val.items()}
        best_steps = {ways: max(scores, key=scores.get) for ways, scores in val_scores.items()}
        info.update(val_accuracy_by_steps=val_scores, test_steps=best_steps)
        for name, ways, shots, batch in scored:
            add(job.method, name, ways, shots, score_maml(model, protocol, ways, best_steps[ways], batch, first_order))
    elif job.method == "pretrained":
        model = conv4(protocol, int(splits.train.targets.max()) + 1, seed)
        losses = pretrain(model, splits.train, protocol.pretrain_steps, protocol.meta_lr, protocol.pretrain_batch,
                          generator=torch.Generator().manual_seed(seed), device=job.device, progress=job.progress)
        info["train_seconds"] = time.perf_counter() - started
        save_model(job, model)
        info["final_train_loss"] = sum(losses[-50:]) / len(losses[-50:])
        for mode, steps, lrs in (("head", protocol.head_steps, protocol.head_lrs),
                                 ("all", protocol.all_steps, protocol.all_lrs)):
            method = f"finetune_{mode}"
            val_scores = {ways: {lr: mtlcode.evaluate(fine_tuner(model, mode, steps, lr), batch, device=job.device).mean
                                 for lr in lrs} for ways, batch in val.items()}
            best_lr = {ways: max(scores, key=scores.get) for ways, scores in val_scores.items()}
            info[method] = {"steps": steps, "lr": best_lr, "val_accuracy_by_lr": val_scores}
            for name, ways, shots, batch in scored:
                add(method, name, ways, shots,
                    mtlcode.evaluate(fine_tuner(model, mode, steps, best_lr[ways]), batch, device=job.device))
    else:
        raise ValueError(f"unknown method {job.method!r}")
    info["seconds"] = time.perf_counter() - started
    return {"method": job.method, "rows": rows, "info": info, "alphabets": splits.alphabets}


def run_jobs(jobs: list[Job], workers: int) -> list[dict[str, Any]]:
    """Run the jobs in ``workers`` processes (one thread each), longest first; 1: in this process."""
    if workers <= 1:
        return [run_job(job) for job in jobs]
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        return list(pool.map(run_job, jobs))


# -- the two protocols ---------------------------------------------------------------------------

def small(args, argv: list[str] | None, protocol: Protocol, started: float, device: torch.device) -> dict[str, Any]:
    benchmarks = (("heldout_5way1shot", 5, 1), ("heldout_5way5shot", 5, 5))
    jobs = [Job(m, protocol, args.seed, args.root, benchmarks, download=not args.no_download,
                progress=not args.no_progress and args.workers <= 1, device=str(device), models=args.models)
            for m in ("maml", "fomaml", "pretrained")]
    results = run_jobs(jobs, args.workers)
    rows = [row for result in results for row in result["rows"]]
    published = [{"method": m, "benchmark": "lake20", "metric": "error", "mean": v, "source": "lake2015omniglot"}
                 for m, v in PUBLISHED_LAKE20.items()]
    return write_result(args.out, rows, started, BUDGET_SECONDS, device, args.seed, "benchmarks.omniglot", argv,
                        protocol=asdict(protocol), alphabets=results[0]["alphabets"],
                        methods={r["method"]: r["info"] for r in results}, published=published)


def full(args, argv: list[str] | None, protocol: Protocol, started: float,
         device: torch.device) -> dict[str, Any] | None:
    """The MAML paper's four Omniglot settings; None (with a message) when the data is missing."""
    sets = FULL_SETS
    try:
        Omniglot(args.root, sets, protocol.image_size, download=not args.no_download)
    except (FileNotFoundError, RuntimeError) as error:
        print(f"The full Omniglot protocol needs {', '.join(f'images_{s}.zip' for s in sets)}, which are not "
              f"available here:\n  {error}\nRun it where they can be downloaded (Colab, a GPU machine); "
              "the small protocol runs without them.", file=sys.stderr)
        return None
    rows, infos = [], {}
    for ways, shots in PUBLISHED_FULL:
        # Paper: 5-way with meta-batch 32 and one step of 0.4; 20-way with 16 and five steps of 0.1.
        setting = replace(protocol, ways=ways, shots=shots, queries=protocol.queries,
                          meta_batch=protocol.meta_batch if args.quick else (32 if ways == 5 else 16),
                          inner_lr=0.4 if ways == 5 else 0.1, inner_steps=1 if ways == 5 else 5)
        job = Job("maml", setting, args.seed, args.root, ((f"test_{ways}way{shots}shot", ways, shots),),
                  lake=False, full=True, download=not args.no_download, progress=not args.no_progress,
                  device=str(device))
        result = run_job(job)
        rows += result["rows"]
        infos[f"{ways}way{shots}shot"] = result["info"]
        row = result["rows"][-1]
        print(f"{ways}-way {shots}-shot: MAML {row['mean']:.3f} ± {row['ci95']:.3f} "
              f"(paper {PUBLISHED_FULL[ways, shots]:.3f})")
    published = [{"method": "maml", "benchmark": f"test_{w}way{s}shot", "metric": "accuracy", "mean": v,
                  "source": "finn2017maml"} for (w, s), v in PUBLISHED_FULL.items()]
    return write_result(args.out, rows, started, None, device, args.seed, "benchmarks.omniglot", argv,
                        protocol=asdict(protocol), methods=infos, published=published)


FULL_PROTOCOL = Protocol(queries=1, iterations=60_000)


def plot(result: dict[str, Any], path: Path) -> None:
    """Accuracy of every method on every benchmark (bars with 95% CIs), published figures as lines."""
    import matplotlib.pyplot as plt

    benchmarks = list(dict.fromkeys(row["benchmark"] for row in result["rows"]))
    methods = list(dict.fromkeys(row["method"] for row in result["rows"]))
    fig, axes = plt.subplots(1, len(benchmarks), figsize=(3.6 * len(benchmarks), 3.4), sharey=True, squeeze=False)
    for ax, benchmark in zip(axes[0], benchmarks):
        rows = {row["method"]: row for row in result["rows"] if row["benchmark"] == benchmark}
        accuracy = [1 - rows[m]["mean"] if rows[m]["metric"] == "error" else rows[m]["mean"] for m in methods]
        ax.bar(methods, accuracy, yerr=[rows[m]["ci95"] for m in methods], capsize=3, color="tab:blue", alpha=0.8)
        published = [row for row in result.get("published", []) if row["benchmark"] == benchmark]
        for i, row in enumerate(published):
            level = 1 - row["mean"] if row["metric"] == "error" else row["mean"]
            ax.axhline(level, ls="--", lw=1, color="grey")
            # Alternate sides so that close figures (people, BPL) keep readable labels.
            x, side = (len(methods) - 0.5, "right") if i % 2 == 0 else (-0.5, "left")
            ax.text(x, level, row["method"].replace("_", " "), fontsize=7, ha=side, va="bottom")
        ax.set_title(benchmark)
        ax.set_ylim(0, 1)
        ax.tick_params(axis="x", labelrotation=45)
    axes[0][0].set_ylabel("accuracy (95% CI)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def print_table(result: dict[str, Any]) -> None:
    for row in result["rows"]:
        print(f"{row['method']:>14}  {row['benchmark']:<18} {row['metric']:<8} {row['mean']:.3f} ± {row['ci95']:.3f}")
    for row in result.get("published", []):
        print(f"{row['method']:>14}  {row['benchmark']:<18} {row['metric']:<8} {row['mean']:.3f}  ({row['source']})")
    print(f"wall time {result['wall_seconds']:.0f} s (budget {result['budget_seconds']})")


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    p = parser(__doc__.splitlines()[0], "omniglot_small.json")
    p.add_argument("--quick", action="store_true", help="tiny sizes (for tests)")
    p.add_argument("--full", action="store_true", help="the MAML paper's protocol on the full archives")
    p.add_argument("--root", default=None, help="Omniglot folder (default: $MTLCODE_DATA, then the user cache)")
    p.add_argument("--no-download", action="store_true", help="never download missing archives")
    p.add_argument("--iterations", type=int, default=None, help="override the meta-training iterations")
    p.add_argument("--models", default=None, help="save the trained weights (<method>.pt) in this folder")
    p.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1),
                   help="processes for the methods (1: in this process)")
    args = p.parse_args(argv)
    started = time.perf_counter()
    device = torch.device(args.device) if args.device else mtlcode.device()
    if device.type != "cpu":
        args.workers = 1  # one accelerator: the methods take turns on it
    protocol = QUICK if args.quick else (FULL_PROTOCOL if args.full else Protocol())
    if args.iterations is not None:
        if args.iterations < 1:
            p.error("--iterations must be at least 1")
        protocol = replace(protocol, iterations=args.iterations)
    mtlcode.seed_everything(args.seed)
    if args.full:
        if args.out == RESULTS / "omniglot_small.json":
            args.out = RESULTS / "omniglot_full.json"
        result = full(args, argv, protocol, started, device)
        if result is None:
            return None
    else:
        result = small(args, argv, protocol, started, device)
    plot(result, args.out.with_suffix(".png"))
    if not args.no_progress:
        print_table(result)
    return result


if __name__ == "__main__":
    main()
