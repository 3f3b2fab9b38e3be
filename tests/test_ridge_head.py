"""R2-D2's ridge-regression head: the closed form, its derivatives, and the learner around it.

The closed form is compared, in float64, with two independent references (the primal solution
and ``torch.linalg.lstsq`` on the augmented system); gradcheck checks the derivatives through
the solve; the learner is checked on synthetic Gaussian classes, untrained and meta-trained.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from mtlcode import MAML, ProtoNet, evaluate, meta_train
from mtlcode.checkpoints import load_checkpoint
from mtlcode.learners.ridge import R2D2, ridge_logits, ridge_weights, with_bias
from mtlcode.models import MLP, Conv4
from mtlcode.tasks import NWayKShot, TaskBatch

DOUBLE = dict(dtype=torch.float64)


def clusters(classes: int, per_class: int = 20, nuisance: float = 1.0, seed: int = 0) -> TensorDataset:
    """Gaussian classes in 16-d: the class means differ in 4 dimensions; the other 12 are noise of
    standard deviation ``0.5 * nuisance`` (``nuisance=1``: as little as within the class)."""
    g = torch.Generator().manual_seed(seed)
    means = torch.zeros(classes, 16)
    means[:, :4] = 1.5 * torch.randn(classes, 4, generator=g)
    scale = torch.cat([torch.ones(4), torch.full((12,), nuisance)])
    labels = torch.arange(classes).repeat_interleave(per_class)
    dataset = TensorDataset(means[labels] + 0.5 * scale * torch.randn(len(labels), 16, generator=g), labels)
    dataset.targets = labels  # NWayKShot reads the classes from here instead of example by example
    return dataset


def tasks(tasks: int = 3, ways: int = 3, shots: int = 2, queries: int = 4, dim: int = 5, seed: int = 0) -> TaskBatch:
    g = torch.Generator().manual_seed(seed)
    support_y = torch.arange(ways).repeat_interleave(shots).repeat(tasks, 1)
    query_y = torch.arange(ways).repeat_interleave(queries).repeat(tasks, 1)
    return TaskBatch(torch.randn(tasks, ways * shots, dim, generator=g, **DOUBLE), support_y,
                     torch.randn(tasks, ways * queries, dim, generator=g, **DOUBLE), query_y)


def learner(seed: int = 0, **kwargs) -> R2D2:
    torch.manual_seed(seed)
    return R2D2(MLP([5, 8, 8, 1]).body.double(), **kwargs)


# -- the closed form ---------------------------------------------------------------------------

@pytest.mark.parametrize("points, width", [(6, 10), (12, 4)], ids=["n<d", "n>d"])
def test_the_woodbury_weights_equal_the_primal_solution_and_least_squares(points, width):
    g = torch.Generator().manual_seed(0)
    phi = with_bias(torch.randn(3, points, width, generator=g, **DOUBLE))
    targets = F.one_hot(torch.randint(0, 4, (3, points), generator=g), 4).to(torch.float64)
    lam = 0.7
    ours = ridge_weights(phi, targets, lam)
    eye = torch.eye(width + 1, **DOUBLE)
    primal = torch.linalg.solve(phi.mT @ phi + lam * eye, phi.mT @ targets)
    # Ridge is least squares on [Phi; sqrt(lam) I] W = [Y; 0], solved here by a QR-based lstsq.
    stacked = torch.cat([phi, lam**0.5 * eye.expand(3, -1, -1)], dim=1)
    padded = torch.cat([targets, torch.zeros(3, width + 1, 4, **DOUBLE)], dim=1)
    lstsq = torch.linalg.lstsq(stacked, padded).solution
    assert ours.shape == (3, width + 1, 4)
    torch.testing.assert_close(ours, primal, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(ours, lstsq, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("strategy", ["vmap", "loop"])
def test_the_learners_logits_match_a_per_task_least_squares_reference(strategy):
    ridge = learner(lam=0.5, alpha=3.0, beta=0.25, strategy=strategy)
    batch = tasks()
    losses, logits = ridge.task_losses(batch)
    for t, task in enumerate(batch):
        phi, queries = with_bias(ridge.model(task.support_x)), with_bias(ridge.model(task.query_x))
        eye = torch.eye(phi.shape[1], **DOUBLE)
        weights = torch.linalg.lstsq(torch.cat([phi, 0.5**0.5 * eye]),
                                     torch.cat([F.one_hot(task.support_y, 3).double(), torch.zeros(len(eye), 3,
                                                                                                    **DOUBLE)])).solution
        reference = 3.0 * queries @ weights + 0.25
        torch.testing.assert_close(logits[t], reference, rtol=1e-9, atol=1e-11)
        torch.testing.assert_close(losses[t], F.cross_entropy(reference, task.query_y), rtol=1e-9, atol=1e-11)


def test_a_conv4_body_embeds_each_task_with_its_own_batch_statistics():
    torch.manual_seed(0)
    body = Conv4(hidden=4).body.double()
    g = torch.Generator().manual_seed(2)
    batch = TaskBatch(torch.randn(2, 3, 1, 28, 28, generator=g, **DOUBLE), torch.arange(3).repeat(2, 1),
                      torch.randn(2, 6, 1, 28, 28, generator=g, **DOUBLE), torch.arange(3).repeat(2, 2))
    reference = torch.stack([ridge_logits(body(t.support_x), t.support_y, body(t.query_x), 3, torch.tensor(0.0))
                             for t in batch])
    for strategy in ("vmap", "loop"):
        _, logits = R2D2(body, strategy=strategy).task_losses(batch)
        torch.testing.assert_close(logits, reference, rtol=1e-9, atol=1e-11)


def test_gradcheck_through_the_solve_and_the_meta_gradient_reaches_every_parameter():
    g = torch.Generator().manual_seed(1)
    support = torch.randn(2, 6, 4, generator=g, **DOUBLE, requires_grad=True)
    queries = torch.randn(2, 5, 4, generator=g, **DOUBLE)
    labels, query_labels = torch.tensor([[0, 1, 2, 0, 1, 2], [2, 2, 1, 0, 0, 1]]), torch.randint(0, 3, (2, 5))
    log_lambda = torch.tensor(-0.3, **DOUBLE, requires_grad=True)

    def query_loss(features, log_lam):
        logits = ridge_logits(features, labels, queries, 3, log_lam, alpha=2.0)
        return F.cross_entropy(logits.flatten(0, 1), query_labels.flatten())

    assert torch.autograd.gradcheck(query_loss, (support, log_lambda))
    assert torch.autograd.gradgradcheck(query_loss, (support, log_lambda))

    ridge = learner()
    ridge.meta_backward(tasks())
    for name, p in [*ridge.model.named_parameters(), *ridge.scalars.items()]:
        assert p.grad is not None, name
        if name == "beta":  # one shift of every logit: the softmax cancels it
            assert abs(p.grad.item()) < 1e-12
        else:
            assert p.grad.abs().sum() > 0, name


def test_relabelling_the_classes_permutes_the_logits_columns():
    ridge, batch = learner(), tasks(ways=4)
    permutation = torch.tensor([2, 3, 1, 0])  # class k is called permutation[k]
    relabelled = TaskBatch(batch.support_x, permutation[batch.support_y], batch.query_x,
                           permutation[batch.query_y])
    _, logits = ridge.task_losses(batch)
    _, permuted = ridge.task_losses(relabelled)
    torch.testing.assert_close(permuted[..., permutation], logits, rtol=1e-12, atol=1e-12)
    assert not torch.allclose(permuted, logits)  # the relabelling changed something to follow


# -- the learner -------------------------------------------------------------------------------

def test_an_untrained_random_body_still_beats_chance_on_well_separated_classes():
    sampler = NWayKShot(clusters(20, nuisance=1.0), ways=5, shots=5, queries=5)
    test_tasks = sampler.sample(50, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    ridge = R2D2(MLP([16, 64, 64, 5]).body)
    accuracy = evaluate(ridge, test_tasks).mean
    assert accuracy > 0.8, accuracy  # chance: 0.2
    assert evaluate(ridge, test_tasks, steps=3).mean == accuracy  # steps is ignored: the head is solved exactly


def test_meta_training_raises_the_query_accuracy_on_new_classes():
    # 12 of 16 dimensions are loud noise: a random body mixes it into every feature, and five
    # 1-shot points cannot tell the ridge head what to ignore; meta-training can.
    train = NWayKShot(clusters(40, nuisance=4.0, seed=0), ways=5, shots=1, queries=5)
    test_tasks = NWayKShot(clusters(20, nuisance=4.0, seed=1), ways=5, shots=1, queries=5).sample(
        100, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    ridge = R2D2(MLP([16, 32, 32, 5]).body)
    before = evaluate(ridge, test_tasks).mean
    history = meta_train(ridge, lambda g: train.sample(8, generator=g), 300, meta_lr=1e-2, progress=False)
    after = evaluate(ridge, test_tasks).mean
    assert after > before + 0.25 and after > 0.65, (before, after)
    assert sum(history["loss"][-20:]) < sum(history["loss"][:20])
    assert ridge.scalars["alpha"].item() > 1.5  # the head learned to sharpen its regression outputs


def _train(ridge: R2D2, iterations: int, checkpoint) -> R2D2:
    meta_train(ridge, lambda g: tasks(seed=int(torch.randint(100, (1,), generator=g))), iterations, meta_lr=5e-2,
               progress=False, checkpoint=checkpoint)
    return ridge


def test_the_state_round_trips_with_its_scalars_and_another_learners_state_is_refused(tmp_path):
    trained = _train(learner(seed=0), 5, tmp_path / "run.pt")
    _train(learner(seed=0), 3, tmp_path / "part.pt")
    resumed = _train(learner(seed=0), 5, tmp_path / "part.pt")  # stopped after 3 steps, then resumed
    for (name, a), b in zip(trained.scalars.items(), resumed.scalars.values()):
        assert torch.equal(a, b), name
    state = load_checkpoint(tmp_path / "run.pt")["model"]
    assert set(state) == {"model", "scalars"} and set(state["scalars"]) == {"log_lambda", "alpha", "beta"}
    fresh = learner(seed=1)
    assert fresh.scalars["alpha"].item() != trained.scalars["alpha"].item()  # not a no-op
    fresh.load_state_dict(state)
    for (name, a), b in zip(trained.scalars.items(), fresh.scalars.values()):
        assert torch.equal(a, b), name
    for a, b in zip(trained.model.state_dict().values(), fresh.model.state_dict().values()):
        assert torch.equal(a, b)
    for a, b in zip(trained.evaluate_batch(tasks(seed=7)), fresh.evaluate_batch(tasks(seed=7))):
        assert torch.equal(a, b)

    for other in (ProtoNet(fresh.model).state_dict(), MAML(MLP([1, 4, 1]), 0.1, loss=F.mse_loss).state_dict(),
                  {"model": state["model"], "scalars": {"alpha": state["scalars"]["alpha"]}}):
        with pytest.raises(ValueError, match="not an R2D2 state.*written by another learner"):
            fresh.load_state_dict(other)
        assert fresh.scalars["alpha"].item() == trained.scalars["alpha"].item()  # nothing half-loaded
    with pytest.raises(ValueError, match=r"written by another learner.*load state\['model'\]"):
        ProtoNet(fresh.model).load_state_dict(state)


def _bad(change: str) -> TaskBatch:
    b = tasks()
    if change == "float labels":
        return TaskBatch(b.support_x, b.support_y.double().unsqueeze(-1), b.query_x, b.query_y)
    if change == "missing class":  # class 1 relabelled 2: no support example of class 1 is left
        return TaskBatch(b.support_x, b.support_y.where(b.support_y != 1, 2), b.query_x, b.query_y)
    if change == "query class unseen":
        return TaskBatch(b.support_x, b.support_y.clamp(max=1), b.query_x, b.query_y)
    if change == "widths differ":
        return TaskBatch(b.support_x, b.support_y, b.query_x[..., :4], b.query_y)
    if change == "width of the body":
        return TaskBatch(b.support_x[..., :4], b.support_y, b.query_x[..., :4], b.query_y)
    if change == "nan":
        b.support_x[0, 0, 0] = float("nan")
        return b
    if change == "empty support":
        return TaskBatch(b.support_x[:, :0], b.support_y[:, :0], b.query_x, b.query_y)
    if change == "float32":
        return b.to(dtype=torch.float32)
    raise AssertionError(change)


@pytest.mark.parametrize("change, message", [
    ("float labels", "support_y must hold integer class labels.*convert with .long()"),
    ("missing class", "every class 0..2 needs a support example"),
    ("query class unseen", "query labels must lie in 0..1"),
    ("widths differ", r"support_x examples are shaped \(5,\) but query_x examples \(4,\)"),
    ("width of the body", "examples have 4 features but the body's first layer takes 5"),
    ("nan", "support_x holds 1 NaN or infinite"),
    ("empty support", "the support set is empty"),
    ("float32", r"the batch is torch.float32 but the body's parameters are torch.float64.*batch.to\(dtype"),
])
def test_bad_batches_are_refused_naming_the_problem(change, message):
    with pytest.raises(ValueError, match=message):
        learner().task_losses(_bad(change))


def test_bad_construction_is_refused_naming_the_argument():
    body = MLP([5, 8, 1]).body
    for kwargs, message in [({"lam": 0.0}, "lam must be a finite number > 0"), ({"lam": -1}, "lam must be"),
                            ({"alpha": float("nan")}, "alpha must be a finite number"),
                            ({"beta": "0"}, "beta must be a finite number"),
                            ({"strategy": "fast"}, "strategy must be")]:
        with pytest.raises(ValueError, match=message):
            R2D2(body, **kwargs)
    with pytest.raises(ValueError, match="flat feature vector.*nn.Flatten"):
        R2D2(torch.nn.Conv2d(1, 2, 3)).task_losses(TaskBatch(torch.randn(1, 2, 1, 5, 5), torch.tensor([[0, 1]]),
                                                             torch.randn(1, 2, 1, 5, 5), torch.tensor([[0, 1]])))
    with pytest.raises(TypeError, match="a single task"):
        learner().task_losses(tasks()[0])
