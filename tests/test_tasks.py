"""Task containers and samplers: shapes, labels, disjointness, determinism, errors."""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils.data import TensorDataset

from mtlcode.tasks import NWayKShot, Sinusoid, SinusoidBatch, TaskBatch


def toy_dataset(classes: int = 10, per_class: int = 8) -> TensorDataset:
    # Each example's value encodes (class, index) so overlaps can be detected from the images.
    values = torch.arange(classes * per_class, dtype=torch.float32)
    images = values.reshape(-1, 1, 1, 1).expand(-1, 1, 2, 2).clone()
    labels = torch.arange(classes).repeat_interleave(per_class)
    return TensorDataset(images, labels)


def test_sinusoid_shapes_ranges_and_true_curve():
    batch = Sinusoid().sample(7, shots=5, queries=9, generator=torch.Generator().manual_seed(0))
    assert isinstance(batch, SinusoidBatch) and len(batch) == 7
    assert batch.support_x.shape == (7, 5, 1) and batch.query_y.shape == (7, 9, 1)
    assert batch.amplitude.shape == (7,) and batch.phase.shape == (7,)
    assert 0.1 <= batch.amplitude.min() and batch.amplitude.max() <= 5.0
    assert 0 <= batch.phase.min() and batch.phase.max() <= math.pi
    assert batch.support_x.abs().max() <= 5.0
    torch.testing.assert_close(batch.true_y(batch.query_x), batch.query_y)


def test_sinusoid_is_deterministic_under_a_seed():
    a = Sinusoid().sample(3, 4, 4, generator=torch.Generator().manual_seed(5))
    b = Sinusoid().sample(3, 4, 4, generator=torch.Generator().manual_seed(5))
    c = Sinusoid().sample(3, 4, 4, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a.support_x, b.support_x) and torch.equal(a.amplitude, b.amplitude)
    assert not torch.equal(a.support_x, c.support_x)


def test_task_batch_indexing_len_and_to():
    batch = Sinusoid().sample(4, 3, 2)
    one = batch[1]
    assert one.support_x.shape == (3, 1) and one.amplitude.shape == ()
    with pytest.raises(TypeError, match="single task"):
        len(one)
    assert len(batch[1:3]) == 2 and isinstance(batch[1:3], SinusoidBatch)
    assert len(list(batch)) == 4
    with pytest.raises(IndexError):
        batch[4]
    doubled = batch.to("cpu", dtype=torch.float64)
    assert doubled.query_x.dtype == torch.float64 and doubled.amplitude.dtype == torch.float64


def test_task_batch_rejects_mismatched_task_counts():
    with pytest.raises(ValueError, match="same number of tasks"):
        TaskBatch(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(3, 3), torch.zeros(3, 3))


@pytest.mark.parametrize("kwargs", [dict(num_tasks=0, shots=1, queries=1), dict(num_tasks=1, shots=0, queries=1)])
def test_sinusoid_bad_arguments(kwargs):
    with pytest.raises(ValueError, match="must be an int"):
        Sinusoid().sample(**kwargs)


def test_nway_kshot_shapes_labels_and_disjointness():
    sampler = NWayKShot(toy_dataset(), ways=4, shots=2, queries=3, generator=torch.Generator().manual_seed(0))
    batch = sampler.sample(6)
    assert batch.support_x.shape == (6, 8, 1, 2, 2) and batch.query_x.shape == (6, 12, 1, 2, 2)
    for task in batch:
        assert sorted(task.support_y.tolist()) == sorted(list(range(4)) * 2)
        assert sorted(task.query_y.tolist()) == sorted(list(range(4)) * 3)
        support_ids = set(task.support_x[:, 0, 0, 0].tolist())
        query_ids = set(task.query_x[:, 0, 0, 0].tolist())
        assert not support_ids & query_ids
        # Every label names one class: the same source class for its support and query examples.
        for label in range(4):
            classes = {int(v) // 8 for v in task.support_x[task.support_y == label, 0, 0, 0].tolist()}
            classes |= {int(v) // 8 for v in task.query_x[task.query_y == label, 0, 0, 0].tolist()}
            assert len(classes) == 1


def test_nway_kshot_label_order_is_random_across_tasks():
    sampler = NWayKShot(toy_dataset(), ways=5, shots=1, queries=1, generator=torch.Generator().manual_seed(0))
    batch = sampler.sample(20)
    first_class = {int(task.support_x[task.support_y == 0][0, 0, 0, 0]) // 8 for task in batch}
    assert len(first_class) > 1


def test_nway_kshot_determinism_and_iteration():
    def draw(seed):
        return NWayKShot(toy_dataset(), 3, 1, 2, generator=torch.Generator().manual_seed(seed)).sample(4)

    assert torch.equal(draw(1).query_x, draw(1).query_x)
    assert not torch.equal(draw(1).query_x, draw(2).query_x)
    stream = iter(NWayKShot(toy_dataset(), 3, 1, 2, tasks_per_batch=5))
    assert len(next(stream)) == 5 and len(next(stream)) == 5


def test_nway_kshot_clear_errors():
    with pytest.raises(ValueError, match="11-way tasks need at least 11 classes"):
        NWayKShot(toy_dataset(classes=10), ways=11, shots=1, queries=1)
    with pytest.raises(ValueError, match="shots \\+ queries = 9"):
        NWayKShot(toy_dataset(per_class=8), ways=2, shots=4, queries=5)
    with pytest.raises(ValueError, match="ways"):
        NWayKShot(toy_dataset(), ways=0, shots=1, queries=1)
