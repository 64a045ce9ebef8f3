"""Sliding-window geometry and streaming blending."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reseg.components.predictor.sliding import (
    Blender,
    SlidingPlan,
    plan_axis,
    split_blocks,
    taper,
)


@settings(max_examples=200, deadline=None)
@given(
    length=st.integers(1, 3000),
    tile=st.integers(16, 600),
    half_overlap=st.integers(0, 150),
    multiple=st.sampled_from([1, 2, 8, 16, 32]),
)
def test_plan_covers_the_padded_axis_with_the_fewest_tiles(length, tile, half_overlap, multiple):
    overlap = 2 * half_overlap
    if 2 * overlap > tile:
        with pytest.raises(ValueError, match="overlap"):
            plan_axis(length, tile, overlap, multiple)
        return
    p = plan_axis(length, tile, overlap, multiple)
    assert p.tile % multiple == 0
    assert p.tile <= multiple * -(-tile // multiple)
    assert p.tile >= 2 * overlap
    assert p.pad == overlap // 2
    # the tiles reach the end of the padded axis ...
    assert p.start(p.n - 1) + p.tile >= length + p.pad
    assert p.start(0) == -p.pad
    # ... and one tile fewer of the unshrunk size would not
    big = multiple * -(-tile // multiple)
    assert p.n == 1 or (p.n - 1) * (big - overlap) + overlap < length + 2 * p.pad


@pytest.mark.parametrize("tile,overlap", [(64, 0), (64, 16), (100, 50), (48, 24)])
def test_taper_is_a_partition_of_unity_in_overlaps(tile, overlap):
    w = taper(tile, overlap)
    assert w.shape == (tile,) and w.min() > 0 and w.max() <= 1
    np.testing.assert_allclose(w, w[::-1])
    if overlap:
        # the last `overlap` weights of one tile and the first of the next sum to 1
        np.testing.assert_allclose(w[tile - overlap :] + w[:overlap], 1.0, atol=1e-6)
        x = np.arange(overlap)
        np.testing.assert_allclose(
            w[:overlap], np.sin(np.pi / 2 * (x + 0.5) / overlap) ** 2, rtol=1e-6
        )


def _reference(plan: SlidingPlan, tiles: dict, c: int) -> np.ndarray:
    """Blend on a full canvas: sum w p / sum w, cropped to the scene."""
    r, q = plan.rows, plan.cols
    h = r.start(r.n - 1) + r.tile + r.pad
    w = q.start(q.n - 1) + q.tile + q.pad
    num = np.zeros((h, w, c))
    den = np.zeros((h, w))
    wt = plan.weight()
    for (i, j), p in tiles.items():
        y, x = r.start(i) + r.pad, q.start(j) + q.pad
        num[y : y + r.tile, x : x + q.tile] += wt[..., None] * p
        den[y : y + r.tile, x : x + q.tile] += wt
    out = num / den[..., None]
    return out[r.pad : r.pad + r.length, q.pad : q.pad + q.length]


@settings(max_examples=40, deadline=None)
@given(
    height=st.integers(1, 150),
    width=st.integers(1, 150),
    tile=st.sampled_from([16, 24, 40, 64]),
    half_overlap=st.integers(0, 8),
    seed=st.integers(0, 1000),
    shrink=st.booleans(),
)
def test_blender_streams_exactly_the_full_canvas_blend(
    height, width, tile, half_overlap, seed, shrink
):
    overlap = 2 * half_overlap
    if 2 * overlap > tile:
        return
    c = 3
    plan = SlidingPlan.make(height, width, tile, overlap, multiple=8, shrink=shrink)
    assert shrink or plan.tile_shape == (8 * -(-tile // 8),) * 2
    rng = np.random.default_rng(seed)
    tiles = {ij: rng.dirichlet(np.ones(c), plan.tile_shape).astype(np.float32) for ij in plan}
    out = np.full((height, width, c), np.nan, np.float32)
    seen = np.zeros((height, width), int)
    blender = Blender(plan, c)
    for ij in plan:
        for block in blender.add(*ij, tiles[ij]):
            win = block.window
            sl = (slice(win.row_off, win.row_end), slice(win.col_off, win.col_end))
            out[sl] = block.probs
            seen[sl] += 1
    assert (seen == 1).all(), "every scene pixel is emitted exactly once"
    np.testing.assert_allclose(out, _reference(plan, tiles, c), rtol=1e-5, atol=1e-6)


def test_blender_memory_does_not_depend_on_the_scene_height():
    short = Blender(SlidingPlan.make(200, 1000, 64, 16), 5)
    tall = Blender(SlidingPlan.make(20000, 1000, 64, 16), 5)
    size = lambda b: b._band.nbytes + b._right.nbytes + b.w2.nbytes  # noqa: E731
    # one 16-row band across the (padded) width, one 16-column band, the 64 x 64 weight
    bound = (16 * 1100 * 6 + 64 * 16 * 6 + 64 * 64) * 4
    assert size(short) <= bound and size(tall) <= bound


def test_blender_refuses_tiles_out_of_order():
    plan = SlidingPlan.make(100, 100, 32, 8)
    b = Blender(plan, 2)
    with pytest.raises(ValueError, match="row-major"):
        b.add(0, 1, np.zeros((*plan.tile_shape, 2), np.float32))


def _blend(plan: SlidingPlan, tiles: dict, c: int, blocks) -> tuple[np.ndarray, np.ndarray]:
    """Scene canvas of blended probabilities and how often each pixel was emitted."""
    out = np.full((plan.rows.length, plan.cols.length, c), np.nan, np.float32)
    seen = np.zeros(out.shape[:2], int)
    for block in blocks:
        blender = Blender(plan, c, block)
        win = None if block is None else block.window(plan)
        for ij in plan if block is None else block.tiles():
            for part in blender.add(*ij, tiles[ij]):
                w = part.window
                if win is not None:
                    assert w.intersection(win) == w, "a block emits only its own window"
                sl = (slice(w.row_off, w.row_end), slice(w.col_off, w.col_end))
                out[sl] = part.probs
                seen[sl] += 1
    return out, seen


@settings(max_examples=60, deadline=None)
@given(
    height=st.integers(1, 300),
    width=st.integers(1, 300),
    tile=st.sampled_from([16, 24, 40, 64]),
    half_overlap=st.integers(0, 8),
    per_side=st.integers(1, 4),
    seed=st.integers(0, 1000),
)
def test_blocks_blend_bit_for_bit_as_the_whole_scene(
    height, width, tile, half_overlap, per_side, seed
):
    overlap = 2 * half_overlap
    if 2 * overlap > tile:
        return
    c = 3
    plan = SlidingPlan.make(height, width, tile, overlap, multiple=8)
    rng = np.random.default_rng(seed)
    tiles = {ij: rng.dirichlet(np.ones(c), plan.tile_shape).astype(np.float32) for ij in plan}
    whole, _ = _blend(plan, tiles, c, [None])
    blocks = split_blocks(plan, per_side)
    assert sum((b.i1 - b.i0) * (b.j1 - b.j0) for b in blocks) == plan.num_tiles
    parts, seen = _blend(plan, tiles, c, blocks)
    assert (seen == 1).all(), "the blocks' windows tile the scene"
    np.testing.assert_array_equal(parts, whole)
