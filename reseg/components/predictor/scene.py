"""Whole-scene prediction: a reader thread, the model, and a writer thread, joined by queues.

    reader thread         main thread                     writer thread
    read a chunk of  ->   TTA(backend)(tiles, valid)  ->  refine each tile, blend (sliding.Blender),
    tiles (reflect-       (the model is busy here)        write finished blocks (class, confidence,
    padded), batch                                        probabilities), whole-scene confusion

The queues hold at most `prefetch` batches each, so the image strip being read,
the batches in flight and the blending band are all the memory there is: it
does not grow with the scene's height, and grows with its width only through
the O-row blending band. Disk reads and writes overlap with inference.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

import numpy as np
import rasterio

from reseg import quiet, storage
from reseg.artifacts import ModelInfo
from reseg.components.predictor.labels import LabelReader, label_data_config
from reseg.components.predictor.outputs import SceneOutputs
from reseg.components.predictor.preview import PreviewCanvas
from reseg.components.predictor.reader import ImageReader, SceneImage, open_scene
from reseg.components.predictor.refine import Refiner, ground_pixel_size
from reseg.components.predictor.sliding import Blender, SlidingPlan, TileBlock
from reseg.config import DataConfig, PredictConfig, VectorLabels
from reseg.errors import ConfigError
from reseg.inference import Backend, predict_tta
from reseg.inference.guard import SAMPLE_TILES, guarded
from reseg.metrics import confusion, scores
from reseg.serving import load_backend
from reseg.windows import Window

log = logging.getLogger(__name__)

GLOBAL_CONTEXT = ("psp", "deeplab", "segformer")
"""Architectures whose output depends on the tile size through global pooling (or, in
SegFormer, attention over the whole tile)."""
_END = object()


@dataclass
class ScenePrediction:
    """What `predict_scene` wrote and measured."""

    scene: str
    outputs: dict[str, Path]
    metrics: dict[str, Any] | None
    stats: dict[str, float] = field(default_factory=dict)


@dataclass
class _Batch:
    keys: list[tuple[int, int]]
    tiles: np.ndarray | None  # (B, T_r, T_c, bands) scene dtype; None once the model has them
    valid: np.ndarray  # (B, T_r, T_c) uint8


def resolve_geometry(cfg: PredictConfig, info: ModelInfo) -> tuple[int, int]:
    """Prediction tile side and overlap, both multiples of the model's output stride.

    Tile: the config's, else by architecture (see `PredictConfig.tile_size`). The overlap
    is rounded up to a multiple of the output stride (and of 2) so that every tile starts
    on the same pooling grid as a whole-image prediction would: tiles then differ from it
    only through their edges, which the blending weight discounts.
    """
    if cfg.tile_size is not None:
        tile = cfg.tile_size
    elif any(g in info.architecture.lower() for g in GLOBAL_CONTEXT):
        tile = info.tile_size
    else:
        tile = max(1024, info.tile_size)
    s = info.output_stride
    tile = s * math.ceil(tile / s)
    step = math.lcm(2, s)
    overlap = step * math.ceil(cfg.overlap / step)
    if overlap != cfg.overlap:
        log.info(
            "overlap %d rounded up to %d, a multiple of the output stride %d",
            cfg.overlap,
            overlap,
            s,
        )
    if 2 * overlap > tile:
        raise ConfigError(
            f"predict.overlap={cfg.overlap} (as a multiple of the output stride: {overlap}) must be at "
            f"most half the tile size {tile}"
        )
    return tile, overlap


def _chunks(
    plan: SlidingPlan, bands: int, itemsize: int, chunk_mb: int, cols: tuple[int, int]
) -> list[tuple[int, int]]:
    """Column ranges [j0, j1) of tiles within `cols` read at once, at most `chunk_mb` of pixels each."""
    c = plan.cols
    first, end = cols
    per_tile = plan.rows.tile * c.stride * bands * itemsize
    k = max(1, min(end - first, (chunk_mb << 20) // max(per_tile, 1)))
    return [(j0, min(end, j0 + k)) for j0 in range(first, end, k)]


class _Pipe:
    """Bounded queue whose put/get give up when another stage has failed."""

    def __init__(self, size: int, failed: threading.Event):
        self.q: queue.Queue = queue.Queue(maxsize=size)
        self.failed = failed
        self.put_wait_s = 0.0
        self.get_wait_s = 0.0

    def put(self, item: Any) -> None:
        t0 = time.perf_counter()
        while not self.failed.is_set():
            try:
                self.q.put(item, timeout=0.1)
                break
            except queue.Full:
                continue
        self.put_wait_s += time.perf_counter() - t0

    def get(self) -> Any:
        t0 = time.perf_counter()
        try:
            while not self.failed.is_set():
                try:
                    return self.q.get(timeout=0.1)
                except queue.Empty:
                    continue
            return _END
        finally:
            self.get_wait_s += time.perf_counter() - t0


def _batches(
    plan: SlidingPlan,
    scene: SceneImage,
    cfg: PredictConfig,
    block: TileBlock,
    preview: PreviewCanvas | None = None,
) -> Iterator[_Batch]:
    """The tiles of `block.tiles()` in row-major order, read chunk by chunk, grouped into
    batches; `preview` gets its image samples from the chunks as they are read."""
    itemsize = np.dtype(scene.dtype).itemsize
    batch = batch_tiles(plan, cfg)
    chunks = _chunks(plan, len(scene.bands), itemsize, cfg.chunk_mb, (block.first_col, block.j1))
    tr, tc, sc = plan.rows.tile, plan.cols.tile, plan.cols.stride
    keys: list[tuple[int, int]] = []
    tiles: list[np.ndarray] = []
    valid: list[np.ndarray] = []
    with ImageReader(scene) as rd:
        for i in range(block.first_row, block.i1):
            for j0, j1 in chunks:
                w0 = plan.window(i, j0)
                win = Window(w0.row_off, w0.col_off, tr, (j1 - j0 - 1) * sc + tc)
                img, ok = rd.read(win)
                if preview is not None:
                    inside = win.intersection(Window(0, 0, scene.height, scene.width))
                    preview.add_image(inside, img[inside.relative_to(win)])
                for j in range(j0, j1):
                    off = (j - j0) * sc
                    keys.append((i, j))
                    tiles.append(img[:, off : off + tc])
                    valid.append(ok[:, off : off + tc])
                    if len(keys) == batch:
                        yield _Batch(keys, np.stack(tiles), np.stack(valid))
                        keys, tiles, valid = [], [], []
    if keys:
        yield _Batch(keys, np.stack(tiles), np.stack(valid))


def fixed_mmap_threshold(nbytes: int = 1 << 20) -> None:
    """Serve allocations of `nbytes` or more by mmap, returned to the system on free (glibc only).

    glibc raises its mmap threshold each time a large block is freed, after which
    blocks of tile size come from per-thread heaps that fragment and are not given
    back: the reader, model and writer threads then hold hundreds of MB more than
    they use, varying from run to run. A fixed threshold keeps the resident set at
    what the strip and the batches in flight need. No effect outside glibc.
    """
    import ctypes
    import ctypes.util

    global _MALLOC_SET
    if _MALLOC_SET:
        return
    _MALLOC_SET = True
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(-3, int(nbytes))  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        log.debug("mallopt not available; allocator left as it is")


_MALLOC_SET = False


class BlockSink(Protocol):
    """Where `slide` writes finished blocks (`SceneOutputs`, or one block's files)."""

    preview: PreviewCanvas | None

    def write(self, window: Window, probs: np.ndarray, valid: np.ndarray) -> np.ndarray: ...


def _run_thread(
    target: Callable[[], None], failed: threading.Event, errors: list
) -> threading.Thread:
    def body():
        try:
            target()
        except BaseException as e:  # handed to the main thread, which re-raises it
            errors.append(e)
            failed.set()

    t = threading.Thread(target=body, daemon=True)
    t.start()
    return t


def predict_scene(
    model: Backend | str | Path,
    image: str | Path,
    out_dir: str | Path,
    cfg: PredictConfig | None = None,
    labels: str | Path | VectorLabels | None = None,
    data: DataConfig | None = None,
    scene_id: str | None = None,
) -> ScenePrediction:
    """Predict a whole scene window by window and write its outputs (see outputs.py).

    Args:
        model: a backend, or a model path for `load_backend`.
        image: the scene's image raster; its bands and dtype must match the model's.
        out_dir: folder of the outputs (`<scene>.tif`, `.confidence.tif`, ...).
        cfg: the predict section; default `PredictConfig()`.
        labels: the scene's reference labels (raster, vector path or `VectorLabels`);
            when given, whole-scene metrics are computed and written to `<scene>.metrics.json`.
        data: a config's data section for reading `labels` (classes, label values, vectors).
        scene_id: names the outputs (`<scene_id>.tif`, ...); default the image's file name
            stem. Give distinct ids to scenes whose images share a file name.

    Returns:
        The output paths, the metrics (or None) and timings: `wall_s`, `cpu_s` (CPU time of
        the process, all threads), `model_s` (time in the model), `model_busy` (model_s /
        sliding-window wall time), `read_wait_s`, `write_wait_s`, `finish_s`; and
        `precision`, the arithmetic the model ran in (`auto` resolved and guarded).
    """
    cfg = cfg or PredictConfig()
    fixed_mmap_threshold()
    backend = model if isinstance(model, Backend) else load_backend(model)
    info = backend.info
    t_start, cpu_start = time.perf_counter(), time.process_time()
    scene = open_scene(image, info, cfg.nodata, scene_id)
    plan = prepare(backend, scene, cfg)
    label_reader = None
    if labels is not None:
        label_reader = LabelReader(*label_data_config(image, labels, info, scene.nodata, data))
    outputs = SceneOutputs(scene, out_dir, info, cfg)
    try:
        cm, timing = slide(backend, scene, plan, cfg, outputs, label_reader)
        metrics = None
        if label_reader is not None:
            metrics = {"scene": scene.id, "image": scene.path, **scores(cm, list(info.class_names))}
        t_fin = time.perf_counter()
        paths = outputs.finish(metrics)
    except BaseException:
        outputs.abort()
        raise
    finally:
        if label_reader is not None:
            label_reader.close()
    timing.update(
        wall_s=time.perf_counter() - t_start,
        cpu_s=time.process_time() - cpu_start,
        finish_s=time.perf_counter() - t_fin,
        **_plan_facts(backend, plan, cfg),
    )
    _log_done(scene.id, timing, paths)
    return ScenePrediction(scene.id, paths, metrics, timing)


def _log_done(scene_id: str, timing: dict[str, Any], paths: dict[str, Path]) -> None:
    """The scene's closing line: its wall time, how busy the model was, the files written."""
    log.info(
        "%s: done in %.1f s (model busy %.0f%% of the sliding window); wrote %s",
        scene_id,
        timing["wall_s"],
        100 * timing["model_busy"],
        ", ".join(p.name for p in paths.values()),
    )


def _plan_facts(backend: Backend, plan: SlidingPlan, cfg: PredictConfig) -> dict[str, Any]:
    """What a scene's timings record of its plan: tiles, their size, the pixels the model
    saw (TTA counted) and the precision it ran in."""
    return dict(
        tiles=plan.num_tiles,
        tile_rows=plan.rows.tile,
        tile_cols=plan.cols.tile,
        pixels_processed=plan.pixels() * len(cfg.transforms),
        precision=getattr(backend, "precision", getattr(backend, "exported_precision", None)),
    )


def plan_scene(info: ModelInfo, scene: SceneImage, cfg: PredictConfig) -> SlidingPlan:
    """The scene's tiles (`resolve_geometry`, then `SlidingPlan.make`)."""
    tile, overlap = resolve_geometry(cfg, info)
    plan = SlidingPlan.make(
        scene.height, scene.width, tile, overlap, info.output_stride, cfg.shrink_tiles
    )
    return dataclasses.replace(plan, nominal=tile)


def batch_tiles(plan: SlidingPlan, cfg: PredictConfig) -> int:
    """Tiles per model call: `cfg.batch_size` tiles of the configured size (`plan.nominal`),
    counted in pixels, so that shrunk tiles fill the same batch:

        B = max(batch_size, floor(batch_size * T^2 / (T_r * T_c)))

    The pixels in flight (queues, model, blending) then depend on the config, not on the
    scene's size.
    """
    t = plan.nominal or plan.rows.tile
    return max(cfg.batch_size, (cfg.batch_size * t * t) // (plan.rows.tile * plan.cols.tile))


def prepare(backend: Backend, scene: SceneImage, cfg: PredictConfig) -> SlidingPlan:
    """The scene's tile plan; sets the backend's precision and XLA for it (both decided by
    the whole scene, so that a scene predicted block by block runs the very same model)."""
    info = backend.info
    plan = plan_scene(info, scene, cfg)
    overlap = plan.rows.overlap
    n_batches = math.ceil(plan.num_tiles / batch_tiles(plan, cfg))
    if hasattr(backend, "precision"):  # before XLA: bfloat16 on a CPU runs without it
        backend.precision = choose_precision(backend, scene, plan, cfg)
    elif cfg.precision not in ("float32", "auto"):
        log.warning(
            "predict.precision %s does not apply to %s, which runs in its own precision (%s)",
            cfg.precision,
            getattr(backend, "path", type(backend).__name__),
            getattr(backend, "exported_precision", "unknown"),
        )
    if hasattr(backend, "jit_compile"):
        backend.jit_compile = bool(cfg.jit_compile)
    log.info(
        "%s: %dx%d px, %d tiles of %dx%d (overlap %d), %d batches, tta %s, refine %s, %s",
        scene.id,
        scene.height,
        scene.width,
        plan.num_tiles,
        *plan.tile_shape,
        overlap,
        n_batches,
        "+".join(cfg.transforms),
        cfg.refine,
        getattr(backend, "precision", getattr(backend, "exported_precision", "float32")),
    )
    return plan


def guard_sample(scene: SceneImage, plan: SlidingPlan) -> tuple[np.ndarray, np.ndarray]:
    """`reseg.inference.guard.SAMPLE_TILES` tiles of the plan, evenly spaced in row-major
    order (tile k * n / s for k < s), as (tiles_raw, valid); the same for every block."""
    keys = list(plan)
    n = min(SAMPLE_TILES, len(keys))
    picked = [keys[k * len(keys) // n] for k in range(n)]
    tiles, valid = [], []
    with ImageReader(scene) as rd:
        for i, j in picked:
            img, ok = rd.read(plan.window(i, j))
            tiles.append(img)
            valid.append(ok)
    return np.stack(tiles), np.stack(valid)


def choose_precision(backend: Any, scene: SceneImage, plan: SlidingPlan, cfg: PredictConfig) -> str:
    """`cfg.precision` resolved for `backend`, guarded where `auto` gives bfloat16
    (`reseg.inference.guard`: a sample of the scene's tiles, once per model and scene)."""
    key = ("predict", str(getattr(backend, "path", id(backend))), scene.path, cfg.min_agreement)
    used, _ = guarded(
        backend, cfg.precision, lambda: guard_sample(scene, plan), cfg.min_agreement, key
    )
    return used


@dataclass
class _Sliding:
    """What the three stages of one `slide` share: the tiles to read, where they go, the
    queues between the stages, the failure flag, and the confusion the writer counts into."""

    scene: SceneImage
    plan: SlidingPlan
    cfg: PredictConfig
    block: TileBlock
    outputs: BlockSink
    label_reader: LabelReader | None
    refiner: Refiner
    c: int  # classes
    env: dict[str, int]  # GDAL options of the reader and writer threads
    failed: threading.Event
    to_model: _Pipe
    to_writer: _Pipe
    cm: np.ndarray  # (C, C) int64


def slide(
    backend: Backend,
    scene: SceneImage,
    plan: SlidingPlan,
    cfg: PredictConfig,
    outputs: BlockSink,
    label_reader: LabelReader | None,
    block: TileBlock | None = None,
) -> tuple[np.ndarray, dict[str, float]]:
    """Run the three stages of the module docstring over the tiles of `block` (default the
    whole scene); return the confusion matrix and timings."""
    block = block or TileBlock.whole(plan)
    info = backend.info
    c = len(info.class_names)
    failed = threading.Event()
    errors: list[BaseException] = []
    ground = ground_pixel_size(scene.crs, scene.transform)
    s = _Sliding(
        scene=scene,
        plan=plan,
        cfg=cfg,
        block=block,
        outputs=outputs,
        label_reader=label_reader,
        to_model=_Pipe(cfg.prefetch, failed),
        to_writer=_Pipe(cfg.prefetch, failed),
        env=cfg.gdal_env,
        cm=np.zeros((c, c), np.int64),
        refiner=Refiner.make(cfg.refine, info, cfg.rgb_bands, cfg.crf, cfg.slic, ground),
        c=c,
        failed=failed,
    )
    t0 = time.perf_counter()
    threads = [
        _run_thread(lambda: _read_stage(s), failed, errors),
        _run_thread(lambda: _write_stage(s), failed, errors),
    ]
    model_s = 0.0
    try:
        model_s = _model_stage(backend, s)
    except BaseException as e:
        errors.append(e)
        failed.set()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    wall = time.perf_counter() - t0
    timing = {
        "slide_s": wall,
        "model_s": model_s,
        "model_busy": model_s / wall if wall > 0 else 0.0,
        "read_wait_s": s.to_model.get_wait_s,
        "write_wait_s": s.to_writer.put_wait_s,
    }
    return s.cm, timing


def _read_stage(s: _Sliding) -> None:
    """Reader thread: the block's batches of tiles into `to_model`, then the end mark."""
    with rasterio.Env(**s.env):
        for batch in _batches(s.plan, s.scene, s.cfg, s.block, s.outputs.preview):
            s.to_model.put(batch)
            if s.failed.is_set():
                return
    s.to_model.put(_END)


def _model_stage(backend: Backend, s: _Sliding) -> float:
    """Main thread: each batch through the model (with TTA) into `to_writer`, then the end
    mark; returns the seconds spent in the model."""
    model_s = 0.0
    while (batch := s.to_model.get()) is not _END:
        t = time.perf_counter()
        probs = predict_tta(backend, batch.tiles, batch.valid, s.cfg.transforms)
        model_s += time.perf_counter() - t
        if s.cfg.refine == "none":
            batch.tiles = None  # the writer needs them only to refine: free them now
        s.to_writer.put((batch, probs))
    s.to_writer.put(_END)
    return model_s


def _write_stage(s: _Sliding) -> None:
    """Writer thread: refine each tile, blend, write finished blocks, count the confusion."""
    from tqdm import tqdm

    c, refiner, label_reader = s.c, s.refiner, s.label_reader
    blender = Blender(s.plan, c, s.block)
    bar = tqdm(
        total=s.block.num_processed(),
        desc=s.scene.id,
        unit="tile",
        disable=not (s.cfg.progress and quiet.progress_bars()),
        leave=False,
    )
    with rasterio.Env(**s.env), bar:
        while (item := s.to_writer.get()) is not _END:
            batch, probs = item
            for k, (i, j) in enumerate(batch.keys):
                p = probs[k] if refiner.method == "none" else refiner(probs[k], batch.tiles[k])
                for part in blender.add(i, j, p):
                    valid = batch.valid[k][part.local]
                    cls = s.outputs.write(part.window, part.probs, valid)
                    if label_reader is not None:
                        s.cm[...] += confusion(label_reader.read(part.window), cls, c, mask=valid)
                bar.update(1)


def predict(
    model: Backend | str | Path,
    images: list[str | Path],
    out_dir: str | Path,
    cfg: PredictConfig | None = None,
    labels: list[str | Path | VectorLabels | None] | None = None,
    data: DataConfig | None = None,
    scene_ids: list[str] | None = None,
) -> list[ScenePrediction]:
    """`predict_scene` for several scenes with one loaded model; `labels` align with `images`.

    Outputs are named by `scene_ids`, default `unique_ids(images)`.
    """
    if labels is not None and len(labels) != len(images):
        raise ConfigError(
            f"give one label source per scene: {len(images)} scenes, {len(labels)} label sources"
        )
    ids = scene_ids or unique_ids(images)
    if len(set(ids)) != len(ids):
        raise ConfigError(f"scene ids must be distinct: {ids}")
    backend = model if isinstance(model, Backend) else load_backend(model)
    return [
        predict_scene(backend, img, out_dir, cfg, labels[k] if labels else None, data, ids[k])
        for k, img in enumerate(images)
    ]


def unique_ids(images: Sequence[str | Path]) -> list[str]:
    """Output names for images: the file name stem, prefixed by as many parent folders as it
    takes to tell images with the same file name apart (`a/image.tif`, `b/image.tif` ->
    `a_image`, `b_image`)."""
    parts = [
        # a local path absolute, a URI's bucket and key
        PurePosixPath(storage.resolved(p).split("://", 1)[-1]).with_suffix("").parts
        for p in images
    ]
    depth = 1
    while True:
        ids = ["_".join(p[-depth:]) for p in parts]
        if len(set(ids)) == len(ids) or depth >= max(len(p) for p in parts):
            return ids
        depth += 1
