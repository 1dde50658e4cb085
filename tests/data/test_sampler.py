"""Balanced batch sampling: slot counts, labels, balance and reproducibility."""

from __future__ import annotations

import itertools

import pytest
import torch

from sclib.data.sampler import BalancedBatchSampler, BatchIndices


def _sampler(n_normal=100, n_anomaly=10, batch_size=48, seed=0, **kwargs) -> BalancedBatchSampler:
    generator = torch.Generator().manual_seed(seed)
    return BalancedBatchSampler(n_normal, n_anomaly, batch_size, generator, **kwargs)


def test_paper_batch_has_two_thirds_normal_slots():
    batch = _sampler(batch_size=48).sample()
    assert isinstance(batch, BatchIndices)
    assert batch.normal_index.shape == (32,)
    assert batch.anomaly_index.shape == (16,)
    assert batch.labels.shape == (48,)
    assert batch.labels.dtype == torch.long
    assert batch.normal_index.dtype == torch.long
    assert batch.anomaly_index.dtype == torch.long


@pytest.mark.parametrize(
    ("batch_size", "normal_slots", "anomaly_slots"),
    [(3, 2, 1), (4, 3, 1), (5, 4, 1), (6, 4, 2), (32, 22, 10), (48, 32, 16)],
)
def test_anomaly_slots_round_down(batch_size, normal_slots, anomaly_slots):
    sampler = _sampler(batch_size=batch_size)
    batch = sampler.sample()
    assert sampler.n_normal_slots == normal_slots
    assert sampler.n_anomaly_slots == anomaly_slots
    assert len(batch.normal_index) == normal_slots
    assert len(batch.anomaly_index) == anomaly_slots


def test_labels_in_batch_order():
    for batch in itertools.islice(_sampler(), 20):
        assert set(batch.labels[:32].tolist()) <= {0, 2}
        assert batch.labels[32:].tolist() == [1] * 16


def test_without_anomalies_all_slots_normal():
    sampler = _sampler(n_anomaly=0, batch_size=10)
    batch = sampler.sample()
    assert batch.normal_index.shape == (10,)
    assert batch.anomaly_index.shape == (0,)
    assert batch.labels.shape == (10,)
    assert 1 not in batch.labels.tolist()


def test_small_batch_without_anomalies_allowed():
    batch = _sampler(n_anomaly=0, batch_size=1).sample()
    assert batch.labels.shape == (1,)


def test_pseudo_share_near_half():
    labels = torch.cat([batch.labels[:32] for batch in itertools.islice(_sampler(seed=3), 300)])
    share = (labels == 2).float().mean().item()
    # 9600 fair coin flips: the standard deviation of the share is about 0.005.
    assert 0.47 < share < 0.53


@pytest.mark.parametrize(("probability", "expected"), [(0.0, 0), (1.0, 2)])
def test_pseudo_probability_extremes(probability, expected):
    batch = _sampler(pseudo_probability=probability).sample()
    assert batch.labels[:32].tolist() == [expected] * 32


def test_indices_in_range():
    for batch in itertools.islice(_sampler(n_normal=7, n_anomaly=3, batch_size=12), 50):
        assert int(batch.normal_index.min()) >= 0
        assert int(batch.normal_index.max()) < 7
        assert int(batch.anomaly_index.min()) >= 0
        assert int(batch.anomaly_index.max()) < 3


def test_no_repeats_when_pool_is_large():
    batch = _sampler(n_normal=100, n_anomaly=20, batch_size=48).sample()
    assert len(set(batch.normal_index.tolist())) == 32
    assert len(set(batch.anomaly_index.tolist())) == 16


def test_small_pool_is_used_evenly():
    batch = _sampler(n_normal=100, n_anomaly=10, batch_size=48).sample()
    counts = torch.bincount(batch.anomaly_index, minlength=10)
    assert int(counts.max()) - int(counts.min()) <= 1
    assert int(counts.sum()) == 16


def test_one_anomaly_fills_every_anomaly_slot():
    batch = _sampler(n_anomaly=1).sample()
    assert batch.anomaly_index.tolist() == [0] * 16


def test_same_seed_same_batches():
    first = [
        b.labels.tolist() + b.normal_index.tolist() for b in itertools.islice(_sampler(seed=5), 5)
    ]
    second = [
        b.labels.tolist() + b.normal_index.tolist() for b in itertools.islice(_sampler(seed=5), 5)
    ]
    assert first == second


def test_different_seed_different_batches():
    first = _sampler(seed=5).sample()
    second = _sampler(seed=6).sample()
    assert not torch.equal(first.normal_index, second.normal_index)


def test_iterator_does_not_end():
    assert len(list(itertools.islice(_sampler(), 100))) == 100


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"n_normal": 0}, "n_normal"),
        ({"n_anomaly": -1}, "n_anomaly"),
        ({"batch_size": 0, "n_anomaly": 0}, "batch_size"),
        ({"batch_size": 2}, "no anomaly slot"),
        ({"pseudo_probability": 1.5}, "pseudo_probability"),
    ],
)
def test_invalid_arguments(arguments, message):
    with pytest.raises(ValueError, match=message):
        _sampler(**arguments)


def test_generator_type_checked():
    with pytest.raises(TypeError, match="torch.Generator"):
        BalancedBatchSampler(10, 2, 6, generator=0)
