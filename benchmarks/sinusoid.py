"""Sinusoid regression v2: MAML, first-order MAML and fine-tuning baselines over several training seeds.

The protocol of Finn et al. (2017, section 5.1): tasks ``y = A sin(x - phase)`` with A in
[0.1, 5], phase in [0, pi], x in [-5, 5]; a 1-40-40-1 ReLU network; inner step size 0.01, one
inner step; Adam with 1e-3; meta-batches of 25 tasks; 70,000 iterations; trained with K=10.
Every training runs once per training seed (``--seeds``, default 0 1 2). The methods:

* ``maml``, ``fomaml``: adapted with plain gradient steps of 0.01, as meta-trained;
* ``pretrained``: the paper's baseline, kept as it was (``pooled pre-training, SGD``): one network
  regresses pooled points of random sinusoids (it learns the average curve, about zero), then is
  fine-tuned with plain gradient descent, its step size tuned per K on validation tasks;
* ``pretrained_adam``: the same pooled network fine-tuned with Adam, its learning rate tuned on
  validation tasks for every K and number of steps;
* ``multihead_adam``: a fairer transfer baseline. Pre-training fits a pool of training tasks at
  once with a shared body and *one head per task* (multi-task learning: the body must learn
  features from which every sinusoid is a linear read-out, instead of the average curve); a
  test task starts from the mean head and fine-tunes every weight with Adam, tuned as above;
* ``multihead_ridge``: Tian et al.'s (2020) test of the same idea, a good embedding and a linear
  read-out. The multi-head body (trained again in its own parts, with the same code and seed:
  the same body) is frozen, and each test task gets a ridge-regression head on the last hidden
  layer's features plus a bias column, solved in closed form on its K support points. The penalty
  is chosen per K on the validation tasks from ``RIDGE_PENALTIES``. It takes no gradient steps,
  so its rows repeat one score at every step count (``optimizer`` "closed form").
* ``cnp``: in-context learning, the trend that needs no gradient step at all. A conditional
  neural process (Garnelo et al., 2018; :class:`mtlcode.CNP` with its defaults) is meta-trained
  as its paper trains it, on support sets of a random size per meta-batch (K from 5 to 20, the
  test range) with 10 queries, MAML's meta-batch, rate and number of iterations; at test time it
  reads the K support points and predicts the queries in one pass. Not tuned, like MAML; its rows
  repeat one score at every step count (``optimizer`` "in context").

All methods are scored on the same 600 fresh tasks (``--seed``): MSE on 100 query points after
1, 5, 10 and 100 steps on K = 5, 10, 20 support points (full batch, every weight). With a fixed
step size a few sharply curved tasks can blow up, and one of them is enough to dominate a mean,
so diverged tasks (query MSE not finite or above 100; predicting zero everywhere scores at most
12.5) are *counted* per seed (``diverged_per_seed``) and means are given both over all tasks
(``mean``: null when some seed's mean is not finite) and over the tasks that did not diverge
(``mean_without_diverged``), each with a 95% t-interval over seeds; the per-seed means, their
intervals over tasks and the per-seed medians are kept too. The paper's figures (K = 5, read off
its figure 3) are under ``published``.

Resumable: each finished (training, seed) part goes to ``<out>.partial/<training>-seed<k>.json``;
a rerun skips those and combines everything into ``<out>.json`` (default ``sinusoid_v2.json``).
A part's fingerprint is the protocol and the task seed, plus, for ``multihead_ridge`` its grid of
penalties and for ``cnp`` its settings (:func:`own_fingerprint`): adding those methods left the
other parts valid.

    python -m benchmarks.sinusoid           # 5 trainings x 3 seeds, about 40 minutes on 2 CPU cores
    python -m benchmarks.sinusoid --quick   # tiny sizes, for the tests

The trainings run in parallel worker processes (``--workers``, one thread each): the network is
so small that one thread per run is as fast as several. Time, as measured for the committed
``sinusoid_v2.json`` (two workers on two cores): per seed, MAML trains in about 570 s,
first-order MAML in 450 s, pooled pre-training in 110 s and multi-head pre-training in 135 s;
with the scoring, the 12 parts took 34 minutes. The three ``multihead_ridge`` parts were added
later by a rerun (``--no-progress --workers 1``) that read the other twelve back: 261 s. The
three ``cnp`` parts were added the same way (``--no-progress --workers 2``): 2,809 s of wall time
with other benchmarks sharing the two cores; seed 2, trained mostly alone, took 828 s.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

import mtlcode
from benchmarks.common import Partials, check_seeds_and_workers, over_seeds, parser, run_parts, write_result
from mtlcode import CNP, MAML
from mtlcode.evaluation import ci95_half_width
from mtlcode.learners.finetune import pretrain
from mtlcode.learners.ridge import ridge_weights, with_bias
from mtlcode.models import MLP
from mtlcode.tasks import Sinusoid, SinusoidBatch

# Each training and the methods scored from it.
TRAININGS = {"maml": ("maml",), "fomaml": ("fomaml",), "pooled": ("pretrained", "pretrained_adam"),
             "multihead": ("multihead_adam",), "multihead_ridge": ("multihead_ridge",), "cnp": ("cnp",)}
METHODS = tuple(m for methods in TRAININGS.values() for m in methods)
LABELS = {"maml": "MAML", "fomaml": "first-order MAML", "pretrained": "pooled pre-training, SGD (the paper's baseline)",
          "pretrained_adam": "pooled pre-training, Adam", "multihead_adam": "multi-head pre-training, Adam",
          "multihead_ridge": "multi-head pre-training, frozen body, ridge head (closed form)",
          "cnp": "conditional neural process (in context, no steps)"}
# Finn et al. (2017), K=5, MSE after 1 / 5 / 10 gradient steps (figure 3, as quoted in issue 4).
PUBLISHED = {"maml": {1: 0.67, 5: 0.38, 10: 0.35}, "pretrained": {1: 2.41, 5: 2.23, 10: 2.19}}
PAPER_STEPS = (1, 5, 10)                       # the old baseline's step size is tuned on these
BASELINE_STEP_SIZES = (0.001, 0.003, 0.01, 0.03, 0.1)
ADAM_LEARNING_RATES = (0.001, 0.003, 0.01, 0.03, 0.1)
RIDGE_PENALTIES = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)  # as many as the step-size grids above
DIVERGED_MSE = 100.0
# The conditional neural process: mtlcode.CNP's defaults, and the range of support-set sizes it
# trains on (one size per meta-batch, drawn uniformly, as Garnelo et al. train).
CNP_SETTINGS = {"hidden": [128, 128], "r_dim": 128, "train_shots": [5, 20]}  # JSON-ready: the fingerprint


@dataclass(frozen=True)
class Protocol:
    """Sizes of one run; the defaults are the paper's."""

    iterations: int = 70_000
    meta_batch: int = 25
    train_shots: int = 10
    inner_lr: float = 0.01
    meta_lr: float = 1e-3
    pool_tasks: int = 1000                     # multi-head pre-training: tasks, one head each
    test_tasks: int = 600
    val_tasks: int = 100
    queries: int = 100
    shots: tuple[int, ...] = (5, 10, 20)
    steps: tuple[int, ...] = (1, 5, 10, 100)


QUICK = Protocol(iterations=20, pool_tasks=20, test_tasks=12, val_tasks=6, queries=10, steps=(1, 2, 5, 10))


def network(seed: int) -> MLP:
    torch.manual_seed(seed)
    return MLP([1, 40, 40, 1])


# -- training ------------------------------------------------------------------------------------

class MultiHead(nn.Module):
    """The sinusoid network's body with one linear head per training task (multi-task learning)."""

    def __init__(self, body: nn.Module, features: int, tasks: int) -> None:
        super().__init__()
        self.body = body
        self.weight = nn.Parameter(torch.randn(tasks, features) / math.sqrt(features))
        self.bias = nn.Parameter(torch.zeros(tasks))

    def forward(self, x: Tensor, task: Tensor) -> Tensor:
        """``x [n, 1]`` with the task index of every point ``task [n]`` -> predictions ``[n, 1]``."""
        return ((self.body(x) * self.weight[task]).sum(-1) + self.bias[task]).unsqueeze(-1)


def pretrain_multihead(model: MLP, protocol: Protocol, seed: int, progress: bool) -> list[float]:
    """Fit ``pool_tasks`` fixed sinusoids with ``model.body`` and a head each; then ``model.head``
    becomes the mean head (the start for a new task). Each step sees what the pooled baseline sees:
    25 tasks of the pool x 20 fresh points."""
    generator = torch.Generator().manual_seed(seed)
    pool = Sinusoid().sample(protocol.pool_tasks, 1, 0, generator=generator)
    multi = MultiHead(model.body, model.head.in_features, protocol.pool_tasks)
    optimizer = torch.optim.Adam(multi.parameters(), lr=protocol.meta_lr)
    points, losses = 2 * protocol.train_shots, []
    for _ in tqdm(range(protocol.iterations), desc="multi-head", disable=not progress):
        task = torch.randint(protocol.pool_tasks, (protocol.meta_batch,), generator=generator).repeat_interleave(points)
        x = -5 + 10 * torch.rand(len(task), 1, generator=generator)
        y = Sinusoid.function(x, pool.amplitude[task, None], pool.phase[task, None])
        loss = F.mse_loss(multi(x, task), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    with torch.no_grad():
        model.head.weight.copy_(multi.weight.mean(0, keepdim=True))
        model.head.bias.copy_(multi.bias.mean().reshape(1))
    return losses


def train_cnp(protocol: Protocol, seed: int, progress: bool) -> tuple[CNP, list[float]]:
    """Meta-train a conditional neural process: support sets of a random size per meta-batch
    (``CNP_SETTINGS["train_shots"]``), ``train_shots`` queries, MAML's batch, rate and iterations."""
    torch.manual_seed(seed)  # the CNP's initial weights
    cnp = CNP(hidden=CNP_SETTINGS["hidden"], r_dim=CNP_SETTINGS["r_dim"])
    fewest, most = CNP_SETTINGS["train_shots"]
    sinusoid = Sinusoid()

    def tasks(generator: torch.Generator) -> SinusoidBatch:
        shots = int(torch.randint(fewest, most + 1, (1,), generator=generator))
        return sinusoid.sample(protocol.meta_batch, shots, protocol.train_shots, generator=generator)

    history = mtlcode.meta_train(cnp, tasks, protocol.iterations, protocol.meta_lr, seed=seed, progress=progress)
    return cnp, history["loss"]


def train(training: str, protocol: Protocol, seed: int,
          progress: bool = False) -> tuple[MLP | CNP, dict[str, Any]]:
    """Train one of ``TRAININGS`` from the seeded initialisation; the network and what training logged.

    MAML and first-order MAML meta-train with K=10 support and 10 query points per task. The
    pooled baseline sees the same number of points per step (25 tasks x 20 points, pooled) and
    fits them directly; the multi-head one the same, but each task of its pool has its own head.
    """
    started = time.perf_counter()
    model = network(seed)
    sinusoid = Sinusoid()
    shots, batch = protocol.train_shots, protocol.meta_batch
    if training in ("maml", "fomaml"):
        maml = MAML(model, protocol.inner_lr, first_order=training == "fomaml", loss=F.mse_loss)
        losses = mtlcode.meta_train(maml, lambda g: sinusoid.sample(batch, shots, shots, generator=g),
                                    protocol.iterations, protocol.meta_lr, seed=seed, progress=progress)["loss"]
    elif training == "pooled":
        def pooled_points(generator: torch.Generator) -> tuple[Tensor, Tensor]:
            tasks = sinusoid.sample(batch, 2 * shots, 1, generator=generator)
            return tasks.support_x.reshape(-1, 1), tasks.support_y.reshape(-1, 1)

        losses = pretrain(model, pooled_points, protocol.iterations, protocol.meta_lr, loss=F.mse_loss,
                          generator=torch.Generator().manual_seed(seed), progress=progress)
    elif training in ("multihead", "multihead_ridge"):  # the same training: the ridge part has its own file
        losses = pretrain_multihead(model, protocol, seed, progress)
    elif training == "cnp":
        model, losses = train_cnp(protocol, seed, progress)
    else:
        raise ValueError(f"unknown training {training!r}; choose from {tuple(TRAININGS)}")
    last = losses[-100:]
    return model, {"train_seconds": round(time.perf_counter() - started, 1), "final_train_loss": sum(last) / len(last)}


# -- adaptation: every weight, SGD or Adam, all tasks at once --------------------------------------

def batched_forward(model: MLP, params: dict[str, Tensor], x: Tensor) -> Tensor:
    """``model(x)`` for many tasks at once, each with its own weights.

    ``params[name]`` has a leading task dimension, ``x`` is ``[tasks, points, 1]``. Written out
    with batched matrix products for the MLP's layers: for a network this small, torch.func's
    ``vmap(grad(...))`` costs far more in overhead than in arithmetic.
    """
    layers = [(f"body.{name}", module) for name, module in model.body.named_children()] + [("head", model.head)]
    for name, module in layers:
        if isinstance(module, nn.Linear):
            x = torch.baddbmm(params[f"{name}.bias"].unsqueeze(1), x, params[f"{name}.weight"].transpose(1, 2))
        elif isinstance(module, nn.ReLU):
            x = torch.relu(x)
        else:
            raise TypeError(f"batched_forward knows Linear and ReLU layers, not {type(module).__name__}")
    return x


def adaptation_curves(model: MLP, tasks: SinusoidBatch, shots: int, optimizer: str, lrs: Sequence[float],
                      checkpoints: tuple[int, ...]) -> dict[float, dict[int, Tensor]]:
    """Per-task query MSE for every step size in ``lrs`` after each number of steps in ``checkpoints``.

    Full-batch steps on the first ``shots`` support points of every task, on every weight, all
    tasks and step sizes at once. ``optimizer`` ``"sgd"`` is exactly MAML's inner loop (and
    ``finetune(mode="all")``); ``"adam"`` is ``torch.optim.Adam`` with its defaults, one state per
    task. One pass gives every checkpoint: the run to 100 steps passes through 1, 5 and 10.
    """
    if optimizer not in ("sgd", "adam"):
        raise ValueError(f"optimizer must be 'sgd' or 'adam', got {optimizer!r}")
    lrs = list(dict.fromkeys(lrs))
    n, copies = len(tasks), len(lrs)
    params = {name: p.detach().expand(n * copies, *p.shape).clone() for name, p in model.named_parameters()}
    rate = torch.tensor(lrs, dtype=tasks.support_x.dtype, device=tasks.support_x.device).repeat_interleave(n)
    support_x, support_y, query_x, query_y = (t.repeat(copies, 1, 1) for t in
                                              (tasks.support_x[:, :shots], tasks.support_y[:, :shots],
                                               tasks.query_x, tasks.query_y))

    def mse(p: dict[str, Tensor], x: Tensor, y: Tensor) -> Tensor:  # per task
        return ((batched_forward(model, p, x) - y) ** 2).mean((1, 2))

    moments = [{name: torch.zeros_like(p) for name, p in params.items()} for _ in range(2)]
    curve = {0: mse(params, query_x, query_y)} if 0 in checkpoints else {}
    for step in range(1, max(checkpoints) + 1):
        for p in params.values():
            p.requires_grad_(True)
        # The tasks are independent, so the gradient of the sum holds every task's own gradient.
        grads = dict(zip(params, torch.autograd.grad(mse(params, support_x, support_y).sum(), list(params.values()))))
        with torch.no_grad():
            if optimizer == "sgd":
                params = {name: p - _per_task(rate, p) * grads[name] for name, p in params.items()}
            else:
                params = _adam_step(params, grads, *moments, step, rate)
            if step in checkpoints:
                curve[step] = mse(params, query_x, query_y)
    return {lr: {steps: values[i * n:(i + 1) * n] for steps, values in curve.items()} for i, lr in enumerate(lrs)}


def adaptation_curve(model: MLP, tasks: SinusoidBatch, shots: int, optimizer: str, lr: float,
                     checkpoints: tuple[int, ...]) -> dict[int, Tensor]:
    """:func:`adaptation_curves` for one step size: ``{steps: per-task query MSE}``."""
    return adaptation_curves(model, tasks, shots, optimizer, [lr], checkpoints)[lr]


def _per_task(rate: Tensor, like: Tensor) -> Tensor:
    return rate.view(-1, *([1] * (like.dim() - 1)))


def _adam_step(params: dict[str, Tensor], g: dict[str, Tensor], first: dict[str, Tensor],
               second: dict[str, Tensor], step: int, rate: Tensor, betas: tuple[float, float] = (0.9, 0.999),
               eps: float = 1e-8) -> dict[str, Tensor]:
    """One step of ``torch.optim.Adam``'s update with a step size per task; moments updated in place."""
    for name in params:
        first[name].mul_(betas[0]).add_(g[name], alpha=1 - betas[0])
        second[name].mul_(betas[1]).addcmul_(g[name], g[name], value=1 - betas[1])
    correction1, correction2 = 1 - betas[0] ** step, 1 - betas[1] ** step
    return {name: p - _per_task(rate, p) / correction1 * first[name] / ((second[name] / correction2).sqrt() + eps)
            for name, p in params.items()}


def diverged(values: Tensor) -> Tensor:
    """Tasks whose query MSE is not finite or above ``DIVERGED_MSE``."""
    return ~(values <= DIVERGED_MSE)


def summary(values: Tensor | list[float]) -> dict[str, Any]:
    """One seed's cell: mean and 95% t-interval over tasks, with and without diverged tasks, the
    median and the number of tasks that diverged (see :func:`diverged`); not finite -> None."""
    values = torch.as_tensor(values, dtype=torch.float64)
    bad = diverged(values)
    kept = values[~bad]

    def finite(x: float) -> float | None:
        return x if math.isfinite(x) else None

    mean = finite(values.mean().item())
    return {"mean": mean, "ci95": finite(ci95_half_width(values)) if mean is not None else None,
            "mean_without_diverged": finite(kept.mean().item()) if len(kept) else None,
            "ci95_without_diverged": finite(ci95_half_width(kept)) if len(kept) > 1 else None,
            "median": values.nanmedian().item(), "diverged": int(bad.sum()), "tasks": len(values)}


def validation_score(values: Tensor) -> float:
    """What a tuning picks by: the mean validation MSE, infinite when any task diverged."""
    return math.inf if bool(diverged(values).any()) else values.mean().item()


# -- a ridge head on the frozen body, in closed form ---------------------------------------------

def ridge_head_mse(model: MLP, tasks: SinusoidBatch, shots: int, penalties: Sequence[float]) -> dict[float, Tensor]:
    """Per-task query MSE of a ridge-regression head on ``model.body``'s frozen features, per penalty.

    For every task, the head ``[phi(x), 1] @ w`` minimises ``|[Phi, 1] w - y|^2 + penalty |w|^2``
    on the first ``shots`` support points (the bias penalised like the weights: R2-D2's
    :func:`~mtlcode.learners.ridge.ridge_weights`), all tasks in one batched solve, in float64
    (a small penalty leaves the system badly conditioned for float32). ``model.head`` is unused.
    """
    with torch.no_grad():
        support = with_bias(model.body(tasks.support_x[:, :shots]).double())  # [tasks, shots, features + 1]
        query = with_bias(model.body(tasks.query_x).double())
        targets, query_y = tasks.support_y[:, :shots].double(), tasks.query_y.double()
        return {penalty: ((query @ ridge_weights(support, targets, penalty) - query_y) ** 2).mean((1, 2))
                for penalty in dict.fromkeys(penalties)}


def tune_ridge_penalty(model: MLP, val: SinusoidBatch, shots: int) -> tuple[float, dict[float, float]]:
    """The penalty of ``RIDGE_PENALTIES`` with the best mean validation MSE for K=``shots``, and every score."""
    score = {penalty: validation_score(values) for penalty, values in ridge_head_mse(model, val, shots,
                                                                                     RIDGE_PENALTIES).items()}
    return min(score, key=score.get), score


# -- in context: a conditional neural process reads the support set ------------------------------

def cnp_cells(cnp: CNP, test: SinusoidBatch, protocol: Protocol) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """:func:`method_cells` for ``cnp``: one forward pass per test task on its first K support points,
    the score repeated at every step count (no steps are taken)."""
    rows = []
    with torch.no_grad():
        for shots in protocol.shots:
            predictions = cnp.predict(test.support_x[:, :shots], test.support_y[:, :shots], test.query_x)
            cell = summary(((predictions - test.query_y) ** 2).mean((1, 2)))
            rows += [{"method": "cnp", "K": shots, "steps": steps, "metric": "mse", "optimizer": "in context",
                      "lr": None, **cell} for steps in protocol.steps]
    return rows, {"optimizer": "in context", "settings": own_fingerprint("cnp"),
                  "note": "no gradient steps: the same prediction and score at every step count"}


# -- one part: one training, one seed ------------------------------------------------------------

@dataclass(frozen=True)
class Job:
    training: str
    seed: int
    protocol: Protocol
    task_seed: int
    partials: Partials
    progress: bool = False
    device: str = "cpu"


def tune_sgd_step_size(model: MLP, val: SinusoidBatch, shots: int) -> float:
    """The old baseline's step size for K=``shots``: best summed mean over the paper's step counts.

    Step sizes under which some validation task diverges are no candidates (the least-bad
    median decides if all are out)."""
    curves = adaptation_curves(model, val, shots, "sgd", BASELINE_STEP_SIZES, PAPER_STEPS)
    score = {lr: sum(validation_score(c[s]) for s in PAPER_STEPS) for lr, c in curves.items()}
    if all(math.isinf(v) for v in score.values()):
        score = {lr: sum(c[s].nanmedian().item() for s in PAPER_STEPS) for lr, c in curves.items()}
    return min(score, key=score.get)


def tune_adam_rates(model: MLP, val: SinusoidBatch, shots: int, protocol: Protocol) -> dict[int, float]:
    """Adam's learning rate for K=``shots``, one per number of steps: the best validation mean."""
    curves = adaptation_curves(model, val, shots, "adam", ADAM_LEARNING_RATES, protocol.steps)
    best = {}
    for steps in protocol.steps:
        score = {lr: validation_score(c[steps]) for lr, c in curves.items()}
        if all(math.isinf(v) for v in score.values()):
            score = {lr: c[steps].nanmedian().item() for lr, c in curves.items()}
        best[steps] = min(score, key=score.get)
    return best


def method_cells(method: str, model: MLP | CNP, test: SinusoidBatch, val: SinusoidBatch,
                 protocol: Protocol) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Every (K, steps) cell of one method on the test tasks, and the step sizes it used."""
    if method == "multihead_ridge":
        return ridge_cells(model, test, val, protocol)
    if method == "cnp":
        return cnp_cells(model, test, protocol)
    rows, rates = [], {}
    for shots in protocol.shots:
        if method in ("maml", "fomaml"):  # the step size they were meta-trained for
            lr = {s: protocol.inner_lr for s in protocol.steps}
        elif method == "pretrained":
            lr = dict.fromkeys(protocol.steps, tune_sgd_step_size(model, val, shots))
        else:
            lr = tune_adam_rates(model, val, shots, protocol)
        optimizer = "adam" if method.endswith("_adam") else "sgd"
        curves = adaptation_curves(model, test, shots, optimizer, list(lr.values()), protocol.steps)
        for steps in protocol.steps:
            rows.append({"method": method, "K": shots, "steps": steps, "metric": "mse", "optimizer": optimizer,
                         "lr": lr[steps], **summary(curves[lr[steps]][steps])})
        rates[shots] = lr
    return rows, {"optimizer": "adam" if method.endswith("_adam") else "sgd", "test_lr": rates}


def ridge_cells(model: MLP, test: SinusoidBatch, val: SinusoidBatch,
                protocol: Protocol) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """:func:`method_cells` for ``multihead_ridge``: the penalty per K from the validation tasks, then
    one closed-form fit per test task, its score repeated at every step count (no steps are taken)."""
    rows, penalties, validation = [], {}, {}
    for shots in protocol.shots:
        penalty, validation[shots] = tune_ridge_penalty(model, val, shots)
        cell = summary(ridge_head_mse(model, test, shots, [penalty])[penalty])
        rows += [{"method": "multihead_ridge", "K": shots, "steps": steps, "metric": "mse",
                  "optimizer": "closed form", "lr": None, "ridge_penalty": penalty, **cell}
                 for steps in protocol.steps]
        penalties[shots] = penalty
    return rows, {"optimizer": "closed form", "ridge_penalty": penalties, "validation_mse": validation,
                  "note": "no gradient steps: the same fit and score at every step count"}


def own_fingerprint(training: str) -> dict[str, Any] | None:
    """What only ``training``'s parts depend on, beyond the shared fingerprint (None: nothing).

    ``multihead_ridge`` has its grid of penalties, ``cnp`` its settings; the other parts'
    fingerprints are the ones they were written with."""
    if training == "multihead_ridge":
        return {"ridge_penalties": list(RIDGE_PENALTIES)}
    if training == "cnp":
        return {"cnp": dict(CNP_SETTINGS)}
    return None


def run_job(job: Job) -> dict[str, Any]:
    """Train one training with one seed, score its methods on the shared test tasks, save the part."""
    torch.set_num_threads(1)
    started = time.perf_counter()
    p = job.protocol
    model, info = train(job.training, p, job.seed, job.progress)
    # The v1 benchmark's test and validation tasks (seeds task_seed + 1 and + 2).
    test, val = (Sinusoid().sample(count, max(p.shots), p.queries,
                                   generator=torch.Generator().manual_seed(job.task_seed + offset))
                 for count, offset in ((p.test_tasks, 1), (p.val_tasks, 2)))
    rows = []
    for method in TRAININGS[job.training]:
        cells, info[method] = method_cells(method, model.to(job.device), test.to(job.device), val.to(job.device), p)
        rows += cells
    info["seconds"] = round(time.perf_counter() - started, 1)  # training and scoring
    part = {"rows": rows, "info": info}
    job.partials.save(job.training, job.seed, part, own_fingerprint(job.training))
    return part


# -- combining -----------------------------------------------------------------------------------

def combine(parts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (method, K, steps): seed means with t-intervals over seeds, per-seed numbers beside."""
    cells: dict[tuple[str, int, int], list[tuple[int, dict[str, Any]]]] = {}
    for part in parts:
        for row in part["rows"]:
            cells.setdefault((row["method"], row["K"], row["steps"]), []).append((part["seed"], row))
    rows = []
    for (method, shots, steps), found in cells.items():
        found.sort(key=lambda item: item[0])
        seed_rows = [row for _, row in found]
        with_all = over_seeds([r["mean"] for r in seed_rows])
        without = over_seeds([r["mean_without_diverged"] for r in seed_rows])
        medians = [r["median"] for r in seed_rows]
        rows.append({
            "method": method, "label": LABELS[method], "K": shots, "steps": steps, "metric": "mse",
            "optimizer": seed_rows[0]["optimizer"],
            "mean": with_all["mean"], "ci95": with_all["ci95"],
            "mean_without_diverged": without["mean"], "ci95_without_diverged": without["ci95"],
            "median": sum(medians) / len(medians), "diverged": sum(r["diverged"] for r in seed_rows),
            "diverged_per_seed": [r["diverged"] for r in seed_rows], "seeds": len(seed_rows),
            "training_seeds": [seed for seed, _ in found], "per_seed": [r["mean"] for r in seed_rows],
            "per_seed_ci95": [r["ci95"] for r in seed_rows],
            "per_seed_without_diverged": [r["mean_without_diverged"] for r in seed_rows],
            "per_seed_median": medians, "tasks": seed_rows[0]["tasks"], "lr": [r["lr"] for r in seed_rows],
            **({"ridge_penalty": [r["ridge_penalty"] for r in seed_rows]} if "ridge_penalty" in seed_rows[0] else {}),
        })
    return rows


def plot(rows: list[dict[str, Any]], protocol: Protocol, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(protocol.shots), figsize=(4.4 * len(protocol.shots), 3.6), sharey=True)
    for ax, shots in zip(axes, protocol.shots):
        for method in METHODS:
            mine = [r for r in rows if r["method"] == method and r["K"] == shots and r["mean_without_diverged"]]
            ax.errorbar([r["steps"] for r in mine], [r["mean_without_diverged"] for r in mine],
                        yerr=[r["ci95_without_diverged"] or 0 for r in mine], marker="o", ms=3, capsize=2,
                        label=method, linestyle="--" if method in ("multihead_ridge", "cnp") else "-")
            if shots == 5 and method in PUBLISHED:
                ax.plot(list(PUBLISHED[method]), list(PUBLISHED[method].values()), "x--", color="grey",
                        label=f"{method} (paper)")
        ax.set(title=f"K = {shots}", xlabel="gradient steps at test time", xscale="log", yscale="log")
    axes[0].set_ylabel("query MSE: mean over non-diverged tasks,\nmean over seeds (95% t-interval)", fontsize=8)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def print_table(result: dict[str, Any]) -> None:
    def pm(mean: float | None, ci95: float | None) -> str:
        return "not finite" if mean is None else f"{mean:.3f}" + ("" if ci95 is None else f" ± {ci95:.3f}")

    for r in result["rows"]:
        print(f"{r['method']:>16}  K={r['K']:<3} steps={r['steps']:<4} MSE all tasks {pm(r['mean'], r['ci95'])}, "
              f"without diverged {pm(r['mean_without_diverged'], r['ci95_without_diverged'])}, "
              f"diverged per seed {r['diverged_per_seed']}")
    print(f"wall time {result['wall_seconds']:.0f} s, parts computed now: {len(result['computed'])}")


def partials_of(out: Path, protocol: Protocol, task_seed: int) -> Partials:
    """The parts of a run writing ``out``; load each with :func:`own_fingerprint` of its training."""
    return Partials(out, {"protocol": asdict(protocol), "task_seed": task_seed, "diverged_mse": DIVERGED_MSE},
                    required=("info",), row_keys=("method", "K", "steps"))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = parser(__doc__.splitlines()[0], "sinusoid_v2.json")
    p.add_argument("--quick", action="store_true", help="tiny sizes (for tests)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds (default 0 1 2)")
    p.add_argument("--iterations", type=int, default=None, help="override the number of training steps")
    p.add_argument("--workers", type=int, default=min(3, os.cpu_count() or 1),
                   help="train in this many processes (1: in this process)")
    args = p.parse_args(argv)
    started = time.perf_counter()
    protocol = QUICK if args.quick else Protocol()
    if args.iterations is not None:
        if args.iterations < 1:
            p.error("--iterations must be at least 1")
        protocol = replace(protocol, iterations=args.iterations)
    check_seeds_and_workers(p, args)
    device = torch.device(args.device) if args.device else torch.device("cpu")
    mtlcode.seed_everything(args.seed)

    partials = partials_of(args.out, protocol, args.seed)
    jobs = [Job(training, seed, protocol, args.seed, partials, not args.no_progress and args.workers == 1, str(device))
            for training in TRAININGS for seed in args.seeds]
    todo = [job for job in jobs if partials.load(job.training, job.seed, own_fingerprint(job.training)) is None]
    run_parts(run_job, todo, args.workers, progress=not args.no_progress, desc="sinusoid parts")
    parts = [partials.load(job.training, job.seed, own_fingerprint(job.training)) for job in jobs]
    rows = combine(parts)
    published = [{"method": m, "K": 5, "steps": s, "metric": "mse", "mean": v, "source": "finn2017maml"}
                 for m, by_steps in PUBLISHED.items() for s, v in by_steps.items()]
    result = write_result(args.out, rows, started, 40 * 60.0, device, args.seed, "benchmarks.sinusoid", argv,
                          interval="t", seeds=list(args.seeds), protocol=asdict(protocol), diverged_mse=DIVERGED_MSE,
                          labels=LABELS, partial_dir=partials.folder.name,
                          computed=[f"{j.training}-seed{j.seed}" for j in todo],
                          methods={f"{part['job']}-seed{part['seed']}": part["info"] for part in parts},
                          published=published)
    plot(rows, protocol, args.out.with_suffix(".png"))
    if not args.no_progress:
        print_table(result)
    return result


if __name__ == "__main__":
    main()
