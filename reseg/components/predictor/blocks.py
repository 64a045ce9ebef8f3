"""A scene predicted block by block, each block on its own, then assembled into one COG.

    plan_blocks(info, scene, cfg)              -> the scene's blocks of whole tiles
    predict_block(backend, scene, cfg, block, staging, labels, data)
                                               -> staging/<block>/: raw rasters, preview samples,
                                                  block.json (written last)
    assemble(info, scene, cfg, blocks, staging, out_dir, labelled)
                                               -> the scene's outputs, as `predict_scene` writes them

Blocks are rectangles of whole tiles (`sliding.TileBlock`); a block also predicts the
tile row above it and the tile column left of it, so its pixels are blended from the
same tiles in the same order as in the whole-scene pass and the assembled outputs
equal `predict_scene`'s bit for bit (see `sliding`). XLA and precision are decided
by the whole scene (`scene.prepare`), never by the block.

Staging: `<out>/.<scene>.blocks-<fingerprint>/` (the fingerprint: image, model files,
predict section), one folder per block. A block is trusted only with its
`block.json`, written after its rasters; a rerun skips the blocks that have one and
predicts the rest. `assemble` writes the outputs through `SceneOutputs` (staged,
then moved into place together) and removes the staging folder last. Every path
goes through `staging_dir` and the storage layer's paths: with the outputs in a bucket
the blocks are staged in the bucket too (workers on other machines share them), each
written in a local folder of the cache first and uploaded, `block.json` last.
"""

from __future__ import annotations

import io
import json
import logging
import os
import socket
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.errors import NotGeoreferencedWarning
from rasterio.windows import Window as RioWindow

from reseg import storage
from reseg.artifacts import ModelInfo, fingerprint, write_json
from reseg.components.predictor.labels import LabelReader, label_data_config
from reseg.components.predictor.outputs import SceneOutputs, encode, output_spec
from reseg.components.predictor.preview import PreviewCanvas
from reseg.components.predictor.reader import SceneImage
from reseg.components.predictor.refine import rgb_indexes
from reseg.components.predictor.scene import plan_scene, prepare, slide
from reseg.components.predictor.sliding import TileBlock, split_blocks
from reseg.config import DataConfig, PredictConfig, VectorLabels
from reseg.errors import ArtifactError
from reseg.inference import Backend
from reseg.inference.precision import pinned_section
from reseg.metrics import scores
from reseg.windows import Window

log = logging.getLogger(__name__)

BLOCK_JSON = "block.json"
COPY_ROWS, COPY_COLS = 512, 4096
"""Pixels copied at once from a block's rasters into the scene's (bounded memory)."""
EXECUTION_ONLY = {"progress", "beam", "prefetch", "chunk_mb", "gdal_cache_mb"}
"""Predict options that change how, not what, is computed."""


def plan_blocks(info: ModelInfo, scene: SceneImage, cfg: PredictConfig) -> list[TileBlock]:
    """The scene as one block, or, when its height or width exceeds `cfg.block_size`, blocks
    of floor(block_size / stride) tiles a side (row-major)."""
    plan = plan_scene(info, scene, cfg)
    if max(scene.height, scene.width) <= cfg.block_size:
        return [TileBlock.whole(plan)]
    return split_blocks(
        plan, cfg.block_size // plan.rows.stride, cfg.block_size // plan.cols.stride
    )


def file_stamp(p: str | Path) -> str:
    """A file's version and size (`storage.stat`: its modification time on a disk, its ETag or
    generation on object storage)."""
    size, version = storage.stat(p)
    return f"{version}:{size}"


def model_stamp(model: str | Path) -> list:
    """Each file of a model with its version and size: a retrained model at the same path
    changes it (so blocks staged by the old one are not reused)."""
    root = storage.path(model)
    if root.is_file():
        root = root.parent
    return [[n, file_stamp(storage.join(root, n))] for n in storage.files_under(root)]


def staging_dir(
    out_dir: str | Path, scene: SceneImage, model: str | Path, cfg: PredictConfig
) -> Path:
    """`<out>/.<scene>.blocks-<fingerprint>` (module docstring)."""
    fp = fingerprint(
        "blocks",
        scene.path,
        file_stamp(scene.path),
        model_stamp(model),
        pinned_section(
            cfg.model_dump(mode="json", exclude=EXECUTION_ONLY), guard_key="min_agreement"
        ),
    )
    return storage.path(out_dir) / f".{scene.id}.blocks-{fp[:12]}"


def remove_stale(out_dir: str | Path, scene_id: str, keep: Path) -> None:
    """Drop block staging folders of the scene other than `keep` (another model or config)."""
    out = storage.path(out_dir)
    found = [out / n for n in storage.listdir(out) if n.startswith(f".{scene_id}.blocks-")]
    for stale in found:
        if str(stale) != str(keep):
            log.info("%s: removing %s, staged with another model or config", scene_id, stale)
            storage.rmtree(stale)


def block_name(block: TileBlock) -> str:
    return f"r{block.i0}c{block.j0}"


class BlockOutputs:
    """One block's raw rasters (its window only) and its preview samples; `slide` writes here."""

    def __init__(
        self,
        scene: SceneImage,
        window: Window,
        directory: Path,
        info: ModelInfo,
        cfg: PredictConfig,
    ):
        self.window, self.dir, self.cfg = window, directory, cfg
        self.dir.mkdir(parents=True, exist_ok=True)
        self._raw = {}
        for key, (dtype, count, nodata) in output_spec(cfg, len(info.class_names)).items():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                self._raw[key] = rasterio.open(
                    directory / f"{key}.tif",
                    "w",
                    driver="GTiff",
                    width=window.width,
                    height=window.height,
                    count=count,
                    dtype=dtype,
                    nodata=nodata,
                    tiled=True,
                    blockxsize=256,
                    blockysize=256,
                    BIGTIFF="IF_SAFER",
                )
        self.preview = None
        if cfg.preview:
            idx = rgb_indexes(info, cfg.rgb_bands)
            self.preview = PreviewCanvas(scene.height, scene.width, cfg.preview_size, idx)

    def write(self, window: Window, probs: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """As `SceneOutputs.write`, at `window` (scene pixels) inside the block's window."""
        encoded = encode(probs, valid, self.cfg)
        local = window.relative_to(self.window)
        rio_win = RioWindow(local[1].start, local[0].start, window.width, window.height)
        for key, ds in self._raw.items():
            a = encoded[key]
            ds.write(a[None] if a.ndim == 2 else np.moveaxis(a, -1, 0), window=rio_win)
        if self.preview is not None:
            self.preview.add_classes(window, encoded["classes"])
        return encoded["classes"]

    def close(self) -> None:
        for ds in self._raw.values():
            ds.close()
        if self.preview is not None:
            rs, cs = self.preview.span(self.window)
            np.savez(
                self.dir / "preview.npz",
                rows=[rs.start, rs.stop],
                cols=[cs.start, cs.stop],
                image=self.preview.image[rs, cs],
                classes=self.preview.classes[rs, cs],
            )


def predict_block(
    backend: Backend,
    scene: SceneImage,
    cfg: PredictConfig,
    block: TileBlock,
    staging: str | Path,
    labels: str | Path | VectorLabels | None = None,
    data: DataConfig | None = None,
) -> dict[str, Any]:
    """Predict one block into `staging/<block>/` unless it is there already; returns its record
    (window, confusion matrix or None, timings)."""
    d = storage.path(staging) / block_name(block)
    if (d / BLOCK_JSON).exists():
        log.info("%s: block %s already predicted", scene.id, block_name(block))
        return json.loads((d / BLOCK_JSON).read_text())
    storage.rmtree(d)  # a killed run's partial block, if any
    t0 = time.perf_counter()
    plan = prepare(backend, scene, cfg)
    info = backend.info
    label_reader = None
    if labels is not None:
        spec, dcfg = label_data_config(scene.path, labels, info, scene.nodata, data)
        label_reader = LabelReader(spec, dcfg)
    window = block.window(plan)
    # GDAL writes local files; the rasters are in `d` before block.json, what a reader trusts
    with storage.written_locally(d, "block") as local:
        sink = BlockOutputs(scene, window, local, info, cfg)
        try:
            cm, timing = slide(backend, scene, plan, cfg, sink, label_reader, block)
        finally:
            sink.close()
            if label_reader is not None:
                label_reader.close()
        record = {
            "block": [block.i0, block.i1, block.j0, block.j1],
            "window": [window.row_off, window.col_off, window.height, window.width],
            "confusion": None if label_reader is None else cm.tolist(),
            "tiles": block.num_processed(),
            "worker": f"{socket.gethostname()}:{os.getpid()}",
            "wall_s": time.perf_counter() - t0,
            **timing,
        }
    write_json(d / BLOCK_JSON, record)
    return record


def _read_block(staging: Path, block: TileBlock) -> dict[str, Any]:
    p = storage.path(staging) / block_name(block) / BLOCK_JSON
    try:
        return json.loads(p.read_text())
    except FileNotFoundError:
        raise ArtifactError(f"{p}: block not predicted; rerun the prediction") from None


def assemble(
    info: ModelInfo,
    scene: SceneImage,
    cfg: PredictConfig,
    blocks: list[TileBlock],
    staging: str | Path,
    out_dir: str | Path,
    labelled: bool = False,
) -> tuple[dict[str, Path], dict | None, dict[str, float]]:
    """The scene's outputs from its predicted blocks: (paths, metrics or None, timings)."""
    staging = storage.path(staging)
    records = [_read_block(staging, b) for b in blocks]
    t0 = time.perf_counter()
    outputs = SceneOutputs(scene, out_dir, info, cfg)
    try:
        for b, r in zip(blocks, records, strict=True):
            _copy_block(outputs, staging / block_name(b), Window(*r["window"]))
        metrics = None
        if labelled:
            c = len(info.class_names)
            cm = np.zeros((c, c), np.int64)
            for r in records:
                cm += np.asarray(r["confusion"], np.int64)
            metrics = {"scene": scene.id, "image": scene.path, **scores(cm, list(info.class_names))}
        paths = outputs.finish(metrics)
    except BaseException:
        outputs.abort()
        raise
    storage.rmtree(staging)
    stats = {
        "blocks": len(blocks),
        "workers": sorted({r.get("worker", "?") for r in records}),
        "tiles": sum(r["tiles"] for r in records),
        "model_s": sum(r["model_s"] for r in records),
        "blocks_wall_s": sum(r["wall_s"] for r in records),
        "assemble_s": time.perf_counter() - t0,
    }
    return paths, metrics, stats


def _copy_block(outputs: SceneOutputs, d: Path, window: Window) -> None:
    """A block's rasters into the scene's, COPY_ROWS x COPY_COLS pixels at a time."""
    with warnings.catch_warnings():  # a block's rasters carry no georeferencing
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        sources = {k: rasterio.open(storage.gdal_path(d / f"{k}.tif")) for k in outputs.names}
    try:
        for r in range(0, window.height, COPY_ROWS):
            for c in range(0, window.width, COPY_COLS):
                h, w = min(COPY_ROWS, window.height - r), min(COPY_COLS, window.width - c)
                rio_win = RioWindow(c, r, w, h)
                arrays = {}
                for key, src in sources.items():
                    a = src.read(window=rio_win)
                    arrays[key] = (
                        a[0]
                        if a.shape[0] == 1 and key != "probabilities"
                        else np.moveaxis(a, 0, -1)
                    )
                outputs.write_encoded(Window(window.row_off + r, window.col_off + c, h, w), arrays)
    finally:
        for src in sources.values():
            src.close()
    if outputs.preview is not None:
        p = np.load(io.BytesIO((d / "preview.npz").read_bytes()))
        rs, cs = slice(*p["rows"]), slice(*p["cols"])
        outputs.preview.image[rs, cs] = p["image"]
        outputs.preview.classes[rs, cs] = p["classes"]


__all__ = [
    "BLOCK_JSON",
    "BlockOutputs",
    "assemble",
    "plan_blocks",
    "predict_block",
    "remove_stale",
    "staging_dir",
]
