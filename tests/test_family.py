"""The learners between MAML and fine-tuning: ProtoNets, ANIL, Meta-SGD and Reptile.

Each loss and meta-gradient is compared, in float64, with an independent per-task reference
written with plain autograd; gradcheck checks the derivatives that are new (prototypes, the
learned step sizes).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from mtlcode import ANIL, MAML, Learner, MetaSGD, ProtoNet, Reptile, evaluate, meta_train
from mtlcode.checkpoints import CheckpointError, load_checkpoint
from mtlcode.learners.protonet import prototype_logits, prototypes
from mtlcode.models import MLP
from mtlcode.tasks import Sinusoid, TaskBatch


def regression(tasks: int = 3, seed: int = 0) -> tuple[MLP, TaskBatch]:
    torch.manual_seed(seed)
    model = MLP([1, 6, 6, 1]).double()
    batch = Sinusoid().sample(tasks, 4, 5, generator=torch.Generator().manual_seed(seed + 1))
    return model, batch.to(dtype=torch.float64)


def classification(tasks: int = 2, ways: int = 3, shots: int = 2, queries: int = 4, dim: int = 5) -> TaskBatch:
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(ways).repeat_interleave(shots).repeat(tasks, 1)
    query_labels = torch.arange(ways).repeat_interleave(queries).repeat(tasks, 1)
    return TaskBatch(torch.randn(tasks, ways * shots, dim, generator=g, dtype=torch.float64), labels,
                     torch.randn(tasks, ways * queries, dim, generator=g, dtype=torch.float64), query_labels)


def grads_of(loss: torch.Tensor, model: torch.nn.Module) -> list[torch.Tensor]:
    return list(torch.autograd.grad(loss, list(model.parameters())))


# -- ProtoNet ----------------------------------------------------------------------------------

def test_protonet_loss_and_gradient_match_a_per_task_reference():
    torch.manual_seed(0)
    body = MLP([5, 8, 4]).double()
    batch = classification()
    learner = ProtoNet(body)
    ours = learner.meta_loss(batch)
    reference = 0
    for task in batch:
        embedded = body(task.support_x)
        centres = torch.stack([embedded[task.support_y == k].mean(0) for k in range(3)])
        logits = -torch.cdist(body(task.query_x), centres) ** 2
        reference = reference + F.cross_entropy(logits, task.query_y) / len(batch)
    torch.testing.assert_close(ours, reference, rtol=1e-10, atol=1e-12)
    for a, b in zip(grads_of(ours, body), grads_of(reference, body)):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
    loop = ProtoNet(body, strategy="loop").meta_loss(batch)
    torch.testing.assert_close(loop, ours, rtol=1e-12, atol=1e-12)


def test_prototype_logits_are_a_linear_classifier_and_have_exact_gradients():
    g = torch.Generator().manual_seed(1)
    features = torch.randn(6, 4, generator=g, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    queries = torch.randn(5, 4, generator=g, dtype=torch.float64)
    centres = prototypes(features, labels, 3)
    linear = queries @ (2 * centres).T - (centres**2).sum(1) - (queries**2).sum(1, keepdim=True)
    torch.testing.assert_close(prototype_logits(queries, centres), linear)
    assert torch.autograd.gradcheck(lambda f: prototype_logits(queries, prototypes(f, labels, 3)), (features,))
    assert torch.autograd.gradgradcheck(lambda f: prototype_logits(queries, prototypes(f, labels, 3)), (features,))


def test_protonet_refuses_tasks_it_cannot_classify():
    learner = ProtoNet(MLP([5, 4]).double())
    batch = classification()
    with pytest.raises(ValueError, match="steps does not apply"):
        learner.task_losses(batch, steps=1)
    missing = TaskBatch(batch.support_x, batch.support_y.clamp(max=1), batch.query_x, batch.query_y)
    with pytest.raises(ValueError, match="query labels must lie in 0..1"):
        learner.meta_loss(missing)


# -- ANIL --------------------------------------------------------------------------------------

def test_anil_adapts_only_the_head_and_matches_a_per_task_reference():
    model, batch = regression()
    anil = ANIL(model, 0.05, loss=F.mse_loss, inner_steps=2)
    theta = anil.params()
    adapted = anil.adapt(batch[0].support_x, batch[0].support_y)
    for name, p in adapted.items():
        moved = not torch.equal(p, theta[name])
        assert moved == name.startswith("head."), name  # the body is reused, the head fitted

    reference = 0
    names = [n for n, _ in model.named_parameters()]
    for task in batch:
        params = dict(model.named_parameters())
        for _ in range(2):
            head = [n for n in names if n.startswith("head.")]
            loss = F.mse_loss(functional_call(model, params, (task.support_x,)), task.support_y)
            grads = torch.autograd.grad(loss, [params[n] for n in head], create_graph=True)
            params = {**params, **{n: params[n] - 0.05 * g for n, g in zip(head, grads)}}
        reference = reference + F.mse_loss(functional_call(model, params, (task.query_x,)), task.query_y) / len(batch)
    ours = anil.meta_loss(batch)
    torch.testing.assert_close(ours, reference, rtol=1e-10, atol=1e-12)
    ours_grads, reference_grads = grads_of(ours, model), grads_of(reference, model)
    for a, b in zip(ours_grads, reference_grads):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
    assert all(g.abs().sum() > 0 for g in ours_grads)  # the outer loop trains the body too


def test_anil_needs_a_head():
    with pytest.raises(ValueError, match="model.head"):
        ANIL(torch.nn.Linear(1, 1), 0.1, loss=F.mse_loss)


# -- Meta-SGD ----------------------------------------------------------------------------------

def test_metasgd_starts_as_maml_and_its_step_sizes_get_exact_gradients():
    model, batch = regression()
    metasgd = MetaSGD(model, 0.05, loss=F.mse_loss)
    maml = MAML(model, 0.05, loss=F.mse_loss)
    torch.testing.assert_close(metasgd.meta_loss(batch), maml.meta_loss(batch), rtol=1e-12, atol=1e-14)
    parameters = list(metasgd.parameters())
    assert parameters[: len(list(model.parameters()))] == list(model.parameters())
    steps = list(metasgd.step_sizes.values())
    assert len(parameters) == 2 * len(steps)
    metasgd.meta_loss(batch).backward()
    assert all(s.grad is not None and s.grad.abs().sum() > 0 for s in steps)

    keys = list(metasgd.step_sizes)

    def loss_of(*step_sizes):  # the meta-loss as a function of the step sizes alone
        learner = MetaSGD(model, 0.05, loss=F.mse_loss)
        learner.step_sizes = dict(zip(keys, step_sizes))  # plain tensors, so gradcheck's inputs flow through
        return learner.meta_loss(batch)

    small = [s.detach().clone().requires_grad_() for s in steps]
    assert torch.autograd.gradcheck(loss_of, tuple(small))


def test_metasgd_checkpoints_hold_the_step_sizes(tmp_path):
    torch.manual_seed(0)
    learner = MetaSGD(MLP([1, 8, 1]), 0.01, loss=F.mse_loss)
    meta_train(learner, lambda g: Sinusoid().sample(4, 5, 5, generator=g), 3, meta_lr=1e-2, progress=False,
               checkpoint=tmp_path / "run.pt")
    saved = load_checkpoint(tmp_path / "run.pt")["model"]
    assert set(saved) == {"model", "step_sizes"}
    moved = [(v - 0.01).abs().max().item() for v in saved["step_sizes"].values()]
    assert max(moved) > 0  # the step sizes were trained


# -- Reptile -----------------------------------------------------------------------------------

def test_reptile_with_one_step_is_a_scaled_sgd_gradient_on_the_task_data():
    model, batch = regression(tasks=1)
    reptile = Reptile(model, 0.05, inner_steps=1, loss=F.mse_loss)
    task = batch[0]
    x, y = torch.cat([task.support_x, task.query_x]), torch.cat([task.support_y, task.query_y])
    expected = grads_of(F.mse_loss(model(x), y), model)
    for got, want in zip(reptile.meta_gradient(batch).values(), expected):
        torch.testing.assert_close(got / 0.05, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("strategy", ["vmap", "loop"])
def test_reptile_matches_a_per_task_sgd_reference(strategy):
    model, batch = regression(tasks=3)
    reptile = Reptile(model, 0.05, inner_steps=3, loss=F.mse_loss, strategy=strategy)
    theta = {n: p.detach().clone() for n, p in model.named_parameters()}
    finals = []
    for task in batch:
        x, y = torch.cat([task.support_x, task.query_x]), torch.cat([task.support_y, task.query_y])
        params = {n: p.clone().requires_grad_() for n, p in theta.items()}
        for _ in range(3):
            grads = torch.autograd.grad(F.mse_loss(functional_call(model, params, (x,)), y), list(params.values()))
            params = {n: (p - 0.05 * g).detach().requires_grad_() for (n, p), g in zip(params.items(), grads)}
        finals.append(params)
    for name, got in reptile.meta_gradient(batch).items():
        want = theta[name] - torch.stack([f[name].detach() for f in finals]).mean(0)
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="inner_steps >= 1"):
        Reptile(model, 0.05, inner_steps=0, loss=F.mse_loss)


# -- every learner in the one loop ---------------------------------------------------------------

@pytest.mark.parametrize("name", ["maml", "anil", "metasgd", "reptile"])
def test_every_learner_trains_in_meta_train_and_is_evaluated_by_evaluate(name):
    torch.manual_seed(0)
    model = MLP([1, 16, 16, 1])
    learner: Learner = {"maml": lambda: MAML(model, 0.01, loss=F.mse_loss),
                        "anil": lambda: ANIL(model, 0.05, loss=F.mse_loss),
                        "metasgd": lambda: MetaSGD(model, 0.01, loss=F.mse_loss),
                        "reptile": lambda: Reptile(model, 0.01, inner_steps=3, loss=F.mse_loss)}[name]()
    test_tasks = Sinusoid().sample(50, 10, 20, generator=torch.Generator().manual_seed(9))
    before = evaluate(learner, test_tasks).mean
    history = meta_train(learner, lambda g: Sinusoid().sample(10, 10, 10, generator=g), 150, meta_lr=3e-3,
                         progress=False)
    assert len(history["loss"]) == 150
    assert evaluate(learner, test_tasks).mean < 0.9 * before, name


def test_protonet_trains_in_meta_train():
    torch.manual_seed(0)
    learner = ProtoNet(MLP([5, 16, 8]).double())

    def sample(generator):  # 3 classes with shifted means: learnable
        batch = classification(tasks=4)
        shift = torch.arange(3, dtype=torch.float64).repeat_interleave(2).reshape(1, -1, 1)
        shift_q = torch.arange(3, dtype=torch.float64).repeat_interleave(4).reshape(1, -1, 1)
        noise = lambda t: t + 0.3 * torch.randn(t.shape, generator=generator, dtype=t.dtype)  # noqa: E731
        return TaskBatch(noise(batch.support_x * 0.3 + shift), batch.support_y,
                         noise(batch.query_x * 0.3 + shift_q), batch.query_y)

    history = meta_train(learner, sample, 30, meta_lr=1e-2, progress=False)
    assert history["metric"][-1] > 0.9 and history["loss"][-1] < history["loss"][0]


# -- checkpoints: every learner's state loads back, and only into its own kind --------------------

def _learner(name: str, seed: int) -> tuple[Learner, object]:
    """A small learner of kind ``name`` (initialised from ``seed``) and its task source."""
    torch.manual_seed(seed)
    if name == "protonet":
        return ProtoNet(MLP([5, 8, 4]).double()), lambda g: classification(tasks=2)
    model = MLP([1, 8, 1])
    learner = {"maml": lambda: MAML(model, 0.01, loss=F.mse_loss),
               "anil": lambda: ANIL(model, 0.05, loss=F.mse_loss),
               "metasgd": lambda: MetaSGD(model, 0.01, loss=F.mse_loss),
               "reptile": lambda: Reptile(model, 0.01, inner_steps=2, loss=F.mse_loss)}[name]()
    return learner, lambda g: Sinusoid().sample(4, 5, 5, generator=g)


def _flat(state: dict, prefix: str = "") -> dict[str, torch.Tensor]:
    """A learner's (possibly nested, as Meta-SGD's) state as ``{"a.b": tensor}``."""
    flat = {}
    for key, value in state.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = value
    return flat


@pytest.mark.parametrize("name", ["maml", "anil", "metasgd", "reptile", "protonet"])
def test_every_learner_checkpoint_loads_weights_only_into_a_fresh_learner_of_its_kind(tmp_path, name):
    learner, sample = _learner(name, seed=0)
    meta_train(learner, sample, 3, meta_lr=1e-2, progress=False, checkpoint=tmp_path / "run.pt")
    state = torch.load(tmp_path / "run.pt", map_location="cpu", weights_only=True)  # tensors only, no code
    saved, trained = _flat(state["model"]), _flat(learner.state_dict())
    assert saved.keys() == trained.keys() and all(torch.equal(saved[k], trained[k]) for k in saved)
    if name == "metasgd":
        assert {k.split(".")[0] for k in saved} == {"model", "step_sizes"}

    fresh, _ = _learner(name, seed=1)
    assert any(not torch.equal(v, saved[k]) for k, v in _flat(fresh.state_dict()).items())  # not a no-op
    fresh.load_state_dict(state["model"])
    loaded = _flat(fresh.state_dict())
    assert loaded.keys() == saved.keys() and all(torch.equal(loaded[k], saved[k]) for k in saved), name
    batch = sample(torch.Generator().manual_seed(5))
    for a, b in zip(fresh.evaluate_batch(batch), learner.evaluate_batch(batch)):
        assert torch.equal(a, b), name  # the loaded learner adapts and predicts as the trained one


def test_a_metasgd_checkpoint_does_not_load_into_maml_nor_the_reverse(tmp_path):
    for name in ("maml", "metasgd"):
        learner, sample = _learner(name, seed=0)
        meta_train(learner, sample, 1, progress=False, checkpoint=tmp_path / f"{name}.pt")
    maml_state = load_checkpoint(tmp_path / "maml.pt")["model"]
    metasgd_state = load_checkpoint(tmp_path / "metasgd.pt")["model"]

    maml, _ = _learner("maml", seed=1)
    before = _flat(maml.state_dict())
    with pytest.raises(ValueError, match="holds none of the keys of MAML's model.*written by another learner.*"
                                         r"load state\['model'\]"):
        maml.load_state_dict(metasgd_state)
    assert all(torch.equal(v, before[k]) for k, v in _flat(maml.state_dict()).items())  # nothing half-loaded
    metasgd, _ = _learner("metasgd", seed=1)
    with pytest.raises(ValueError, match="not a MetaSGD state.*written by another learner"):
        metasgd.load_state_dict(maml_state)
    # The same refusal when meta_train resumes a checkpoint written by the other learner.
    with pytest.raises(CheckpointError, match="holds a MetaSGD state: it cannot be resumed by MAML"):
        meta_train(maml, sample, 2, progress=False, checkpoint=tmp_path / "metasgd.pt")
    with pytest.raises(CheckpointError, match="holds a MAML state: it cannot be resumed by MetaSGD"):
        meta_train(metasgd, sample, 2, progress=False, checkpoint=tmp_path / "maml.pt")
