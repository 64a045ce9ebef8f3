"""Grid arithmetic of tiles, cores and fold blocks: plain values, pure functions.

A scene of H x W pixels is cut into tiles of T x T pixels that overlap by O
pixels (stride S = T - O). Tile i along an axis starts at i * S. The number of
tiles along an axis of length L is

    n = max(1, ceil((L - O) / S))

which is the smallest n with (n - 1) * S + T >= L: ceil, not floor, so the last
tile reaches the scene's end (it is padded where it runs past it).

Each tile owns a *core*: the part of the scene it is responsible for. Cores
partition the scene. Along an axis, core i spans

    [0 if i == 0 else i * S + O // 2,  L if i == n - 1 else (i + 1) * S + O // 2)

so a core sits O // 2 pixels inside its tile on sides shared with a neighbour.
Per-pixel statistics, selections and validation count core pixels only, so a
scene pixel is counted once although tiles overlap.

Fold blocks group g x g cores; block (bi, bj) holds cells i // g == bi and j // g == bj.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, order=True)
class Window:
    """A rectangle of scene pixels: offsets may be negative and extents run past the scene."""

    row_off: int
    col_off: int
    height: int
    width: int

    @property
    def row_end(self) -> int:
        return self.row_off + self.height

    @property
    def col_end(self) -> int:
        return self.col_off + self.width

    def intersection(self, other: Window) -> Window | None:
        r0, c0 = max(self.row_off, other.row_off), max(self.col_off, other.col_off)
        r1, c1 = min(self.row_end, other.row_end), min(self.col_end, other.col_end)
        if r1 <= r0 or c1 <= c0:
            return None
        return Window(r0, c0, r1 - r0, c1 - c0)

    def relative_to(self, outer: Window) -> tuple[slice, slice]:
        """Index of this window inside an array that covers `outer`."""
        r, c = self.row_off - outer.row_off, self.col_off - outer.col_off
        return slice(r, r + self.height), slice(c, c + self.width)


def tiles_along(length: int, tile: int, overlap: int) -> int:
    """Number of tiles along an axis (see the module docstring for why ceil)."""
    if length <= 0:
        raise ValueError(f"length must be positive, received length={length}")
    stride = tile - overlap
    return max(1, math.ceil((length - overlap) / stride))


def core_span(i: int, n: int, length: int, tile: int, overlap: int) -> tuple[int, int]:
    """[start, end) of core i of n along an axis of `length` pixels."""
    stride = tile - overlap
    start = 0 if i == 0 else i * stride + overlap // 2
    end = length if i == n - 1 else (i + 1) * stride + overlap // 2
    return start, end


def cell_of(pos: np.ndarray | int, n: int, tile: int, overlap: int) -> np.ndarray:
    """Index of the core containing pixel position(s) `pos` along an axis."""
    stride = tile - overlap
    i = np.floor_divide(np.asarray(pos) - overlap // 2, stride)
    return np.clip(i, 0, n - 1)


@dataclass(frozen=True)
class TileSpec:
    """A tile of a scene: its window, its core (a Window), and its cell (i, j)."""

    window: Window
    core: Window
    cell: tuple[int, int]


@dataclass(frozen=True)
class TileGrid:
    """The tiles of an H x W scene."""

    height: int
    width: int
    tile: int
    overlap: int

    @property
    def rows(self) -> int:
        return tiles_along(self.height, self.tile, self.overlap)

    @property
    def cols(self) -> int:
        return tiles_along(self.width, self.tile, self.overlap)

    @property
    def stride(self) -> int:
        return self.tile - self.overlap

    def spec(self, i: int, j: int) -> TileSpec:
        r0, r1 = core_span(i, self.rows, self.height, self.tile, self.overlap)
        c0, c1 = core_span(j, self.cols, self.width, self.tile, self.overlap)
        window = Window(i * self.stride, j * self.stride, self.tile, self.tile)
        return TileSpec(window, Window(r0, c0, r1 - r0, c1 - c0), (i, j))

    def __iter__(self) -> Iterator[TileSpec]:
        for i in range(self.rows):
            for j in range(self.cols):
                yield self.spec(i, j)

    def cells_of(self, window: Window) -> tuple[np.ndarray, np.ndarray]:
        """Cell row index of each row and cell column index of each column of `window`.

        Positions outside the scene get -1.
        """
        rows = np.arange(window.row_off, window.row_end)
        cols = np.arange(window.col_off, window.col_end)
        ci = cell_of(rows, self.rows, self.tile, self.overlap)
        cj = cell_of(cols, self.cols, self.tile, self.overlap)
        ci = np.where((rows >= 0) & (rows < self.height), ci, -1)
        cj = np.where((cols >= 0) & (cols < self.width), cj, -1)
        return ci, cj


def assign_folds(
    blocks: list[tuple[str, int, int]], k: int, seed: int
) -> dict[tuple[str, int, int], int]:
    """Balanced, seeded fold of each spatial block: shuffle, then deal round-robin.

    Block counts per fold differ by at most one.
    """
    order = sorted(blocks)
    random.Random(seed).shuffle(order)
    return {b: idx % k for idx, b in enumerate(order)}


def block_table(
    folds: dict[tuple[str, int, int], int], scene: str, grid: TileGrid, block_cells: int
) -> np.ndarray:
    """(blocks down, blocks across) uint8 fold of each block of one scene."""
    n_bi = (grid.rows - 1) // block_cells + 1
    n_bj = (grid.cols - 1) // block_cells + 1
    table = np.empty((n_bi, n_bj), np.uint8)
    for a in range(n_bi):
        for b in range(n_bj):
            table[a, b] = folds[(scene, a, b)]
    return table


def fold_map(grid: TileGrid, window: Window, table: np.ndarray, block_cells: int) -> np.ndarray:
    """H x W uint8 fold of the core owning each pixel of `window`; 255 outside the scene.

    `table` is the scene's `block_table`.
    """
    ci, cj = grid.cells_of(window)
    padded = np.full((table.shape[0] + 1, table.shape[1] + 1), 255, np.uint8)
    padded[:-1, :-1] = table  # index -1 (outside the scene) reads the 255 border
    bi = np.where(ci >= 0, ci // block_cells, -1)
    bj = np.where(cj >= 0, cj // block_cells, -1)
    return padded[bi[:, None], bj[None, :]]


def scene_blocks(scene: str, grid: TileGrid, block_cells: int) -> list[tuple[str, int, int]]:
    """Every fold block of a scene."""
    n_bi = (grid.rows - 1) // block_cells + 1
    n_bj = (grid.cols - 1) // block_cells + 1
    return [(scene, a, b) for a in range(n_bi) for b in range(n_bj)]
