"""Bad input to a learner or to the loop fails up front, with a message that says what to change."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mtlcode import MAML, evaluate, meta_train
from mtlcode.models import MLP, Conv4
from mtlcode.tasks import Sinusoid, TaskBatch


def sinusoid_batch(tasks: int = 3) -> TaskBatch:
    return Sinusoid().sample(tasks, 4, 5, generator=torch.Generator().manual_seed(0))


def classification_batch(labels_up_to: int = 3) -> TaskBatch:
    g = torch.Generator().manual_seed(0)
    return TaskBatch(torch.rand(2, 3, 1, 28, 28, generator=g), torch.arange(3).repeat(2, 1) % labels_up_to,
                     torch.rand(2, 6, 1, 28, 28, generator=g), torch.randint(0, labels_up_to, (2, 6), generator=g))


def test_every_argument_after_inner_lr_is_keyword_only_and_loss_is_required():
    with pytest.raises(TypeError):
        MAML(MLP([1, 4, 1]), 0.01, 1)  # inner_steps passed by position
    with pytest.raises(TypeError, match="loss"):
        MAML(MLP([1, 4, 1]), 0.01)  # no default loss: none fits both regression and classification


def test_cross_entropy_on_regression_targets_is_refused_not_silently_zero():
    # The old default: cross-entropy over one output is exactly 0 on every sinusoid batch.
    with pytest.raises(ValueError, match="cross_entropy.*mse_loss"):
        MAML(MLP([1, 4, 1]), 0.01, loss=F.cross_entropy).meta_loss(sinusoid_batch())


def test_labels_outside_the_models_outputs_are_refused_with_the_shapes():
    maml = MAML(Conv4(ways=3, hidden=4), 0.4, loss=F.cross_entropy)
    assert maml.meta_loss(classification_batch(3)).isfinite()
    with pytest.raises(ValueError, match=r"labels \d\.\.4 but the model has 3 outputs"):
        maml.meta_loss(classification_batch(5))


def test_data_on_another_dtype_or_device_than_the_model_is_refused():
    maml = MAML(MLP([1, 4, 1]).double(), 0.01, loss=F.mse_loss)
    with pytest.raises(ValueError, match="float32 but the model's parameters are torch.float64"):
        maml.meta_loss(sinusoid_batch())
    if torch.cuda.is_available():
        with pytest.raises(ValueError, match="move the batch"):
            MAML(MLP([1, 4, 1]).cuda(), 0.01, loss=F.mse_loss).meta_loss(sinusoid_batch())


def test_models_that_break_functional_adaptation_are_refused_up_front():
    running = nn.Sequential(nn.Linear(1, 4), nn.BatchNorm1d(4), nn.Linear(4, 1))
    with pytest.raises(ValueError, match="track_running_stats=False"):
        MAML(running, 0.01, loss=F.mse_loss)
    dropout = nn.Sequential(nn.Linear(1, 8), nn.Dropout(0.5), nn.Linear(8, 1))
    with pytest.raises(ValueError, match="cannot run under vmap"):
        MAML(dropout, 0.01, loss=F.mse_loss, strategy="vmap")
    auto = MAML(dropout, 0.01, loss=F.mse_loss)
    assert auto.resolved_strategy() == "loop" and auto.meta_loss(sinusoid_batch()).isfinite()
    with pytest.raises(ValueError, match="no parameters"):
        MAML(nn.ReLU(), 0.01, loss=F.mse_loss)


def test_a_single_task_is_not_mistaken_for_a_batch():
    with pytest.raises(ValueError, match="single task"):
        MAML(MLP([1, 4, 1]), 0.01, loss=F.mse_loss).meta_loss(sinusoid_batch()[0])


def test_evaluate_refuses_negative_steps():
    maml = MAML(MLP([1, 4, 1]), 0.01, loss=F.mse_loss)
    with pytest.raises(ValueError, match="steps must be an int >= 0"):
        evaluate(maml, sinusoid_batch(), steps=-3)
    assert evaluate(maml, sinusoid_batch(), steps=0).mean > 0


def run(maml: MAML, iterations: int = 2, **kwargs):
    return meta_train(maml, lambda g: Sinusoid().sample(2, 3, 3, generator=g), iterations, progress=False, **kwargs)


def test_meta_train_refuses_frozen_models_and_bad_intervals():
    frozen = MLP([1, 4, 1]).requires_grad_(False)
    with pytest.raises(ValueError, match="frozen"):
        run(MAML(frozen, 0.01, loss=F.mse_loss))
    with pytest.raises(ValueError, match="checkpoint_every must be an int >= 1"):
        run(MAML(MLP([1, 4, 1]), 0.01, loss=F.mse_loss), checkpoint_every=0)
    with pytest.raises(TypeError, match="mtlcode learner"):
        meta_train(MLP([1, 4, 1]), lambda g: sinusoid_batch(), 1, progress=False)
    assert run(MAML(MLP([1, 4, 1]), 0.01, loss=F.mse_loss), iterations=0)["step"] == []


def test_the_loop_strategy_accumulates_the_same_meta_gradient_task_by_task():
    model = MLP([1, 6, 1]).double()
    batch = sinusoid_batch(4).to(dtype=torch.float64)
    for strategy in ("loop", "vmap"):
        maml = MAML(model, 0.05, loss=F.mse_loss, strategy=strategy)
        model.zero_grad()
        stats = maml.meta_backward(batch)
        grads = [p.grad.clone() for p in model.parameters()]
        model.zero_grad()
        maml.meta_loss(batch).backward()
        for g, p in zip(grads, model.parameters()):
            torch.testing.assert_close(g, p.grad, rtol=1e-12, atol=1e-14)
        assert stats["loss"].shape == stats["metric"].shape == (4,) and not stats["loss"].requires_grad


@pytest.mark.parametrize("loss", [nn.CrossEntropyLoss(), lambda p, y: F.cross_entropy(p, y)],
                         ids=["module", "lambda"])
def test_any_loss_that_ignores_the_predictions_is_refused(loss):
    with pytest.raises(ValueError, match="does not change when the predictions do"):
        MAML(MLP([1, 4, 1]), 0.01, loss=loss).meta_loss(sinusoid_batch())


@pytest.mark.parametrize("field", ["support_x", "query_x", "query_y"])
def test_a_nan_in_the_data_is_refused_not_scored_as_chance(field):
    from mtlcode import ProtoNet

    batch = classification_batch(3) if field != "query_y" else sinusoid_batch()
    tensor = getattr(batch, field)
    tensor[(0,) * tensor.dim()] = float("nan")
    maml = (MAML(Conv4(ways=3, hidden=4), 0.4, loss=F.cross_entropy) if field != "query_y"
            else MAML(MLP([1, 4, 1]), 0.01, loss=F.mse_loss))
    with pytest.raises(ValueError, match=f"{field} holds 1 NaN or infinite"):
        evaluate(maml, batch)
    if field != "query_y":
        with pytest.raises(ValueError, match=f"{field} holds 1 NaN"):
            evaluate(ProtoNet(Conv4(ways=3, hidden=4).body), batch)


def _images(channels: int, side: int, dtype: torch.dtype = torch.float32) -> TaskBatch:
    g = torch.Generator().manual_seed(1)
    return TaskBatch(torch.rand(2, 3, channels, side, side, generator=g, dtype=dtype), torch.arange(3).repeat(2, 1),
                     torch.rand(2, 3, channels, side, side, generator=g, dtype=dtype), torch.arange(3).repeat(2, 1))


def _integer_images() -> TaskBatch:
    batch = _images(1, 28)
    return TaskBatch((batch.support_x * 255).long(), batch.support_y, (batch.query_x * 255).long(), batch.query_y)


def _learners() -> dict:
    from mtlcode import ANIL, ProtoNet
    return {"maml": lambda model: MAML(model, 0.1, loss=F.cross_entropy),
            "anil": lambda model: ANIL(model, 0.1, loss=F.cross_entropy),
            "protonet": lambda model: ProtoNet(model.body)}


@pytest.mark.parametrize("learner", ["maml", "anil", "protonet"])
@pytest.mark.parametrize("batch, message", [
    (lambda: _images(1, 84), r"cannot take examples shaped \[1, 84, 84\].*image_size"),
    (lambda: _images(3, 28), r"cannot take examples shaped \[3, 28, 28\].*takes 1 channels"),
    (lambda: _images(1, 28, torch.float64), "float64 but the model's parameters are torch.float32"),
    (lambda: _integer_images(), "holds torch.int64 values"),
], ids=["84x84 into a 28x28 Conv4", "3 channels into 1", "float64 into float32", "integer images"])
def test_inputs_the_network_cannot_take_are_refused_naming_what_it_takes(learner, batch, message):
    model = Conv4(1, ways=3, hidden=4)
    if learner == "protonet" and "84" in message:  # the body alone takes any image size: that is no error
        assert _learners()[learner](model).meta_loss(batch()).isfinite()
        return
    with pytest.raises(ValueError, match=message):
        _learners()[learner](model).meta_loss(batch())


def test_a_width_the_mlp_was_not_built_for_is_refused_naming_its_first_layer():
    batch = TaskBatch(torch.randn(2, 5, 2), torch.randn(2, 5, 1), torch.randn(2, 5, 2), torch.randn(2, 5, 1))
    with pytest.raises(ValueError, match=r"cannot take examples shaped \[2\].*takes 1 features"):
        MAML(MLP([1, 8, 1]), 0.1, loss=F.mse_loss).meta_loss(batch)


@pytest.mark.parametrize("inner_lr", [float("inf"), float("nan"), 0.0, -0.1])
def test_an_inner_step_size_that_is_not_a_positive_finite_number_is_refused(inner_lr):
    with pytest.raises(ValueError, match="inner_lr must be a positive finite number"):
        MAML(MLP([1, 8, 1]), inner_lr, loss=F.mse_loss)
