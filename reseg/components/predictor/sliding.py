"""Sliding-window geometry and streaming blending of overlapping tile predictions.

Geometry, along one axis of L scene pixels, tile T, overlap O (even), stride S = T - O:
the scene is reflect-padded by P = O / 2 on both sides (so border pixels see
context, as interior pixels in an overlap do), and the padded axis of
L + 2P pixels is covered by

    n = max(1, ceil((L + 2P - O) / S))

tiles; tile i starts at scene position i * S - P. The tile is then shrunk to
the smallest multiple m of the output stride that still covers the axis with n
tiles, T' = m * ceil((ceil((L + 2P - O) / n) + O) / m), which keeps the
overhead of overlap near (T / S) instead of paying for a mostly padded last tile.

Blending: each tile's probabilities are weighted by w(r, c) = w_r(r) * w_c(c),
a tapered cosine (Tukey) window with Hann ramps as wide as the overlap:

    w(x) = sin^2( pi/2 * (x + 1/2) / O )           for 0 <= x < O
    w(x) = 1                                        for O <= x < T - O
    w(x) = sin^2( pi/2 * (T - x - 1/2) / O )        for T - O <= x < T

(w = 1 everywhere when O = 0). In an overlap the two ramps are sin^2 and cos^2
of the same angle, so the weights of neighbouring tiles sum to 1 there (and the
four weights in a corner, (sum_r)(sum_c), too). The blended probability is

    p(x) = sum_t w_t(x) p_t(x) / sum_t w_t(x)

`Blender` accumulates tiles in row-major order and hands back each block of the
scene as soon as no later tile touches it; it holds only one band of O rows
across the scene (the overlap with the next tile row) and one O-column band
of the current tile, so memory does not grow with the number of tile rows.
The band is updated in place: tile (i, j) reads band columns [x, x + T) (the
tile row above) and then writes [x, x + S) (its own bottom rows; to x + T for the
last column), and tile (i, j + 1) reads only from x + S + O on.

Blocks (`TileBlock`): a rectangle of whole tiles, rows [i0, i1) x columns [j0, j1).
Tile (i, j) emits the pixels [start(i), start(i) + S) x [start(j), start(j) + S)
(to the scene's end for the last tile), and only tiles (i-1..i, j-1..j) touch
them (O <= T / 2). A `Blender` given a block therefore also takes the tile row
i0 - 1 and column j0 - 1 (where they exist) and emits only the block's own tiles:
every pixel it emits is summed from the same tiles, with the same float32
operations in the same order, as in the whole-scene pass, so block by block the
result equals the whole-scene blend bit for bit. The price is one extra tile row
and column per block that does not touch the scene's top or left edge.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from reseg.windows import Window


@dataclass(frozen=True)
class AxisPlan:
    """Tiles along one axis: n tiles of `tile` pixels, stride tile - overlap, starting at -pad."""

    length: int
    tile: int
    overlap: int
    pad: int
    n: int

    @property
    def stride(self) -> int:
        return self.tile - self.overlap

    def start(self, i: int) -> int:
        """Scene position of the first pixel of tile i (negative in the border padding)."""
        return i * self.stride - self.pad


def plan_axis(
    length: int, tile: int, overlap: int, multiple: int = 1, shrink: bool = True
) -> AxisPlan:
    """Tiles along an axis of `length` pixels (module docstring: n and the shrunk T').

    With `shrink=False` every tile keeps the size `tile` (rounded up to `multiple`), and
    the last one runs further into the reflect-padded border.
    """
    if length <= 0:
        raise ValueError(f"Argument `length` must be positive. Received: length={length}")
    if overlap < 0 or overlap % 2 or 2 * overlap > tile:
        raise ValueError(
            f"Argument `overlap` must be even, >= 0 and at most tile / 2. Received: overlap={overlap}, tile={tile}"
        )
    tile = multiple * math.ceil(tile / multiple)
    pad = overlap // 2
    span = length + 2 * pad - overlap
    n = max(1, math.ceil(span / (tile - overlap)))
    shrunk = multiple * math.ceil((math.ceil(span / n) + overlap) / multiple)
    shrunk = max(shrunk, multiple * math.ceil(2 * overlap / multiple) if overlap else multiple)
    return AxisPlan(length, min(tile, shrunk) if shrink else tile, overlap, pad, n)


def taper(tile: int, overlap: int) -> np.ndarray:
    """The 1-D blending weight w(x) of the module docstring, float32 (tile,)."""
    w = np.ones(tile, np.float32)
    if overlap:
        x = np.arange(overlap, dtype=np.float64)
        ramp = np.sin(np.pi / 2 * (x + 0.5) / overlap) ** 2
        w[:overlap] = np.minimum(w[:overlap], ramp)
        w[tile - overlap :] = np.minimum(w[tile - overlap :], ramp[::-1])
    return w


@dataclass(frozen=True)
class SlidingPlan:
    """Tiles of an H x W scene for prediction."""

    rows: AxisPlan
    cols: AxisPlan
    nominal: int | None = None
    """The tile side asked for, before shrinking (None: not known)."""

    @classmethod
    def make(
        cls,
        height: int,
        width: int,
        tile: int,
        overlap: int,
        multiple: int = 1,
        shrink: bool = True,
    ) -> SlidingPlan:
        return cls(
            plan_axis(height, tile, overlap, multiple, shrink),
            plan_axis(width, tile, overlap, multiple, shrink),
        )

    @property
    def tile_shape(self) -> tuple[int, int]:
        return self.rows.tile, self.cols.tile

    @property
    def num_tiles(self) -> int:
        return self.rows.n * self.cols.n

    def window(self, i: int, j: int) -> Window:
        """Scene window of tile (i, j); it may run past the scene (read reflect-padded)."""
        return Window(self.rows.start(i), self.cols.start(j), self.rows.tile, self.cols.tile)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for i in range(self.rows.n):
            for j in range(self.cols.n):
                yield i, j

    def weight(self) -> np.ndarray:
        """2-D blending weight w_r(r) * w_c(c), float32 (T_r, T_c)."""
        return np.outer(
            taper(self.rows.tile, self.rows.overlap), taper(self.cols.tile, self.cols.overlap)
        )

    def pixels(self) -> int:
        """Pixels the model processes for one pass over the scene."""
        return self.num_tiles * self.rows.tile * self.cols.tile


@dataclass(frozen=True)
class TileBlock:
    """Tiles rows [i0, i1) x columns [j0, j1) of a plan, predicted and emitted together."""

    i0: int
    i1: int
    j0: int
    j1: int

    @classmethod
    def whole(cls, plan: SlidingPlan) -> TileBlock:
        return cls(0, plan.rows.n, 0, plan.cols.n)

    @property
    def first_row(self) -> int:
        """First tile row processed: the block's, and the row above it (module docstring)."""
        return max(0, self.i0 - 1)

    @property
    def first_col(self) -> int:
        return max(0, self.j0 - 1)

    def tiles(self) -> Iterator[tuple[int, int]]:
        """The tiles processed, row-major: the block's and the extra row and column."""
        for i in range(self.first_row, self.i1):
            for j in range(self.first_col, self.j1):
                yield i, j

    def num_processed(self) -> int:
        return (self.i1 - self.first_row) * (self.j1 - self.first_col)

    def window(self, plan: SlidingPlan) -> Window:
        """The scene pixels the block emits (its tiles' own pixels, inside the scene)."""
        r, c = plan.rows, plan.cols

        def span(ax: AxisPlan, a: int, b: int) -> tuple[int, int]:
            lo = max(0, ax.start(a))
            hi = ax.length if b == ax.n else ax.start(b)
            return lo, hi

        y0, y1 = span(r, self.i0, self.i1)
        x0, x1 = span(c, self.j0, self.j1)
        return Window(y0, x0, y1 - y0, x1 - x0)


def split_blocks(plan: SlidingPlan, rows: int, cols: int | None = None) -> list[TileBlock]:
    """Blocks of at most `rows` x `cols` (default `rows`) tiles covering the plan, row-major."""
    kr = max(1, rows)
    kc = max(1, rows if cols is None else cols)
    return [
        TileBlock(i, min(i + kr, plan.rows.n), j, min(j + kc, plan.cols.n))
        for i in range(0, plan.rows.n, kr)
        for j in range(0, plan.cols.n, kc)
    ]


@dataclass
class Block:
    """A finished part of the scene: `window` in scene pixels, `local` its slices in tile (i, j)."""

    window: Window
    local: tuple[slice, slice]
    probs: np.ndarray  # (h, w, C) float32, blended and normalised


class Blender:
    """Streams tiles in row-major order into finished, blended scene blocks (module docstring).

    With `block`, it takes the tiles of `block.tiles()` and emits the block's pixels only.
    """

    def __init__(self, plan: SlidingPlan, num_classes: int, block: TileBlock | None = None):
        self.plan = plan
        self.c = num_classes
        self.block = block or TileBlock.whole(plan)
        self.w2 = plan.weight()
        r, c = plan.rows, plan.cols
        b = self.block
        # padded coordinates: column x is scene x - c.pad - c.start(first_col) + c.start(0)
        width = (b.j1 - b.first_col) * c.stride + c.overlap
        self._band = np.zeros((r.overlap, width, num_classes + 1), np.float32)
        self._right = np.zeros((r.tile, c.overlap, num_classes + 1), np.float32)
        self._next = (b.first_row, b.first_col)

    def add(self, i: int, j: int, probs: np.ndarray) -> list[Block]:
        """Add tile (i, j)'s probabilities (T_r, T_c, C); return the blocks it finishes."""
        if (i, j) != self._next:
            raise ValueError(
                f"tiles must come in row-major order: expected {self._next}, received {(i, j)}"
            )
        rp, cp = self.plan.rows, self.plan.cols
        b = self.block
        tr, tc, o_r, o_c = rp.tile, cp.tile, rp.overlap, cp.overlap
        if probs.shape != (tr, tc, self.c):
            raise ValueError(
                f"Argument `probs` must be {(tr, tc, self.c)}. Received: shape={probs.shape}"
            )
        acc = np.empty((tr, tc, self.c + 1), np.float32)
        np.multiply(probs, self.w2[..., None], out=acc[..., : self.c])
        acc[..., self.c] = self.w2
        x0 = (j - b.first_col) * cp.stride
        first_col = j == b.first_col
        if not first_col and o_c:
            acc[:, :o_c] += self._right
        if i > b.first_row and o_r:
            skip = o_c if not first_col else 0  # that part of the top band came with the right band
            acc[:o_r, skip:] += self._band[:, x0 + skip : x0 + tc]
        last_col = j == b.j1 - 1
        if o_c:
            self._right = acc[:, tc - o_c :].copy()
        if o_r:
            end = tc if last_col else cp.stride
            self._band[:, x0 : x0 + end] = acc[tr - o_r :, :end]
        self._next = (i, j + 1) if not last_col else (i + 1, b.first_col)
        if i < b.i0 or j < b.j0:
            return []  # the extra row or column: its own pixels belong to another block
        h = tr if i == rp.n - 1 else rp.stride
        w = tc if j == cp.n - 1 else cp.stride
        return self._emit(i, j, acc, h, w)

    def _emit(self, i: int, j: int, acc: np.ndarray, h: int, w: int) -> list[Block]:
        rp, cp = self.plan.rows, self.plan.cols
        full = Window(rp.start(i), cp.start(j), h, w)
        inside = full.intersection(Window(0, 0, rp.length, cp.length))
        if inside is None:
            return []
        local = inside.relative_to(Window(rp.start(i), cp.start(j), rp.tile, cp.tile))
        part = acc[local]
        probs = part[..., : self.c] / part[..., self.c :]
        return [Block(inside, local, probs)]
