"""Task containers and samplers: shapes, labels, disjointness, determinism, errors."""

from __future__ import annotations

import math

import numpy as np
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


# ---------------------------------------------------------------------------- bad inputs, caught early


def regression_batch(support: int = 5, query: int = 5, support_y: tuple[int, ...] | None = None) -> TaskBatch:
    # Four sinusoid-shaped tasks; ``support_y`` overrides the shape of the support targets.
    y_shape = support_y if support_y is not None else (4, support, 1)
    query_x, query_y = torch.zeros(4, query, 1), torch.zeros(4, query, 1)
    return TaskBatch(torch.zeros(4, support, 1), torch.zeros(y_shape), query_x, query_y)


def test_task_batch_rejects_inputs_and_targets_of_different_lengths():
    with pytest.raises(ValueError, match=r"support_x has 10 examples per task but support_y has 7") as info:
        regression_batch(support=10, support_y=(4, 7, 1))
    assert "(4, 10, 1)" in str(info.value) and "(4, 7, 1)" in str(info.value)
    with pytest.raises(ValueError, match=r"query_x has 6 examples per task but query_y has 5"):
        TaskBatch(torch.zeros(4, 5, 1), torch.zeros(4, 5, 1), torch.zeros(4, 6, 1), torch.zeros(4, 5, 1))
    with pytest.raises(ValueError, match=r"support_x has 3 examples per task but support_y has 2"):  # class labels
        TaskBatch(torch.zeros(2, 3, 1, 4, 4), torch.zeros(2, 2, dtype=torch.long),
                  torch.zeros(2, 3, 1, 4, 4), torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"support_x must be shaped \[tasks, examples, \.\.\.\], got shape \(4,\)"):
        TaskBatch(torch.zeros(4), torch.zeros(4, 1, 1), torch.zeros(4, 1, 1), torch.zeros(4, 1, 1))
    with pytest.raises(TypeError, match=r"query_y must be a torch\.Tensor, got list"):
        TaskBatch(torch.zeros(1, 1, 1), torch.zeros(1, 1, 1), torch.zeros(1, 1, 1), [[[0.0]]])


def test_task_batch_needs_an_output_dimension_on_regression_targets():
    with pytest.raises(ValueError, match=r"support_y.*floating-point.*\(4, 5\).*unsqueeze\(-1\).*\(4, 5, 1\)"):
        regression_batch(support_y=(4, 5))
    with pytest.raises(ValueError, match=r"query_y.*unsqueeze\(-1\)"):
        TaskBatch(torch.zeros(4, 5, 1), torch.zeros(4, 5, 1), torch.zeros(4, 5, 1), torch.zeros(4, 5))
    # Class labels are integers shaped [tasks, examples]; single tasks have no task dimension.
    labels = TaskBatch(torch.zeros(2, 3, 1, 4, 4), torch.zeros(2, 3, dtype=torch.long),
                       torch.zeros(2, 6, 1, 4, 4), torch.zeros(2, 6, dtype=torch.long))
    assert labels[0].support_y.shape == (3,) and len(labels[1:]) == 1
    assert regression_batch()[0].query_y.shape == (5, 1)
    assert len(Sinusoid().sample(3, 2, 0)) == 3  # no queries: fine, [3, 0, 1]


def test_task_batch_to_dtype_keeps_class_labels_integers():
    batch = NWayKShot(toy_dataset(), ways=3, shots=1, queries=2).sample(2)
    doubled = batch.to(dtype=torch.float64)  # as MAML's error messages suggest, device omitted
    assert doubled.support_x.dtype == doubled.query_x.dtype == torch.float64
    assert doubled.support_y.dtype == doubled.query_y.dtype == torch.long
    assert torch.equal(doubled.query_y, batch.query_y) and batch.to("cpu").support_x.dtype == torch.float32


def test_task_batch_index_accepts_numpy_ints_and_refuses_bool():
    batch = Sinusoid().sample(4, 3, 2, generator=torch.Generator().manual_seed(0))
    for index in (np.int64(2), torch.tensor(2)):
        one = batch[index]
        assert one.support_x.shape == (3, 1) and torch.equal(one.query_y, batch.query_y[2])
    with pytest.raises(IndexError, match="out of range"):
        batch[np.int64(4)]
    with pytest.raises(TypeError, match="bool"):
        batch[True]


@pytest.mark.parametrize("name", ["amplitude", "phase", "x_range"])
@pytest.mark.parametrize("bounds", [(0.0, math.inf), (-math.inf, 1.0), (0.0, math.nan)])
def test_sinusoid_ranges_must_be_finite(name, bounds):
    with pytest.raises(ValueError, match=rf"{name} must be a \(low, high\) pair of finite numbers.*{bounds[1]}"):
        Sinusoid(**{name: bounds})


@pytest.mark.parametrize("bad", [5.0, (1.0, 2.0, 3.0), ("0", "1"), None])
def test_sinusoid_ranges_must_be_pairs_of_numbers(bad):
    with pytest.raises((TypeError, ValueError), match=r"amplitude must be a \(low, high\) pair"):
        Sinusoid(amplitude=bad)


def test_sinusoid_range_order_is_still_checked_and_valid_ranges_unchanged():
    with pytest.raises(ValueError, match="low <= high"):
        Sinusoid(phase=(2.0, 1.0))
    assert Sinusoid(amplitude=(1, 2)).amplitude == (1, 2)


@pytest.mark.parametrize("kwargs, name", [(dict(queries=0), "queries"), (dict(shots=0), "shots"),
                                          (dict(ways=0), "ways"), (dict(tasks_per_batch=0), "tasks_per_batch")])
def test_nway_kshot_needs_at_least_one_of_each(kwargs, name):
    arguments = dict(ways=2, shots=1, queries=1) | kwargs
    with pytest.raises(ValueError, match=rf"{name} must be an integer >= 1, got 0"):
        NWayKShot(toy_dataset(), **arguments)


def test_integer_arguments_accept_numpy_ints_with_the_same_draws():
    def draw(ways, shots, queries, num_tasks):
        sampler = NWayKShot(toy_dataset(), ways, shots, queries, generator=torch.Generator().manual_seed(3),
                            tasks_per_batch=num_tasks)
        return sampler.sample(num_tasks), next(iter(sampler))

    plain, numpy = draw(3, 2, 1, 2), draw(*map(np.int64, (3, 2, 1, 2)))
    for a, b in zip(plain, numpy):
        assert torch.equal(a.support_x, b.support_x) and torch.equal(a.query_y, b.query_y)
    a = Sinusoid().sample(3, 4, 5, generator=torch.Generator().manual_seed(1))
    b = Sinusoid().sample(np.int32(3), np.int64(4), torch.tensor(5), generator=torch.Generator().manual_seed(1))
    assert torch.equal(a.support_y, b.support_y) and torch.equal(a.query_x, b.query_x)


@pytest.mark.parametrize("bad", [True, False, 2.0, "2", None, torch.tensor(True)])
@pytest.mark.parametrize("name", ["ways", "shots", "queries", "tasks_per_batch"])
def test_integer_arguments_refuse_bools_and_non_integers(bad, name):
    arguments = dict(ways=2, shots=1, queries=1) | {name: bad}
    with pytest.raises(TypeError, match=rf"{name} must be an integer >= 1, got "):
        NWayKShot(toy_dataset(), **arguments)


@pytest.mark.parametrize("name", ["num_tasks", "shots", "queries"])
def test_sample_arguments_refuse_bools(name):
    arguments = dict(num_tasks=2, shots=1, queries=1) | {name: True}
    with pytest.raises(TypeError, match=rf"{name} must be an integer >= \d, got True \(a bool\)"):
        Sinusoid().sample(**arguments)
    with pytest.raises(TypeError, match=r"num_tasks must be an integer >= 1, got True"):
        NWayKShot(toy_dataset(), 2, 1, 1).sample(True)
