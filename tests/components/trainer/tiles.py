"""A tiny tiled pipeline root for trainer tests, written with the schema's own writer.

`write_root` lays a seeded synthetic scene (classes in blobs, bands whose means
depend on the class, a nodata corner) on the tile grid of `reseg.windows`, gives
each block of cores a fold, and writes what `reseg tile` and `reseg stats`
publish: `tiles/part-*.tfrecord.gz` + `manifest.json` (read by `TileSet.load`)
and `stats/stats.json` + `manifest.json` (read by `Stats.load`). Tests that only
need *some* real tiles can switch to the shared `demo_root` fixture of
`tests/conftest.py` (the Landsat demo, tiled by the real Beam job).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reseg import artifacts, layout
from reseg.config import Config, parse_config
from reseg.tfrecords_schema import TFRecordShardWriter, Tile, encode
from reseg.windows import TileGrid, Window, assign_folds, scene_blocks

NODATA = 0


@dataclass(frozen=True)
class Scene:
    image: np.ndarray  # (H, W, B)
    label: np.ndarray  # (H, W) uint8, 255 = ignore
    valid: np.ndarray  # (H, W) uint8


def make_scene(
    height: int, width: int, bands: int, num_classes: int, dtype: str, seed: int
) -> Scene:
    """Blobs of classes; band b of class c has mean 1000 + 400 * ((c + b) % C) plus noise."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, num_classes, size=(height // 8 + 1, width // 8 + 1))
    label = np.kron(coarse, np.ones((8, 8), np.int64))[:height, :width].astype(np.uint8)
    means = 1000 + 400 * (
        (np.arange(num_classes)[:, None] + np.arange(bands)[None, :]) % num_classes
    )
    image = means[label] + rng.normal(0, 60, size=(height, width, bands))
    valid = np.ones((height, width), np.uint8)
    valid[: height // 6, : width // 6] = 0  # a nodata corner
    image[valid == 0] = NODATA
    label[valid == 0] = 255
    return Scene(image.astype(dtype), label, valid)


def _crop(arr: np.ndarray, window: Window, fill) -> np.ndarray:
    h, w = arr.shape[:2]
    out = np.full((window.height, window.width, *arr.shape[2:]), fill, arr.dtype)
    inner = window.intersection(Window(0, 0, h, w))
    if inner is not None:
        out[inner.relative_to(window)] = arr[
            inner.row_off : inner.row_end, inner.col_off : inner.col_end
        ]
    return out


def _fold_map(
    grid: TileGrid, window: Window, scene: str, folds: dict, block_cells: int
) -> np.ndarray:
    ci, cj = grid.cells_of(window)
    out = np.full((window.height, window.width), 255, np.uint8)
    for a, i in enumerate(ci):
        for b, j in enumerate(cj):
            if i >= 0 and j >= 0:
                out[a, b] = folds[(scene, int(i) // block_cells, int(j) // block_cells)]
    return out


def scene_tiles(
    scene: Scene,
    name: str,
    tile: int,
    overlap: int,
    folds: int,
    block_cells: int = 1,
    seed: int = 0,
) -> list[Tile]:
    """Every tile of the scene with core, fold and fold map, as the tiling step makes them."""
    h, w = scene.label.shape
    grid = TileGrid(h, w, tile, overlap)
    assignment = assign_folds(scene_blocks(name, grid, block_cells), folds, seed)
    tiles = []
    for spec in grid:
        win, core = spec.window, spec.core
        block = (name, spec.cell[0] // block_cells, spec.cell[1] // block_cells)
        tiles.append(
            Tile(
                image=_crop(scene.image, win, 0),
                label=_crop(scene.label, win, 255),
                valid=_crop(scene.valid, win, 0),
                fold_map=_fold_map(grid, win, name, assignment, block_cells),
                scene=name,
                row=win.row_off,
                col=win.col_off,
                core=(core.row_off, core.col_off, core.height, core.width),
                fold=assignment[block],
            )
        )
    return tiles


def write_tiles(tiles: list[Tile], directory: Path, shards: int = 3) -> list[Path]:
    """gzip TFRecord shards `part-*.tfrecord.gz`, tiles dealt round-robin."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = [directory / f"part-{i:05d}.tfrecord.gz" for i in range(min(shards, len(tiles)))]
    writers = [TFRecordShardWriter(p) for p in paths]
    for i, t in enumerate(tiles):
        writers[i % len(writers)].write(encode(t))
    for wr in writers:
        wr.close()
    return paths


def config_dict(
    root: Path,
    *,
    num_classes: int = 3,
    tile: int = 32,
    overlap: int = 8,
    folds: int = 3,
    **sections,
) -> dict:
    """A config for the synthetic scene; `train=`, `model=`, `tracking=` update those sections."""
    raw: dict = {
        "name": "trainer-test",
        "data": {
            "scenes": [
                {
                    "id": "synth",
                    "image": str(root / "synth.tif"),
                    "labels": str(root / "synth_labels.tif"),
                }
            ],
            "classes": [
                {"name": f"c{i}", "color": f"#{40 * i:02x}8000"} for i in range(num_classes)
            ],
        },
        "tiling": {"tile_size": tile, "overlap": overlap, "folds": folds},
        "train": {"batch_size": 4, "epochs": 1, "progress": "log", "augment": {"enabled": False}},
    }
    for key, value in sections.items():
        raw[key] = {**raw.get(key, {}), **value}
    return raw


def config(root: Path, **kwargs) -> Config:
    return parse_config(config_dict(root, **kwargs))


def write_root(
    root: Path,
    *,
    size: tuple[int, int] = (72, 72),
    tile: int = 32,
    overlap: int = 8,
    folds: int = 3,
    bands: int = 3,
    num_classes: int = 3,
    dtype: str = "uint16",
    seed: int = 0,
    scene: Scene | None = None,
) -> tuple[Scene, list[Tile]]:
    """Write `<root>/tiles` and `<root>/stats` for a synthetic scene; returns it and its tiles.

    `scene`: the scene to tile instead of `make_scene`'s (e.g. one with some labels changed);
    `size`, `bands` and `dtype` must describe it.
    """
    scene = scene if scene is not None else make_scene(*size, bands, num_classes, dtype, seed)
    tiles = scene_tiles(scene, "synth", tile, overlap, folds, seed=seed)
    tdir = layout.tiles_dir(root)
    files = write_tiles(tiles, tdir)
    fp = artifacts.fingerprint(
        "synthetic tiles",
        size,
        tile,
        overlap,
        folds,
        bands,
        num_classes,
        dtype,
        seed,
        hashlib.sha256(scene.label.tobytes() + scene.image.tobytes()).hexdigest(),
    )
    artifacts.write_json(
        tdir / artifacts.MANIFEST,
        {
            "fingerprint": fp,
            "files": [f.name for f in files],
            "image_dtype": dtype,
            "bands": bands,
            "num_classes": num_classes,
            "class_names": [f"c{i}" for i in range(num_classes)],
            "class_colors": [f"#{40 * i:02x}8000" for i in range(num_classes)],
            "folds": folds,
            "tile_size": tile,
            "overlap": overlap,
            "counts": {"tiles": len(tiles)},
        },
    )
    sdir = layout.stats_dir(root)
    sdir.mkdir(parents=True, exist_ok=True)
    px = scene.image[scene.valid > 0].astype(np.float64)
    labels = scene.label[scene.label != 255]
    per_fold = [[0] * num_classes for _ in range(folds)]
    for t in tiles:
        sl = t.core_slice()
        core_labels = t.label[sl]
        for c in range(num_classes):
            per_fold[t.fold][c] += int((core_labels == c).sum())
    stats = {
        "bands": [
            {
                "mean": float(px[:, b].mean()),
                "std": float(px[:, b].std()),
                "min": float(px[:, b].min()),
                "max": float(px[:, b].max()),
                "p2": float(np.percentile(px[:, b], 2)),
                "p98": float(np.percentile(px[:, b], 98)),
            }
            for b in range(bands)
        ],
        "class_pixels": [int((labels == c).sum()) for c in range(num_classes)],
        "class_pixels_per_fold": per_fold,
        "valid_pixels": int((scene.valid > 0).sum()),
    }
    (sdir / "stats.json").write_text(json.dumps(stats))
    artifacts.write_json(
        sdir / artifacts.MANIFEST, {"fingerprint": artifacts.fingerprint("stats", fp)}
    )
    return scene, tiles


def tiny_model_dir(directory: Path, bands: int = 3, num_classes: int = 3, seed: int = 0) -> Path:
    """A two-layer fully convolutional Keras model saved as `model.keras` (an initial model)."""
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((None, None, bands), name="image")
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv")(inputs)
    x = keras.layers.Conv2D(num_classes, 1, name="classifier")(x)
    outputs = keras.layers.Softmax(name="softmax")(x)
    directory.mkdir(parents=True, exist_ok=True)
    keras.Model(inputs, outputs, name="tiny").save(directory / "model.keras")
    return directory


def checkpoint_epoch(model_dir: Path) -> int:
    """Epoch of the newest complete checkpoint in the staging directory (0 if none)."""
    for state in model_dir.parent.glob(f"{model_dir.name}.tmp-*/checkpoints/checkpoint"):
        m = re.search(r'model_checkpoint_path: "ckpt-(\d+)"', state.read_text())
        if m:
            return int(m.group(1))
    return 0
