"""Synthetic scores directories for the evaluator and merger tests, and a hand count.

`synthetic_tiles` cuts a seeded scene (tests/components/trainer/tiles.py) on the
tiling grid; `with_random_probs` gives every tile its own random probabilities,
already float16 so what is stored is exactly what the test holds, and different in
the overlap margins of neighbouring tiles; `write_scores` writes them with the
schema's shard writer and a manifest (`Scores.load` reads it). `hand_confusion`
counts scene pixel by scene pixel, looking up the tile whose core owns the pixel,
so it shares no code with the core slices of the components under test.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from reseg import artifacts
from reseg.tfrecords_schema import TFRecordShardWriter, Tile, encode
from tests.components.trainer.tiles import Scene, make_scene, scene_tiles

C = 3
SIZE = (40, 44)  # 3 x 4 tiles of 16 px, overlap 4: the right column runs past the scene
TILE, OVERLAP, FOLDS = 16, 4, 3


def synthetic_tiles(seed: int = 0, bands: int = 2) -> tuple[Scene, list[Tile]]:
    """A scene with a nodata corner and scattered ignore labels, and its tiles."""
    scene = make_scene(*SIZE, bands, C, "uint16", seed)
    rng = np.random.default_rng(seed + 100)
    label = scene.label.copy()
    label[rng.random(label.shape) < 0.05] = 255
    scene = Scene(scene.image, label, scene.valid)
    tiles = scene_tiles(scene, "synth", TILE, OVERLAP, FOLDS, seed=seed)
    assert {t.fold for t in tiles} == set(range(FOLDS))
    return scene, tiles


def random_probs(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """(H, W, C) float16 probabilities (rows sum to ~1) drawn from a peaked Dirichlet-like law."""
    p = rng.gamma(0.5, size=(*shape, C)) + 1e-3
    return (p / p.sum(-1, keepdims=True)).astype(np.float16)


def with_random_probs(tiles: Sequence[Tile], seed: int, score_round: int = 0) -> list[Tile]:
    rng = np.random.default_rng(seed)
    return [t.with_scores(random_probs(t.label.shape, rng), score_round) for t in tiles]


def write_scores(
    tiles: Sequence[Tile],
    directory: Path,
    fp: str,
    shards: int = 2,
    shuffle_seed: int | None = None,
) -> artifacts.Scores:
    """Shards `part-*.tfrecord.gz` (tiles dealt round-robin, optionally shuffled) + manifest."""
    order = list(range(len(tiles)))
    if shuffle_seed is not None:
        np.random.default_rng(shuffle_seed).shuffle(order)
    directory.mkdir(parents=True, exist_ok=True)
    paths = [directory / f"part-{i:05d}.tfrecord.gz" for i in range(shards)]
    writers = [TFRecordShardWriter(p) for p in paths]
    for n, i in enumerate(order):
        writers[n % shards].write(encode(tiles[i]))
    for w in writers:
        w.close()
    artifacts.write_json(
        directory / artifacts.MANIFEST, {"fingerprint": fp, "files": [p.name for p in paths]}
    )
    return artifacts.Scores.load(directory)


def owners(tiles: Sequence[Tile]) -> np.ndarray:
    """(H, W) index of the tile whose core holds each scene pixel (cores partition the scene)."""
    owner = np.full(SIZE, -1, np.int64)
    for i, t in enumerate(tiles):
        r, c, h, w = t.core
        assert (owner[r : r + h, c : c + w] == -1).all()
        owner[r : r + h, c : c + w] = i
    assert (owner >= 0).all()
    return owner


def hand_confusion(
    scene: Scene,
    tiles: Sequence[Tile],
    fold: int | None,
    predicted: Callable[[Tile], np.ndarray],
) -> np.ndarray:
    """C x C counts of (scene label, predicted class) over labelled pixels of `fold`'s cores.

    `predicted(tile)` is the tile's (H, W) class map; each scene pixel is counted once,
    from the tile whose core owns it; label 255 is skipped.
    """
    owner = owners(tiles)
    maps = [predicted(t) for t in tiles]
    cm = np.zeros((C, C), np.int64)
    for r in range(SIZE[0]):
        for c in range(SIZE[1]):
            t = tiles[owner[r, c]]
            lab = int(scene.label[r, c])
            if lab == 255 or (fold is not None and t.fold != fold):
                continue
            cm[lab, maps[owner[r, c]][r - t.row, c - t.col]] += 1
    return cm
