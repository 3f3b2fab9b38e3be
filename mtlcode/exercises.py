"""Checks for the book's coding exercises.

Each ``check_*`` function takes *your* function, runs it on small inputs drawn with a fixed seed,
runs the reference implementation from ``mtlcode`` on the same inputs, and compares the two in
float64, so that a correct answer agrees to rounding error. It prints one line per case. The
first case that fails prints what was expected, what your function returned and a hint, then
raises ``AssertionError``, so a notebook run stops at a wrong answer. A function that still
raises ``NotImplementedError`` (an exercise not done yet) is let through unchanged.

Every check is its own small function below; read it to see exactly what is tested. Checks draw
their random numbers inside ``torch.random.fork_rng``: calling one does not change the random
numbers of the notebook around it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtlcode.evaluation import task_metric
from mtlcode.finetune import finetune, new_head
from mtlcode.maml import MAML
from mtlcode.models import MLP
from mtlcode.rl import discounted_returns
from mtlcode.tasks import Sinusoid, TaskBatch

__all__ = [
    "check_batched_inner_step",
    "check_discounted_returns",
    "check_finetune_head",
    "check_first_order_meta_gradient",
    "check_inner_loop",
    "check_meta_gradient",
    "check_nway_kshot",
    "check_task_mse",
]

Params = dict[str, Tensor]
RTOL, ATOL = 1e-6, 1e-8  # float64 inputs: a right answer agrees far better than this


# -- reporting ---------------------------------------------------------------------------------

def _failure(exercise: str, case: str, expected: str, got: str, hint: str) -> AssertionError:
    """Print the feedback for a failed case and return the error to raise."""
    print(f"✗ {exercise}: case '{case}' failed\n"
          f"    expected: {expected}\n"
          f"    got:      {got}\n"
          f"    hint:     {hint}")
    return AssertionError(f"{exercise}: case '{case}' failed: expected {expected}, got {got}")


def _passed(exercise: str, cases: list[str]) -> None:
    print(f"✓ {exercise}: all {len(cases)} cases passed")
    for case in cases:
        print(f"    ✓ {case}")


def _call(exercise: str, case: str, fn: Callable[..., Any], *args: Any) -> Any:
    """Call the student's function; an error other than NotImplementedError becomes feedback."""
    try:
        return fn(*args)
    except NotImplementedError:
        raise
    except Exception as error:
        raise _failure(exercise, case, "a result", f"{type(error).__name__}: {error}",
                       "your function raised this error on this case; the traceback below shows where") from error


@contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Seed the global RNG for the duration of a check, then restore the caller's RNG state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


# -- comparing ---------------------------------------------------------------------------------

def _mismatch(expected: Tensor, got: Any, name: str = "") -> tuple[str, str] | None:
    """None when ``got`` matches ``expected``, else ``(expected, got)`` described for a person."""
    label = f"{name} " if name else ""
    if not isinstance(got, Tensor):
        return f"{label}a tensor of shape {tuple(expected.shape)}", f"{type(got).__name__}"
    if tuple(got.shape) != tuple(expected.shape):
        return f"{label}shape {tuple(expected.shape)}", f"shape {tuple(got.shape)}"
    got = got.detach().cpu().to(expected.dtype)
    if torch.allclose(got, expected, rtol=RTOL, atol=ATOL):
        return None
    i = int((got - expected).abs().argmax())
    index = list(torch.unravel_index(torch.tensor(i), expected.shape)) if expected.dim() else []
    where = f"{label}[{', '.join(str(int(k)) for k in index)}]" if index else label.strip() or "value"
    return f"{where} = {expected.flatten()[i].item():.6g}", f"{where} = {got.flatten()[i].item():.6g}"


def _same(expected: Tensor, got: Any) -> bool:
    return _mismatch(expected, got) is None


def _params_mismatch(expected: Params, got: Any) -> tuple[str, str] | None:
    """Like :func:`_mismatch` for parameter dicts ``{name: tensor}``."""
    if not isinstance(got, dict):
        return f"a dict {{name: tensor}} with keys {list(expected)}", type(got).__name__
    if set(got) != set(expected):
        return f"keys {list(expected)}", f"keys {list(got)}"
    for name, tensor in expected.items():
        problem = _mismatch(tensor, got[name], name)
        if problem:
            return problem
    return None


def _same_params(expected: Params, got: Any) -> bool:
    return _params_mismatch(expected, got) is None


def _diagnose(got: Any, mistakes: list[tuple[Any, str]], default: str) -> str:
    """The hint of the first known mistake whose result equals ``got``, else ``default``."""
    for value, hint in mistakes:
        same = _same_params(value, got) if isinstance(value, dict) else _same(value, got)
        if same:
            return hint
    return default


def _snapshot(params: Params) -> Params:
    return {name: p.detach().clone() for name, p in params.items()}


# -- shared small problems ---------------------------------------------------------------------

def _sinusoid_problem(tasks: int, shots: int, seed: int) -> tuple[nn.Module, TaskBatch]:
    """A small float64 MLP and sinusoid tasks, the same for every call with the same seed."""
    torch.manual_seed(seed)
    model = MLP([1, 8, 8, 1]).double()
    batch = Sinusoid().sample(tasks, shots, shots, generator=torch.Generator().manual_seed(seed))
    return model, batch.to("cpu", dtype=torch.float64)


def _meta_gradient(model: nn.Module, batch: TaskBatch, alpha: float, first_order: bool = False,
                   inner_steps: int = 1) -> Params:
    """The reference: gradient of ``MAML.meta_loss`` with respect to the model's parameters."""
    maml = MAML(model, inner_lr=alpha, inner_steps=inner_steps, first_order=first_order, loss=F.mse_loss)
    params = maml.params()
    return dict(zip(params, torch.autograd.grad(maml.meta_loss(batch), list(params.values()))))


# -- chapter 1 ---------------------------------------------------------------------------------

def check_task_mse(task_mse: Callable[[Tensor, Tensor], Tensor]) -> None:
    """Check ``task_mse(predictions, targets)``: the mean squared error of every task.

    Both inputs are shaped ``[tasks, points, outputs]``; the answer has one number per task,
    shaped ``[tasks]``. Reference: :func:`mtlcode.evaluation.task_metric`.
    """
    exercise, cases = "task_mse", []
    hint = ("one number per task: square the errors, then average over every dimension except the "
            "first one (the tasks)")
    generator = torch.Generator().manual_seed(0)
    for case, shape in (("4 tasks of 6 points", (4, 6, 1)), ("1 task of 3 points with 2 outputs", (1, 3, 2))):
        predictions = torch.randn(*shape, generator=generator, dtype=torch.float64)
        targets = torch.randn(*shape, generator=generator, dtype=torch.float64)
        expected = task_metric(predictions, targets)
        got = _call(exercise, case, task_mse, predictions.clone(), targets.clone())
        problem = _mismatch(expected, got)
        if problem:
            raise _failure(exercise, case, *problem, hint)
        cases.append(case)
    _passed(exercise, cases)


# -- chapter 2 ---------------------------------------------------------------------------------

def check_nway_kshot(sample_task: Callable[[Tensor, int, int, int, torch.Generator], tuple[Tensor, Tensor]]) -> None:
    """Check ``sample_task(targets, ways, shots, queries, generator)``, an N-way K-shot sampler.

    ``targets[i]`` is the class of example ``i``. The answer is ``(support, query)``: dataset
    indices shaped ``[ways, shots]`` and ``[ways, queries]``, row ``r`` holding examples of the
    class that gets label ``r``. A sampler is random, so instead of comparing numbers the check
    tests, over 200 draws, the properties that :meth:`mtlcode.tasks.NWayKShot.sample_indices`
    guarantees: one class per row, different classes in different rows, no example twice, every
    class in every row sometimes, and the same task for the same seed.
    """
    exercise, cases = "sample_task", []
    classes, per_class, ways, shots, queries = 8, 6, 5, 2, 3
    # Examples of the 8 classes in a shuffled order: an index is not a class.
    targets = torch.arange(classes).repeat_interleave(per_class)[
        torch.randperm(classes * per_class, generator=torch.Generator().manual_seed(0))]

    case = "shapes and integer indices"
    got = _call(exercise, case, sample_task, targets.clone(), ways, shots, queries, torch.Generator().manual_seed(0))
    expected = f"(support, query) index tensors shaped {(ways, shots)} and {(ways, queries)}"
    if not (isinstance(got, tuple | list) and len(got) == 2 and all(isinstance(t, Tensor) for t in got)):
        raise _failure(exercise, case, expected, repr(got)[:80], "return a pair of tensors: (support, query)")
    if tuple(got[0].shape) != (ways, shots) or tuple(got[1].shape) != (ways, queries):
        raise _failure(exercise, case, expected, f"shapes {tuple(got[0].shape)} and {tuple(got[1].shape)}",
                       "one row per class: support [ways, shots], query [ways, queries]")
    if got[0].is_floating_point() or got[1].is_floating_point():
        raise _failure(exercise, case, "integer indices", f"{got[0].dtype} and {got[1].dtype}",
                       "indices are integers (torch.randperm gives int64)")
    cases.append(case)

    generator = torch.Generator().manual_seed(1)
    draws = [_call(exercise, "200 draws", sample_task, targets.clone(), ways, shots, queries, generator)
             for _ in range(200)]
    rows = [(torch.cat([s, q], dim=1)) for s, q in draws]  # [ways, shots + queries] per draw
    if any(not ((r >= 0) & (r < len(targets))).all() for r in rows):
        raise _failure(exercise, "indices in range", f"indices in [0, {len(targets)})", "an index out of range",
                       "return positions in the dataset, not class numbers")

    case = "each row holds one class"
    for d, r in enumerate(rows):
        labels = targets[r]
        bad = [i for i in range(ways) if not (labels[i] == labels[i, 0]).all()]
        if bad:
            raise _failure(exercise, case, f"draw {d}, row {bad[0]}: every example of one class",
                           f"classes {labels[bad[0]].tolist()}",
                           "draw the examples of row r from the examples of its class only")
    cases.append(case)

    case = "rows hold different classes"
    for d, r in enumerate(rows):
        chosen = targets[r[:, 0]]
        if len(chosen.unique()) != ways:
            raise _failure(exercise, case, f"draw {d}: {ways} different classes", f"classes {chosen.tolist()}",
                           "choose the classes without replacement (torch.randperm), not with torch.randint")
    cases.append(case)

    case = "no example twice in a task"
    for d, r in enumerate(rows):
        if len(r.unique()) != r.numel():
            raise _failure(exercise, case, f"draw {d}: {r.numel()} different examples",
                           f"{r.numel() - len(r.unique())} repeated", "draw the shots + queries examples of a class "
                           "together, without replacement, then split them into support and query")
    cases.append(case)

    case = "every class appears in every row"
    seen = torch.zeros(ways, classes, dtype=torch.bool)
    for r in rows:
        seen[torch.arange(ways), targets[r[:, 0]]] = True
    if not seen.all():
        row, missing = (~seen).nonzero()[0].tolist()
        raise _failure(exercise, case, f"class {missing} in row {row} in some of 200 draws", "never",
                       "draw the classes at random from all classes and give them the labels in a random order "
                       "(the order torch.randperm returns), not sorted")
    cases.append(case)

    case = "same generator seed, same task"
    first = _call(exercise, case, sample_task, targets.clone(), ways, shots, queries, torch.Generator().manual_seed(7))
    second = _call(exercise, case, sample_task, targets.clone(), ways, shots, queries, torch.Generator().manual_seed(7))
    if not (torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])):
        raise _failure(exercise, case, "two identical tasks", "two different tasks",
                       "take every random number from `generator` (torch.randperm(n, generator=generator))")
    cases.append(case)
    _passed(exercise, cases)


# -- chapter 3 ---------------------------------------------------------------------------------

def check_inner_loop(inner_loop: Callable[[nn.Module, Params, Tensor, Tensor, float, int], Params]) -> None:
    """Check ``inner_loop(model, params, support_x, support_y, alpha, steps)``: MAML's inner loop.

    The answer is the dict of adapted parameters after ``steps`` gradient steps of size ``alpha``
    on the mean squared error of the support set, differentiable with respect to ``params`` (the
    second-order meta-gradient flows through it). ``params`` must not change. Reference:
    :meth:`mtlcode.MAML.adapt`.
    """
    exercise, cases = "inner_loop", []
    alpha = 0.05
    with _seeded(0):
        model, batch = _sinusoid_problem(tasks=1, shots=5, seed=0)
    task = batch[0]
    theta = dict(model.named_parameters())
    maml = MAML(model, inner_lr=alpha, loss=F.mse_loss)

    def adapted(steps: int, first_order: bool = False) -> Params:
        learner = MAML(model, inner_lr=alpha, first_order=first_order, loss=F.mse_loss)
        return learner.adapt(task.support_x, task.support_y, steps=steps, params=theta)

    case = "theta is left unchanged"
    before = _snapshot(theta)
    got = _call(exercise, case, inner_loop, model, theta, task.support_x, task.support_y, alpha, 1)
    problem = _params_mismatch(before, _snapshot(theta))
    if problem:
        raise _failure(exercise, case, *problem, "build new tensors (p - alpha * g); do not update params in place")
    cases.append(case)

    for case, steps in (("one step", 1), ("three steps", 3)):
        if steps != 1:
            got = _call(exercise, case, inner_loop, model, theta, task.support_x, task.support_y, alpha, steps)
        expected = {name: p.detach() for name, p in adapted(steps).items()}
        problem = _params_mismatch(expected, got)
        if problem:
            gradient_at_theta = {name: theta[name] - steps * (theta[name] - p)
                                 for name, p in adapted(1).items()}
            hint = _diagnose(got, [
                (_snapshot(gradient_at_theta), "every step used the gradient at theta: take each step's gradient "
                                               "at the parameters of the previous step"),
                (_snapshot(adapted(1)), "that is one step: repeat the update `steps` times"),
            ], "one step is params - alpha * gradient of F.mse_loss(functional_call(model, params, (x,)), y)")
            raise _failure(exercise, case, *problem, hint)
        cases.append(case)

    case = "meta-gradient through two steps"
    got = _call(exercise, case, inner_loop, model, theta, task.support_x, task.support_y, alpha, 2)

    def meta_gradient(params: Params) -> Params:
        loss = F.mse_loss(maml.predict(params, task.query_x), task.query_y)
        grads = torch.autograd.grad(loss, list(theta.values()), allow_unused=True)
        return {name: torch.zeros_like(p) if g is None else g for (name, p), g in zip(theta.items(), grads)}

    try:
        got_gradient = meta_gradient(got)
    except RuntimeError as error:
        raise _failure(exercise, case, "adapted parameters that depend on theta", f"RuntimeError: {error}",
                       "do not detach the parameters or compute the step under torch.no_grad()") from error
    problem = _params_mismatch(meta_gradient(adapted(2)), got_gradient)
    if problem:
        hint = _diagnose(got_gradient, [(meta_gradient(adapted(2, first_order=True)),
                                         "this is the first-order meta-gradient: pass create_graph=True to "
                                         "torch.autograd.grad, so that the step itself can be differentiated")],
                         "the query loss must be differentiable through every inner step")
        raise _failure(exercise, case, *problem, hint)
    cases.append(case)
    _passed(exercise, cases)


def _check_meta_gradient(exercise: str, fn: Callable[[nn.Module, TaskBatch, float], Params], first_order: bool,
                         default_hint: str) -> None:
    """Shared by the first- and second-order meta-gradient checks."""
    cases = []
    alpha = 0.05
    with _seeded(1):
        model, batch = _sinusoid_problem(tasks=4, shots=5, seed=1)
    theta = dict(model.named_parameters())
    for case, tasks in (("one task", batch[:1]), ("four tasks", batch)):
        before = _snapshot(theta)
        got = _call(exercise, case, fn, model, tasks, alpha)
        problem = _params_mismatch(before, _snapshot(theta))
        if problem:
            raise _failure(exercise, f"{case}: theta is left unchanged", *problem,
                           "compute the gradient only; do not take an optimiser step")
        expected = _meta_gradient(model, tasks, alpha, first_order=first_order)
        problem = _params_mismatch(expected, got)
        if problem:
            exact = _meta_gradient(model, tasks, alpha)
            first = _meta_gradient(model, tasks, alpha, first_order=True)
            hint = _diagnose(got, [
                ({n: g * len(tasks) for n, g in expected.items()},
                 "this is the sum over the tasks: the meta-loss is the *mean* query loss, so average"),
                (first if not first_order else exact,
                 "this is the first-order meta-gradient: keep the graph of the inner gradient "
                 "(create_graph=True)" if not first_order else
                 "this is the second-order meta-gradient: treat the inner gradient as a constant "
                 "(no create_graph, or .detach() it)"),
                (_meta_gradient(model, tasks, alpha, inner_steps=0),
                 "this is the query gradient at theta: take it at the adapted parameters theta'"),
                ({n: 2 * first[n] - exact[n] for n in exact},
                 "the sign of the Hessian term is flipped: (I - alpha H) times the query gradient"),
            ], default_hint)
            raise _failure(exercise, case, *problem, hint)
        cases.append(case)
    _passed(exercise, cases)


def check_first_order_meta_gradient(fomaml_gradient: Callable[[nn.Module, TaskBatch, float], Params]) -> None:
    """Check ``fomaml_gradient(model, batch, alpha)``: the first-order MAML meta-gradient.

    The answer is a dict ``{name: gradient}`` for ``model.named_parameters()``: the gradient of
    the mean over tasks of the query loss (mean squared error) after one inner step of size
    ``alpha``, with the inner gradient treated as a constant. Reference:
    ``mtlcode.MAML(first_order=True).meta_loss``.
    """
    _check_meta_gradient("fomaml_gradient", fomaml_gradient, first_order=True,
                         default_hint="per task: theta' = theta - alpha * (support gradient, as a constant); "
                                      "then the query gradient at theta'; average over tasks")


def check_meta_gradient(meta_gradient: Callable[[nn.Module, TaskBatch, float], Params]) -> None:
    """Check ``meta_gradient(model, batch, alpha)``: the exact (second-order) MAML meta-gradient.

    Same contract as :func:`check_first_order_meta_gradient`, but the gradient flows through
    the inner step: ``(I - alpha H) grad L_query(theta')`` per task, averaged. Reference:
    ``mtlcode.MAML(first_order=False).meta_loss``.
    """
    _check_meta_gradient("meta_gradient", meta_gradient, first_order=False,
                         default_hint="per task: (I - alpha H) times the query gradient at theta', with H the "
                                      "Hessian of the support loss at theta; average over tasks")


# -- chapter 5 ---------------------------------------------------------------------------------

def check_finetune_head(finetune_head: Callable[[nn.Module, nn.Linear, Tensor, Tensor, int, float], nn.Module]) -> None:
    """Check ``finetune_head(model, head, support_x, support_y, steps, lr)``: head-only fine-tuning.

    ``model`` has a ``body`` and a ``head``; ``head`` is a fresh ``nn.Linear`` for the new
    classes. The answer is a network (``model``'s body followed by the trained head) after
    ``steps`` full-batch SGD steps of size ``lr`` on the cross-entropy of the support set, the
    body frozen; ``model`` itself must not change. Reference:
    ``mtlcode.finetune.finetune(mode="head")``.
    """
    exercise, cases = "finetune_head", []
    ways, lr = 5, 0.5
    with _seeded(2):
        model = MLP([4, 16, 16, 3]).double()  # stands for a network pre-trained on 3 source classes
        support_x = torch.randn(2 * ways, 4, dtype=torch.float64)
        support_y = torch.arange(ways).repeat(2)
        query_x = torch.randn(3 * ways, 4, dtype=torch.float64)

    def run(fn: Callable[..., nn.Module], steps: int, case: str) -> nn.Module:
        with _seeded(3):  # the fresh head's initialisation is the same for both sides
            return _call(exercise, case, fn, model, new_head(model, ways), support_x, support_y, steps, lr)

    def reference(steps: int, mode: str = "head") -> nn.Module:
        with _seeded(3):
            return finetune(model, support_x, support_y, steps=steps, lr=lr, mode=mode, ways=ways)

    def predictions(network: nn.Module) -> Tensor:
        with torch.no_grad():
            return network(query_x)

    before = _snapshot(dict(model.named_parameters()))
    trainable = [p.requires_grad for p in model.parameters()]
    for case, steps in (("one step", 1), ("five steps", 5)):
        got = run(finetune_head, steps, case)
        problem = _params_mismatch(before, _snapshot(dict(model.named_parameters())))
        if not problem and [p.requires_grad for p in model.parameters()] != trainable:
            problem = "every parameter of model trainable, as before", "some of model's parameters frozen"
        if problem:
            raise _failure(exercise, "the pre-trained model is left unchanged", *problem,
                           "work on a copy (copy.deepcopy(model)): never assign to model.head or freeze model.body")
        if not isinstance(got, nn.Module):
            raise _failure(exercise, case, "a network (an nn.Module)", type(got).__name__,
                           "return the fine-tuned network, e.g. a copy of model with the trained head")
        expected = predictions(reference(steps))
        got_predictions = _call(exercise, case, predictions, got)
        problem = _mismatch(expected, got_predictions, "query predictions")
        if problem:
            hint = _diagnose(got_predictions, [
                (predictions(reference(steps, mode="all")),
                 "these are the predictions of fine-tuning every parameter: freeze the body, train the head only"),
                (predictions(reference(0)), "the head has not been trained: take `steps` SGD steps on its parameters"),
            ], "the gradients of several steps add up unless you zero them at every step"
               if steps > 1 else "train the `head` you are given (do not make a new one) with one SGD step: "
                                 "head parameters -= lr * gradient of F.cross_entropy(head(features), y)")
            raise _failure(exercise, case, *problem, hint)
        cases.append(case)
    cases.insert(0, "the pre-trained model is left unchanged")
    _passed(exercise, cases)


# -- chapter 6 ---------------------------------------------------------------------------------

def check_discounted_returns(returns_to_go: Callable[[Tensor, float], Tensor]) -> None:
    """Check ``returns_to_go(rewards, gamma)``: the discounted reward-to-go at every step.

    ``rewards`` has time as its last dimension; the answer has the same shape, with
    ``sum_{k >= t} gamma^(k - t) r_k`` at step ``t``. Reference:
    :func:`mtlcode.rl.discounted_returns`.
    """
    exercise, cases = "returns_to_go", []
    generator = torch.Generator().manual_seed(4)
    for case, rewards, gamma in (
        ("rewards [1, 2, 3], gamma 0.5", torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64), 0.5),
        ("rewards [1, 2, 3], gamma 1", torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64), 1.0),
        ("2 tasks x 3 episodes x 5 steps, gamma 0.9", torch.randn(2, 3, 5, generator=generator, dtype=torch.float64),
         0.9),
    ):
        expected = discounted_returns(rewards, gamma)
        got = _call(exercise, case, returns_to_go, rewards.clone(), gamma)
        problem = _mismatch(expected, got)
        if problem:
            steps = torch.arange(rewards.shape[-1], dtype=torch.float64)
            hint = _diagnose(got, [
                (discounted_returns(rewards, 1.0), "the rewards are not discounted: multiply by gamma at every step"),
                (discounted_returns(rewards.flip(-1), gamma).flip(-1),
                 "this sums the rewards up to step t: the return at t sums those from t on"),
                (gamma**steps * expected, "the discount counts from the start of the episode: gamma^(k - t), "
                                          "not gamma^k"),
            ], "go backwards in time: G_t = r_t + gamma * G_(t+1), with G after the last step = 0")
            raise _failure(exercise, case, *problem, hint)
        cases.append(case)
    _passed(exercise, cases)


# -- chapter 7 ---------------------------------------------------------------------------------

def check_batched_inner_step(batched_inner_step: Callable[[nn.Module, Params, Tensor, Tensor, float], Params]) -> None:
    """Check ``batched_inner_step(model, params, support_x, support_y, alpha)``.

    ``support_x`` and ``support_y`` are shaped ``[tasks, shots, 1]``. The answer is one inner
    step per task, all tasks at once: a dict whose tensors gain a leading task dimension, entry
    ``i`` being ``params - alpha * grad L_i(params)`` for the mean squared error of task ``i``.
    Reference: :meth:`mtlcode.MAML.inner_step` applied to the tasks one by one.
    """
    exercise, cases = "batched_inner_step", []
    alpha = 0.05
    with _seeded(5):
        model, batch = _sinusoid_problem(tasks=5, shots=4, seed=5)
    params = {name: p.detach() for name, p in model.named_parameters()}
    maml = MAML(model, inner_lr=alpha, loss=F.mse_loss)

    def one_by_one(sx: Tensor, sy: Tensor) -> Params:
        steps = [maml.inner_step(params, x, y) for x, y in zip(sx, sy)]
        return {name: torch.stack([s[name] for s in steps]).detach() for name in params}

    for case, tasks in (("5 tasks", batch), ("1 task", batch[:1])):
        expected = one_by_one(tasks.support_x, tasks.support_y)
        got = _call(exercise, case, batched_inner_step, model, params, tasks.support_x, tasks.support_y, alpha)
        problem = _params_mismatch(expected, got)
        if problem:
            pooled = maml.inner_step(params, tasks.support_x.flatten(0, 1), tasks.support_y.flatten(0, 1))
            hint = _diagnose(got, [
                ({n: p.detach().expand_as(expected[n]) for n, p in pooled.items()},
                 "every task got the same step, from the loss of all tasks pooled: vmap over the tasks "
                 "(in_dims=(None, 0, 0)) so that each task gets its own gradient"),
                ({n: 2 * params[n] - e for n, e in expected.items()},
                 "the step goes uphill: subtract alpha * gradient"),
                ({n: (params[n] - e) / alpha for n, e in expected.items()},
                 "these are the gradients: return the parameters after the step, params - alpha * gradient"),
            ], "per task: params - alpha * grad(loss)(params, x_i, y_i); vmap does all tasks at once")
            raise _failure(exercise, case, *problem, hint)
        cases.append(case)
    _passed(exercise, cases)

