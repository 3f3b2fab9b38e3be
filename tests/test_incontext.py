"""The conditional neural process: a learner that reads the support set, with no gradient step.

Its forward pass is compared, in float64, with the formulas written out by hand (encoder, mean,
decoder); gradcheck checks the task loss's derivatives; the learner must ignore the order of
the support set but not its content, learn sinusoids in the one training loop well below the best
prediction that ignores the support set, resume from its checkpoints exactly, and refuse input
it cannot read.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from mtlcode import MAML, evaluate, meta_train
from mtlcode.checkpoints import CheckpointError, load_checkpoint
from mtlcode.learners.incontext import CNP, gaussian_nll
from mtlcode.metrics import task_metric
from mtlcode.models import MLP
from mtlcode.tasks import Sinusoid, TaskBatch


def random_batch(tasks: int = 3, shots: int = 5, queries: int = 4, x_dim: int = 2, y_dim: int = 3,
                 seed: int = 0) -> TaskBatch:
    g = torch.Generator().manual_seed(seed)

    def draw(n: int, d: int) -> torch.Tensor:
        return torch.randn(tasks, n, d, generator=g, dtype=torch.float64)

    return TaskBatch(draw(shots, x_dim), draw(shots, y_dim), draw(queries, x_dim), draw(queries, y_dim))


def small_cnp(seed: int = 0, **kwargs) -> CNP:
    torch.manual_seed(seed)
    learner = CNP(**{"x_dim": 2, "y_dim": 3, "hidden": (16, 16), "r_dim": 8, **kwargs})
    learner.model.double()
    return learner


def sinusoids(tasks: int, seed: int) -> TaskBatch:
    return Sinusoid().sample(tasks, 10, 10, generator=torch.Generator().manual_seed(seed))


# -- what the prediction depends on --------------------------------------------------------------

def test_predictions_do_not_depend_on_the_order_of_the_support_set():
    learner, batch = small_cnp(), random_batch(shots=7)
    _, before = learner.task_losses(batch)
    g = torch.Generator().manual_seed(1)
    orders = torch.stack([torch.randperm(7, generator=g) for _ in range(len(batch))])  # one order per task
    assert not (orders == torch.arange(7)).all(1).any()  # every task really reordered

    def reorder(t: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
        return torch.gather(t, 1, order[:, :, None].expand_as(t))

    shuffled = TaskBatch(reorder(batch.support_x, orders), reorder(batch.support_y, orders), batch.query_x,
                         batch.query_y)
    _, after = learner.task_losses(shuffled)
    torch.testing.assert_close(after, before, rtol=1e-12, atol=1e-12)
    # Shuffling the inputs alone breaks the pairs (x_i, y_i): that must change the prediction.
    unpaired = TaskBatch(reorder(batch.support_x, orders), batch.support_y, batch.query_x, batch.query_y)
    assert (learner.task_losses(unpaired)[1] - before).abs().amax(dim=(1, 2)).min() > 1e-6


def test_predictions_read_the_support_set_and_each_query_alone():
    learner, batch = small_cnp(), random_batch()
    _, predictions = learner.task_losses(batch)
    other = TaskBatch(batch.support_x, batch.support_y.roll(1, dims=0), batch.query_x, batch.query_y)
    changed = (learner.task_losses(other)[1] - predictions).abs().amax(dim=(1, 2))
    # Every task's predictions follow its new support set (by far more than float rounding; a
    # learner that ignored the context would give exactly the same numbers).
    assert (changed > 1e-6).all(), changed
    # Queries are predicted independently of one another: one at a time gives the same numbers.
    one_by_one = torch.cat([learner.predict(batch.support_x, batch.support_y, batch.query_x[:, q:q + 1])
                            for q in range(batch.query_x.shape[1])], dim=1)
    torch.testing.assert_close(one_by_one, predictions, rtol=1e-12, atol=1e-12)


# -- the formulas, in float64 --------------------------------------------------------------------

def by_hand(layers: list[nn.Linear], v: torch.Tensor) -> torch.Tensor:
    """An MLP on one vector: ``W v + b`` per layer, ReLU between layers."""
    for i, layer in enumerate(layers):
        v = layer.weight @ v + layer.bias
        v = torch.clamp(v, min=0) if i < len(layers) - 1 else v
    return v


def linears(module: nn.Module) -> list[nn.Linear]:
    return [m for m in module.modules() if isinstance(m, nn.Linear)]


def test_the_forward_pass_is_encoder_mean_decoder_written_out_by_hand():
    learner, batch = small_cnp(), random_batch()
    losses, predictions = learner.task_losses(batch)
    encoder, decoder = linears(learner.model.encoder), linears(learner.model.decoder)
    assert len(encoder) == len(decoder) == 3  # two hidden layers and an output layer each
    with torch.no_grad():
        for t, task in enumerate(batch):
            codes = [by_hand(encoder, torch.cat([x, y])) for x, y in zip(task.support_x, task.support_y)]
            r = sum(codes) / len(codes)
            expected = torch.stack([by_hand(decoder, torch.cat([x, r])) for x in task.query_x])
            torch.testing.assert_close(predictions[t], expected, rtol=1e-12, atol=1e-12)
            torch.testing.assert_close(losses[t], ((expected - task.query_y) ** 2).mean(), rtol=1e-12, atol=0)
    # Scored like every learner: the loss is the evaluation's metric, and steps changes nothing.
    torch.testing.assert_close(losses, task_metric(predictions, batch.query_y), rtol=1e-12, atol=0)
    for steps in (0, 5):
        assert all(torch.equal(a, b) for a, b in zip(learner.task_losses(batch, steps=steps), (losses, predictions)))


class TaskLoss(nn.Module):
    """The learner's task losses as a module, so that ``functional_call`` can swap its parameters."""

    def __init__(self, learner: CNP) -> None:
        super().__init__()
        self.learner, self.model = learner, learner.model

    def forward(self, batch: TaskBatch) -> torch.Tensor:
        return self.learner.task_losses(batch)[0]


@pytest.mark.parametrize("likelihood", ["mse", "gaussian"])
def test_the_task_loss_has_exact_gradients(likelihood):
    learner, batch = small_cnp(likelihood=likelihood), random_batch(tasks=2, shots=3, queries=2)
    wrapped = TaskLoss(learner)
    names = ["model.encoder.body.0.weight", "model.encoder.head.bias", "model.decoder.head.weight"]
    params = dict(wrapped.named_parameters())
    inputs = tuple(params[name].detach().clone().requires_grad_() for name in names)

    def losses(*tensors: torch.Tensor) -> torch.Tensor:
        return functional_call(wrapped, dict(zip(names, tensors)), (batch,))

    assert torch.autograd.gradcheck(losses, inputs)


def test_the_gaussian_variant_scores_its_mean_and_its_loss_is_the_negative_log_likelihood():
    learner, batch = small_cnp(likelihood="gaussian"), random_batch()
    losses, predictions = learner.task_losses(batch)
    mean, std = learner.mean_and_std(batch.support_x, batch.support_y, batch.query_x)
    raw = learner.model(batch.support_x, batch.support_y, batch.query_x)  # [tasks, queries, 2 * y_dim]
    assert torch.equal(predictions, mean) and torch.equal(mean, raw[..., :3])
    torch.testing.assert_close(std, 0.1 + 0.9 * F.softplus(raw[..., 3:]), rtol=1e-12, atol=0)  # floored at 0.1
    reference = F.gaussian_nll_loss(mean, batch.query_y, std**2, full=True, reduction="none").flatten(1).mean(1)
    torch.testing.assert_close(losses, reference, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(gaussian_nll(mean, std, batch.query_y), reference, rtol=1e-12, atol=1e-12)
    assert torch.equal(learner.evaluate_batch(batch)[1], task_metric(mean, batch.query_y))  # metric: MSE


# -- learning in the one loop ---------------------------------------------------------------------

def family_mean_curve(family: Sinusoid, x: torch.Tensor) -> torch.Tensor:
    """``E[y | x]`` over the family's tasks: ``E[A] E_phase sin(x - phase)`` (-1.62 cos x by default).

    Not zero: with phases drawn from [0, pi] the curves lean one way. It is the best prediction
    that ignores the support set (a learner that reads no context can at most learn this).
    """
    (a_low, a_high), (p_low, p_high) = family.amplitude, family.phase
    mean_sin = (torch.cos(x - p_high) - torch.cos(x - p_low)) / (p_high - p_low)
    return (a_low + a_high) / 2 * mean_sin


def test_meta_train_learns_sinusoids_well_below_predicting_zero():
    torch.manual_seed(0)
    learner = CNP(hidden=(64, 64), r_dim=64)
    test_tasks = sinusoids(200, seed=123)
    zero = evaluate(lambda support_x, support_y, query_x: torch.zeros_like(query_x), test_tasks).mean
    curve = evaluate(lambda support_x, support_y, query_x: family_mean_curve(Sinusoid(), query_x), test_tasks).mean
    before = evaluate(learner, test_tasks).mean
    history = meta_train(learner, lambda g: Sinusoid().sample(8, 10, 10, generator=g), 400, meta_lr=3e-3,
                         progress=False)
    after = evaluate(learner, test_tasks).mean
    assert len(history["loss"]) == 400 and before > 0.8 * zero and curve < 0.8 * zero
    # About 0.15 of zero's MSE and 0.2 of the mean curve's after these 400 steps.
    assert after < 0.35 * zero and after < 0.5 * curve, (after, zero, curve)
    assert evaluate(learner, test_tasks, steps=5).mean == after  # no adaptation step to take
    # What it learned is read from the context: another task's support set ruins the predictions.
    swapped = TaskBatch(test_tasks.support_x.roll(1, dims=0), test_tasks.support_y.roll(1, dims=0),
                        test_tasks.query_x, test_tasks.query_y)
    assert evaluate(learner, swapped).mean > 3 * after


# -- checkpoints ---------------------------------------------------------------------------------

def test_a_stopped_run_resumes_exactly_and_the_state_loads_into_a_fresh_cnp(tmp_path):
    def run(seed: int, iterations: int, path) -> CNP:
        learner = small_cnp(seed, x_dim=1, y_dim=1)
        sample = lambda g: Sinusoid().sample(4, 5, 5, generator=g).to(dtype=torch.float64)  # noqa: E731
        meta_train(learner, sample, iterations, meta_lr=1e-2, progress=False, checkpoint=path)
        return learner

    straight = run(0, 6, tmp_path / "straight.pt")
    run(0, 3, tmp_path / "stopped.pt")
    resumed = run(1, 6, tmp_path / "stopped.pt")  # another initialisation: the checkpoint replaces it
    for a, b in zip(straight.parameters(), resumed.parameters()):
        assert torch.equal(a, b)

    state = torch.load(tmp_path / "straight.pt", map_location="cpu", weights_only=True)["model"]
    fresh = small_cnp(2, x_dim=1, y_dim=1)
    batch = sinusoids(5, seed=7).to(dtype=torch.float64)
    assert not torch.equal(fresh.task_losses(batch)[1], straight.task_losses(batch)[1])  # not a no-op
    fresh.load_state_dict(state)
    assert all(torch.equal(a, b) for a, b in zip(fresh.evaluate_batch(batch), straight.evaluate_batch(batch)))


def test_another_learners_state_is_refused(tmp_path):
    torch.manual_seed(0)
    maml = MAML(MLP([1, 8, 1]), 0.01, loss=F.mse_loss)
    meta_train(maml, lambda g: Sinusoid().sample(2, 5, 5, generator=g), 1, progress=False,
               checkpoint=tmp_path / "maml.pt")
    cnp = CNP(hidden=(8,), r_dim=8)
    before = [p.clone() for p in cnp.parameters()]
    with pytest.raises(ValueError, match="holds none of the keys of CNP's model.*written by another learner"):
        cnp.load_state_dict(load_checkpoint(tmp_path / "maml.pt")["model"])
    with pytest.raises(CheckpointError, match="holds a MAML state: it cannot be resumed by CNP"):
        meta_train(cnp, lambda g: Sinusoid().sample(2, 5, 5, generator=g), 2, progress=False,
                   checkpoint=tmp_path / "maml.pt")
    assert all(torch.equal(a, b) for a, b in zip(before, cnp.parameters()))  # nothing half-loaded
    with pytest.raises(ValueError, match="holds none of the keys of MAML's model"):
        maml.load_state_dict(cnp.state_dict())


# -- bad input -----------------------------------------------------------------------------------

def with_nan(batch: TaskBatch, field: str) -> TaskBatch:
    getattr(batch, field)[0, 0, 0] = float("nan")
    return batch


def integer_targets(batch: TaskBatch) -> TaskBatch:
    return TaskBatch(batch.support_x, torch.zeros(batch.support_x.shape[:2], dtype=torch.long), batch.query_x,
                     torch.zeros(batch.query_x.shape[:2], dtype=torch.long))


BAD_BATCHES = {
    "integer targets": (integer_targets, {}, r"batch.support_y holds torch.int64 values but a CNP regresses"),
    "x width": (lambda b: b, {"x_dim": 2}, r"batch.support_x has 1 features .* built with x_dim=2.*CNP\(x_dim=1"),
    "y width": (lambda b: b, {"y_dim": 3}, r"batch.support_y has 1 features .* built with y_dim=3"),
    "NaN target": (lambda b: with_nan(b, "support_y"), {}, "support_y holds 1 NaN or infinite"),
    "NaN query input": (lambda b: with_nan(b, "query_x"), {}, "query_x holds 1 NaN or infinite"),
    "float64 data": (lambda b: b.to(dtype=torch.float64), {}, "float64 but the model's parameters are "
                   "torch.float32"),
    "empty support": (lambda b: TaskBatch(b.support_x[:, :0], b.support_y[:, :0], b.query_x, b.query_y), {},
                      "holds no support examples"),
    "empty queries": (lambda b: TaskBatch(b.support_x, b.support_y, b.query_x[:, :0], b.query_y[:, :0]), {},
                      "holds no query examples"),
    "single task": (lambda b: b[0], {}, "single task"),
    "other device": (lambda b: b.to("meta"), {}, r"batch.support_x is on meta but the model on cpu: move the batch"),
}


@pytest.mark.parametrize("case", sorted(BAD_BATCHES))
def test_batches_a_cnp_cannot_read_are_refused_naming_the_problem(case):
    make, kwargs, message = BAD_BATCHES[case]
    learner = CNP(**{"hidden": (4,), "r_dim": 4, **kwargs})
    with pytest.raises(ValueError, match=message):
        evaluate(learner, make(sinusoids(2, seed=0)))


def test_predict_and_the_constructor_refuse_bad_arguments():
    learner, batch = small_cnp(), random_batch()
    with pytest.raises(ValueError, match="need the same number of tasks"):
        learner.predict(batch.support_x, batch.support_y[:2], batch.query_x)
    with pytest.raises(ValueError, match="query_x holds 1 NaN"):
        learner.predict(batch.support_x, batch.support_y, with_nan(batch, "query_x").query_x)
    with pytest.raises(ValueError, match="means only.*likelihood='gaussian'"):
        learner.mean_and_std(batch.support_x, batch.support_y, batch.query_x)
    for kwargs, message in [({"x_dim": 0}, "x_dim must be a positive int"), ({"r_dim": True}, "r_dim must be"),
                            ({"hidden": 64}, r"hidden must be a sequence.*hidden=\(128, 128\)"),
                            ({"hidden": None}, "hidden must be"), ({"hidden": (8, 0)}, "hidden must be"),
                            ({"likelihood": "laplace"}, "'mse' or 'gaussian'")]:
        with pytest.raises(ValueError, match=message):
            CNP(**kwargs)
    on_meta = CNP(hidden=(4,), r_dim=4, device="meta")  # built where it is asked (meta: a device without data)
    assert {p.device.type for p in on_meta.parameters()} == {"meta"}
