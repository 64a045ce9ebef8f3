"""Grid arithmetic: cores partition scenes, tiles cover their cores, folds are balanced."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from reseg.windows import (
    TileGrid,
    Window,
    assign_folds,
    block_table,
    cell_of,
    fold_map,
    scene_blocks,
    tiles_along,
)


@st.composite
def grids(draw):
    tile = draw(st.integers(4, 64))
    overlap = 2 * draw(st.integers(0, (tile - 1) // 2))
    return TileGrid(draw(st.integers(1, 300)), draw(st.integers(1, 300)), tile, overlap)


@settings(max_examples=60, deadline=None)
@given(grids())
def test_cores_partition_the_scene_and_lie_in_their_tiles(g):
    owner = np.zeros((g.height, g.width), np.int32)
    for spec in g:
        c, w = spec.core, spec.window
        assert c.height > 0 and c.width > 0
        assert w.row_off <= c.row_off and c.row_end <= w.row_end
        assert w.col_off <= c.col_off and c.col_end <= w.col_end
        owner[c.row_off : c.row_end, c.col_off : c.col_end] += 1
    assert (owner == 1).all()


@settings(max_examples=60, deadline=None)
@given(grids())
def test_last_tile_reaches_the_end_and_no_tile_is_superfluous(g):
    n = tiles_along(g.height, g.tile, g.overlap)
    assert (n - 1) * g.stride + g.tile >= g.height
    assert n == 1 or (n - 2) * g.stride + g.tile < g.height


@settings(max_examples=40, deadline=None)
@given(grids())
def test_cell_of_finds_the_core_that_owns_a_pixel(g):
    for spec in g:
        i, j = spec.cell
        assert cell_of(spec.core.row_off, g.rows, g.tile, g.overlap) == i
        assert cell_of(spec.core.row_end - 1, g.rows, g.tile, g.overlap) == i
        assert cell_of(spec.core.col_end - 1, g.cols, g.tile, g.overlap) == j


@settings(max_examples=60, deadline=None)
@given(grids(), st.integers(1, 4), st.integers(1, 6), st.integers(0, 99))
def test_fold_map_matches_the_fold_of_the_owning_core(g, block, k, seed):
    folds = assign_folds(scene_blocks("s", g, block), k, seed)
    table = block_table(folds, "s", g, block)
    for spec in list(g)[:20]:
        fm = fold_map(g, spec.window, table, block)
        i, j = spec.cell
        core = spec.core.relative_to(spec.window)
        assert (fm[core] == table[i // block, j // block]).all()
        rows = np.arange(spec.window.row_off, spec.window.row_end)
        cols = np.arange(spec.window.col_off, spec.window.col_end)
        outside = (rows[:, None] >= g.height) | (cols[None, :] >= g.width)
        assert (fm[outside] == 255).all() and (fm[~outside] < k).all()


def test_folds_are_balanced_and_seeded():
    blocks = [("a", i, j) for i in range(5) for j in range(7)] + [("b", 0, j) for j in range(4)]
    f = assign_folds(blocks, 5, seed=3)
    counts = np.bincount(list(f.values()), minlength=5)
    assert counts.max() - counts.min() <= 1
    assert f == assign_folds(list(reversed(blocks)), 5, seed=3)
    assert f != assign_folds(blocks, 5, seed=4)


def test_window_intersection_and_relative_index():
    a, b = Window(-4, 10, 20, 20), Window(0, 0, 16, 25)
    assert a.intersection(b) == Window(0, 10, 16, 15)
    assert a.intersection(Window(100, 100, 1, 1)) is None
    assert Window(0, 10, 16, 15).relative_to(a) == (slice(4, 20), slice(0, 15))
