"""Normal head and anomaly head with the patch-wise residual module."""

from __future__ import annotations

import pytest
import torch

from sclib.models.heads import (
    AnomalyHead,
    NormalHead,
    block_geometry,
    draw_offsets,
)

CHANNELS = 8


def make_head(**options) -> AnomalyHead:
    return AnomalyHead(CHANNELS, **options)


def randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def constant_texture(values: torch.Tensor, side: int) -> torch.Tensor:
    """Feature maps (B, C, side, side) whose every position contains the vector ``values[b]``."""
    return values[:, :, None, None].expand(-1, -1, side, side).contiguous()


@pytest.mark.parametrize(
    ("side", "block", "n_offsets"),
    [(1, 1, 1), (2, 2, 1), (3, 2, 2), (4, 3, 2), (6, 4, 3), (7, 4, 4), (14, 8, 7)],
)
def test_block_geometry(side, block, n_offsets):
    assert block_geometry(side) == (block, n_offsets)


def test_block_geometry_rejects_zero_side():
    with pytest.raises(ValueError, match="got 0"):
        block_geometry(0)


@pytest.mark.parametrize("side", range(7, 17))
def test_offsets_distinct_when_four_fit(side):
    generator = torch.Generator().manual_seed(side)
    _, n_offsets = block_geometry(side)
    for _ in range(20):
        offsets = draw_offsets(side, generator)
        assert len(set(offsets)) == 4
        assert all(0 <= offset < n_offsets for offset in offsets)


@pytest.mark.parametrize("side", range(3, 7))
def test_offsets_repeat_without_collapsing(side):
    """With 2 or 3 offsets available, the coefficients per distinct offset are not all zero."""
    generator = torch.Generator().manual_seed(side)
    signs = (-1, 1, -1, 1)
    for _ in range(20):
        offsets = draw_offsets(side, generator)
        weight = {offset: 0 for offset in offsets}
        for sign, offset in zip(signs, offsets):
            weight[offset] += sign
        assert sum(weight.values()) == 0
        assert any(value != 0 for value in weight.values())


def test_offsets_follow_generator():
    first = [draw_offsets(12, torch.Generator().manual_seed(3)) for _ in range(2)]
    assert first[0] == first[1]


def test_normal_head_scores_nonnegative():
    head = NormalHead(CHANNELS)
    scores = head(randn(5, CHANNELS, 4, 4))
    assert scores.shape == (5,)
    assert (scores >= 0).all()


@pytest.mark.parametrize("training", [True, False])
def test_residual_cancels_constant_texture(training):
    """Constant maps give R = 0, so two different textures get the same score."""
    head = make_head()
    head.train(training)
    values = torch.randn(2, CHANNELS, generator=torch.Generator().manual_seed(1))
    features = torch.cat([constant_texture(values[:1], 9), constant_texture(values[1:], 9)])

    assert torch.equal(head.residual(features, (0, 1, 2, 3)), torch.zeros(2, CHANNELS, 5, 5))
    output = head(features)
    assert torch.allclose(output.score[0], output.score[1])
    assert torch.allclose(output.patch_scores[0], output.patch_scores[1])


def test_residual_formula():
    head = make_head()
    features = randn(1, CHANNELS, 8, 8)
    offsets = (3, 0, 2, 1)
    block = 5
    blocks = [features[:, :, i : i + block, i : i + block] for i in offsets]
    expected = blocks[3] - blocks[2] + blocks[1] - blocks[0]
    assert torch.allclose(head.residual(features, offsets), expected)


def test_eval_scores_repeat_exactly():
    head = make_head().eval()
    features = randn(3, CHANNELS, 10, 10)
    first = head(features)
    torch.rand(5)  # advance the global RNG: the eval draws must not depend on it
    second = head(features)
    assert torch.equal(first.score, second.score)
    assert torch.equal(first.patch_scores, second.patch_scores)


def test_eval_offsets_are_seeded_and_cached():
    first = make_head(eval_draws=8).eval_offsets(12)
    second = make_head(eval_draws=8).eval_offsets(12)
    assert first == second
    assert sum(count for _, count in first) == 8

    generator = torch.Generator().manual_seed(0)
    expected = [draw_offsets(12, generator) for _ in range(8)]
    assert sorted(offsets for offsets, _ in first) == sorted(set(expected))


def test_eval_score_is_mean_over_fixed_draws():
    head = make_head(eval_draws=5).eval()
    features = randn(2, CHANNELS, 11, 11)
    per_draw_scores = []
    per_draw_maps = []
    for offsets, count in head.eval_offsets(11):
        patch_scores = head.scorer(head.residual(features, offsets)).abs()
        per_draw_scores += [head.top_mean(patch_scores)] * count
        per_draw_maps += [patch_scores] * count

    output = head(features)
    assert torch.allclose(output.score, torch.stack(per_draw_scores).mean(0), atol=1e-6)
    assert torch.allclose(output.patch_scores, torch.stack(per_draw_maps).mean(0), atol=1e-6)


def test_train_draws_follow_head_generator():
    features = randn(4, CHANNELS, 12, 12)
    weights = make_head().state_dict()
    scores = []
    for _ in range(2):
        head = make_head(generator=torch.Generator().manual_seed(7)).train()
        head.load_state_dict(weights)
        scores.append(torch.stack([head(features).score for _ in range(3)]))
    assert torch.equal(scores[0], scores[1])


def test_train_draws_vary_between_calls():
    head = make_head(generator=torch.Generator().manual_seed(7)).eval()
    features = randn(4, CHANNELS, 12, 12)
    head.train()
    scores = torch.stack([head(features).score for _ in range(6)])
    assert (scores - scores[0]).abs().max() > 0


@pytest.mark.parametrize("side", range(1, 17))
@pytest.mark.parametrize("training", [True, False])
def test_every_feature_map_side_works(side, training):
    head = make_head().train(training)
    output = head(randn(2, CHANNELS, side, side))
    block, _ = block_geometry(side)
    assert output.score.shape == (2,)
    assert output.patch_scores.shape == (2, 1, block, block)
    assert torch.isfinite(output.score).all()
    assert (output.patch_scores >= 0).all()


def test_non_square_map_uses_shorter_side():
    head = make_head().eval()
    output = head(randn(2, CHANNELS, 6, 9))
    assert output.patch_scores.shape == (2, 1, 4, 4)


@pytest.mark.parametrize(
    ("cells", "top_fraction", "n_top"), [(64, 0.1, 6), (9, 0.1, 1), (1, 0.1, 1), (16, 0.5, 8)]
)
def test_top_mean_averages_top_cells(cells, top_fraction, n_top):
    head = make_head(top_fraction=top_fraction)
    side = int(cells**0.5)
    patch_scores = torch.arange(cells, dtype=torch.float32).view(1, 1, side, side)
    expected = torch.arange(cells - n_top, cells, dtype=torch.float32).mean()
    assert torch.allclose(head.top_mean(patch_scores), expected)


def test_invalid_head_options_raise():
    with pytest.raises(ValueError, match="top_fraction"):
        AnomalyHead(CHANNELS, top_fraction=0.0)
    with pytest.raises(ValueError, match="eval_draws"):
        AnomalyHead(CHANNELS, eval_draws=0)
