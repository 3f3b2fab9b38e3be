"""Meta-training loop, checkpoints, evaluation, and end-to-end learning."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import mtlcode
from mtlcode import MAML, evaluate, meta_train
from mtlcode.checkpoints import CheckpointError, load_checkpoint, save_checkpoint
from mtlcode.models import MLP, Conv4
from mtlcode.tasks import NWayKShot, Sinusoid


def sinusoid_run(iterations: int, checkpoint: Path | None = None, seed: int = 0, meta_lr: float = 1e-3, **kwargs):
    torch.manual_seed(seed)
    maml = MAML(MLP([1, 40, 40, 1]), inner_lr=0.01, loss=F.mse_loss)
    sinusoid = Sinusoid()
    history = meta_train(maml, lambda g: sinusoid.sample(25, 10, 10, generator=g), iterations, meta_lr=meta_lr,
                         seed=seed, checkpoint=checkpoint, progress=False, **kwargs)
    return maml, history


def test_meta_training_on_sinusoid_cuts_the_post_adaptation_error():
    maml, history = sinusoid_run(400, meta_lr=3e-3)
    test_tasks = Sinusoid().sample(100, 10, 50, generator=torch.Generator().manual_seed(99))
    unadapted = evaluate(maml, test_tasks, steps=0)
    adapted = evaluate(maml, test_tasks, steps=5)
    assert adapted.mean < 0.4 * unadapted.mean, (adapted, unadapted)
    assert len(history["loss"]) == 400 and history["step"][-1] == 400


def test_resumed_run_equals_uninterrupted_run(tmp_path):
    straight, straight_history = sinusoid_run(30)
    checkpoint = tmp_path / "run.pt"
    sinusoid_run(12, checkpoint=checkpoint, checkpoint_every=5)  # "killed" after 12 steps
    assert load_checkpoint(checkpoint)["step"] == 12
    resumed, resumed_history = sinusoid_run(30, checkpoint=checkpoint, seed=0, checkpoint_every=5)
    for a, b in zip(straight.model.parameters(), resumed.model.parameters()):
        assert torch.equal(a, b)
    assert resumed_history["loss"] == straight_history["loss"]


def test_the_learning_rate_halves_on_schedule_and_a_resumed_run_keeps_it(tmp_path):
    _, straight = sinusoid_run(12, meta_lr=1e-2, lr_halving_every=5)
    assert straight["meta_lr"] == [1e-2] * 5 + [5e-3] * 5 + [2.5e-3] * 2
    constant = sinusoid_run(12, meta_lr=1e-2)[1]
    assert "meta_lr" not in constant and constant["loss"][5:] != straight["loss"][5:]
    checkpoint = tmp_path / "run.pt"
    sinusoid_run(7, checkpoint=checkpoint, meta_lr=1e-2, lr_halving_every=5, checkpoint_every=7)
    _, resumed = sinusoid_run(12, checkpoint=checkpoint, meta_lr=1e-2, lr_halving_every=5)
    assert resumed["meta_lr"] == straight["meta_lr"] and resumed["loss"] == straight["loss"]
    with pytest.raises(ValueError, match="lr_halving_every must be an int >= 1"):
        sinusoid_run(1, lr_halving_every=0)


def test_checkpoint_writes_are_atomic_and_loads_are_weights_only(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, {"x": torch.ones(2)})

    def broken_save(obj, file, *args, **kwargs):
        file.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, {"x": torch.zeros(2)})
    monkeypatch.undo()
    assert torch.equal(load_checkpoint(path)["x"], torch.ones(2))  # the old file survived
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pt"]  # no temporary left behind

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    torch.save({"evil": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(Exception, match="Weights only load failed|weights_only"):
        load_checkpoint(tmp_path / "evil.pt")


def test_nan_loss_stops_training_with_the_step():
    maml = MAML(MLP([1, 8, 1]), inner_lr=0.01, loss=F.mse_loss)

    def tasks(g):
        batch = Sinusoid().sample(2, 3, 3, generator=g)
        if g.initial_seed() == 0 and tasks.calls == 3:
            batch.query_y[:] = 3e38  # finite data (NaN data is refused up front), an overflowing loss
        tasks.calls += 1
        return batch

    tasks.calls = 0
    with pytest.raises(FloatingPointError, match="at step 3"):
        meta_train(maml, tasks, 10, progress=False)


def test_validation_history_and_evaluation_interval():
    maml, history = sinusoid_run(20, val_tasks=Sinusoid().sample(10, 10, 10), val_every=10)
    assert history["val_step"] == [10, 20] and len(history["val_loss"]) == 2
    result = evaluate(maml, lambda g: Sinusoid().sample(7, 10, 10, generator=g), num_tasks=20)
    assert len(result.values) == 20 and result.ci95 > 0
    values = torch.tensor(result.values, dtype=torch.float64)
    assert result.ci95 == pytest.approx(2.0930 * values.std().item() / 20**0.5, rel=1e-4)  # t_{0.975, 19}


@pytest.mark.slow
def test_omniglot_five_way_one_shot_beats_chance(omniglot_dir):
    mtlcode.seed_everything(0)
    train = mtlcode.data.Omniglot(sets=("background_small1",))
    test = mtlcode.data.Omniglot(sets=("background_small2",),
                                 alphabets=["Japanese_(katakana)", "Sanskrit", "Tagalog"])
    train_tasks, test_tasks = NWayKShot(train, 5, 1, 5), NWayKShot(test, 5, 1, 5)
    maml = MAML(Conv4(hidden=32), inner_lr=0.4, loss=F.cross_entropy)
    meta_train(maml, lambda g: train_tasks.sample(4, generator=g), 100, meta_lr=3e-3, progress=False)
    result = evaluate(maml, lambda g: test_tasks.sample(20, generator=g), num_tasks=100)
    assert result.mean - result.ci95 > 0.4, result  # chance is 0.2


def test_evaluate_accepts_a_fine_tuning_function():
    from mtlcode.learners.finetune import finetune

    model = MLP([1, 40, 40, 1])
    tasks = Sinusoid().sample(5, 10, 10, generator=torch.Generator().manual_seed(0))

    def adapt_and_predict(sx, sy, qx):
        return finetune(model, sx, sy, steps=5, lr=0.01, loss=F.mse_loss)(qx)

    result = evaluate(adapt_and_predict, tasks)
    assert len(result.values) == 5 and result.mean > 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_meta_training_runs_on_the_gpu():
    maml, _ = sinusoid_run(5, device="cuda")
    assert next(maml.model.parameters()).is_cuda
    result = evaluate(maml, Sinusoid().sample(4, 10, 10), device="cuda")
    assert result.mean > 0


class Killed(Exception):
    """Stands for the process being killed between two steps."""


def test_a_run_killed_between_checkpoints_resumes_to_the_uninterrupted_result(tmp_path):
    straight, straight_history = sinusoid_run(30)
    checkpoint = tmp_path / "run.pt"

    def kill_at_step_13(step, history):
        if step == 13:
            raise Killed

    with pytest.raises(Killed):
        sinusoid_run(30, checkpoint=checkpoint, checkpoint_every=5, callback=kill_at_step_13)
    assert load_checkpoint(checkpoint)["step"] == 10  # steps 11-13 are lost, as in a real kill
    resumed, resumed_history = sinusoid_run(30, checkpoint=checkpoint, checkpoint_every=5)
    for a, b in zip(straight.model.parameters(), resumed.model.parameters()):
        assert torch.equal(a, b)
    assert resumed_history["loss"] == straight_history["loss"]


def test_fewer_iterations_than_the_checkpoint_never_rewrite_it_backwards(tmp_path):
    checkpoint = tmp_path / "run.pt"
    sinusoid_run(20, checkpoint=checkpoint, checkpoint_every=5)
    before = checkpoint.read_bytes()
    with pytest.warns(UserWarning, match="at step 20, past iterations=10"):
        _, history = sinusoid_run(10, checkpoint=checkpoint, checkpoint_every=5)
    assert checkpoint.read_bytes() == before and history["step"][-1] == 20


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 truncated", b"not a checkpoint at all"],
                         ids=["empty", "truncated", "garbage"])
def test_a_damaged_checkpoint_is_named_with_what_to_do(tmp_path, content):
    checkpoint = tmp_path / "run.pt"
    checkpoint.write_bytes(content)
    with pytest.raises(CheckpointError) as error:
        sinusoid_run(5, checkpoint=checkpoint)
    message = str(error.value)
    assert str(checkpoint) in message and "delete it" in message
    assert "weights_only=False" not in message.replace("never load one you do not trust with weights_only=False", "")


@pytest.mark.parametrize("damage", [
    lambda state: state.pop("step"), lambda state: state.update(step="3"), lambda state: state.pop("history"),
    lambda state: state.update(history=[1, 2]), lambda state: state.pop("generators"),
    lambda state: state.update(generators=[torch.zeros(3)]), lambda state: state.pop("model"),
], ids=["no step", "step a string", "no history", "history a list", "no generators", "generators garbled",
        "no model"])
def test_a_checkpoint_with_a_part_missing_or_garbled_is_refused_by_name(tmp_path, damage):
    checkpoint = tmp_path / "run.pt"
    sinusoid_run(2, checkpoint=checkpoint)
    state = load_checkpoint(checkpoint)
    damage(state)
    save_checkpoint(checkpoint, state)
    before = checkpoint.read_bytes()
    with pytest.raises(CheckpointError, match=r"run\.pt is not a checkpoint of meta_train, or a damaged one"):
        sinusoid_run(4, checkpoint=checkpoint)
    assert checkpoint.read_bytes() == before  # nothing overwritten


def test_temporaries_of_a_save_killed_midway_are_removed_on_resume(tmp_path):
    checkpoint = tmp_path / "run.pt"
    sinusoid_run(5, checkpoint=checkpoint, checkpoint_every=5)
    stale = tmp_path / "run.pt8x2k.tmp"
    stale.write_bytes(b"half a checkpoint")
    sinusoid_run(10, checkpoint=checkpoint, checkpoint_every=5)
    assert not stale.exists() and load_checkpoint(checkpoint)["step"] == 10


def test_a_new_meta_lr_on_resume_takes_effect(tmp_path):
    checkpoint = tmp_path / "run.pt"
    sinusoid_run(6, checkpoint=checkpoint, meta_lr=1e-3, checkpoint_every=6)
    saved = checkpoint.read_bytes()
    same, _ = sinusoid_run(9, checkpoint=checkpoint, meta_lr=1e-3)
    assert load_checkpoint(checkpoint)["optimizer"]["param_groups"][0]["lr"] == 1e-3
    checkpoint.write_bytes(saved)
    faster, _ = sinusoid_run(9, checkpoint=checkpoint, meta_lr=0.05)
    assert load_checkpoint(checkpoint)["optimizer"]["param_groups"][0]["lr"] == 0.05
    moved = max((a - b).abs().max().item() for a, b in zip(same.model.parameters(), faster.model.parameters()))
    assert moved > 1e-2, moved  # 3 Adam steps of 0.05 against 3 of 0.001


def test_a_checkpoint_of_another_kind_of_learner_is_refused(tmp_path):
    checkpoint = tmp_path / "run.pt"
    sinusoid = Sinusoid()

    def run(first_order: bool) -> None:
        torch.manual_seed(0)
        maml = MAML(MLP([1, 40, 40, 1]), inner_lr=0.01, loss=F.mse_loss, first_order=first_order)
        meta_train(maml, lambda g: sinusoid.sample(4, 5, 5, generator=g), 4, checkpoint=checkpoint, progress=False)

    run(first_order=True)
    assert load_checkpoint(checkpoint)["learner"] == "MAML (first-order)"
    with pytest.raises(CheckpointError, match=r"holds a MAML \(first-order\) state: it cannot be resumed by MAML"):
        run(first_order=False)
