"""Tiling, a Beam job: scenes -> overlapping tiles -> gzip TFRecords with spatial folds.

The launcher (`tile`) checks every scene's headers, lays the tile grid over each
scene (`reseg.windows`), assigns spatial blocks to folds, and cuts the work into
*shards*: runs of `tiling.shard_rows` tile rows of one scene. The Beam job
(`TileScenes`) spreads the shards over workers; each worker reads only its
shard's windows and writes its own TFRecord file plus a small JSON summary.
A shard whose summary exists is complete, so a rerun after a crash (same
inputs, same staging directory) writes only the missing shards, and the
tile content is identical to an uninterrupted run's.

User errors found while reading (unreadable pixels, label values outside the
class map, all-nodata scenes) are collected, not raised inside Beam, so the
launcher reports them as one clear message and removes the staging directory.
Operating-system errors while writing (a full disk) are collected the same way
(in memory when the disk cannot hold the record and the runner runs in this
process), but the staging directory is kept: a rerun resumes from its complete
shards.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import apache_beam as beam
import numpy as np
from apache_beam.options.pipeline_options import PipelineOptions

from reseg import artifacts, quiet, storage
from reseg.config import IGNORE, DataConfig, SceneSpec, TilingConfig
from reseg.errors import (
    ConfigError,
    InputError,
    IOFailure,
    ResegError,
    StoreError,
    error_class,
    expect_write,
    user_error,
)
from reseg.raster import (
    SceneInfo,
    SceneReader,
    check_consistent,
    fingerprint_file,
    inspect_scene,
    scene_files,
)
from reseg.tfrecords_schema import SCHEMA_VERSION, TFRecordShardWriter, Tile, encode
from reseg.tfrecords_schema.schema import ROLE_LABELLED, ROLE_TARGET, ROLE_UNLABELLED
from reseg.windows import TileGrid, Window, assign_folds, block_table, fold_map, scene_blocks

log = logging.getLogger(__name__)

CODE_VERSION = 1  # bump when the bytes this step writes change for the same inputs
COLUMN_CHUNK = 16  # tiles read per window along a row (bounds the read buffer)


@dataclass(frozen=True)
class Shard:
    """A unit of work: tile rows [row0, row1) of one scene, written to one file."""

    scene: int
    row0: int
    row1: int
    name: str


@dataclass(frozen=True)
class ShardContext:
    """Everything a worker needs, small and picklable."""

    scenes: tuple[SceneInfo, ...]
    data: DataConfig
    tiling: TilingConfig
    tables: tuple[np.ndarray, ...]  # block -> fold table of each scene
    out: str
    roles: tuple[np.ndarray | None, ...] = ()  # block -> role table; None: every pixel labelled


def _summary(ctx: ShardContext, shard: Shard) -> dict:
    c, k = ctx.data.num_classes, ctx.tiling.folds
    return {
        "shard": shard.name,
        "scene": ctx.scenes[shard.scene].id,
        "tiles": 0,
        "dropped": 0,
        "tiles_per_fold": [0] * k,
        "class_pixels_per_fold": [[0] * c for _ in range(k)],
        "target_class_pixels": [0] * c,
        "valid_core_pixels": 0,
        "nan_pixels": 0,
        "unknown_labels": [],
    }


def write_shard(ctx: ShardContext, shard: Shard) -> dict:
    """Read, encode and write the tiles of one shard; return its summary (also saved as JSON)."""
    info = ctx.scenes[shard.scene]
    t = ctx.tiling
    grid = TileGrid(info.height, info.width, t.tile_size, t.overlap)
    table = ctx.tables[shard.scene]
    roles = ctx.roles[shard.scene] if ctx.roles else None
    out = storage.path(ctx.out)
    summary = _summary(ctx, shard)
    unknown: set = set()
    with (
        SceneReader(info, ctx.data) as reader,
        TFRecordShardWriter(out / f"{shard.name}.tfrecord.gz") as writer,
    ):
        for i in range(shard.row0, shard.row1):
            for j0 in range(0, grid.cols, COLUMN_CHUNK):
                j1 = min(grid.cols, j0 + COLUMN_CHUNK)
                first, last = grid.spec(i, j0).window, grid.spec(i, j1 - 1).window
                outer = Window(
                    first.row_off, first.col_off, t.tile_size, last.col_end - first.col_off
                )
                chunk = reader.read(outer)
                summary["nan_pixels"] += _core_nan(chunk, grid, i, j0, j1, outer)
                unknown |= chunk.unknown_labels
                for j in range(j0, j1):
                    _emit(
                        grid.spec(i, j), outer, chunk, info, grid, table, t, writer, summary, roles
                    )
    summary["unknown_labels"] = sorted(unknown, key=str)
    artifacts.write_json(out / f"{shard.name}.json", summary)
    return summary


def _core_nan(chunk, grid: TileGrid, i: int, j0: int, j1: int, outer: Window) -> int:
    """NaN pixels of the cores of tiles (i, j0..j1): counted once per scene pixel."""
    if not chunk.nan_pixels:
        return 0
    # NaN pixels are invalid; recount them inside the cores only, from the raw values
    r0 = grid.spec(i, j0).core
    r1 = grid.spec(i, j1 - 1).core
    cores = Window(r0.row_off, r0.col_off, r0.height, r1.col_end - r0.col_off)
    sl = cores.relative_to(outer)
    return int(np.isnan(chunk.image[sl]).any(axis=-1).sum())


def _emit(
    spec,
    outer: Window,
    chunk,
    info: SceneInfo,
    grid: TileGrid,
    table,
    t: TilingConfig,
    writer,
    summary,
    roles: np.ndarray | None = None,
) -> None:
    """Write the tile of `spec` (cut from `chunk`, read over `outer`) unless its core holds no
    valid pixel; count it in `summary`."""
    sl = spec.window.relative_to(outer)
    valid = chunk.valid[sl]
    core_sl = spec.core.relative_to(spec.window)
    n_valid = int(valid[core_sl].sum())
    if n_valid == 0:
        summary["dropped"] += 1
        return
    label, role_map, target = _role_labels(spec, chunk.label[sl], grid, roles, t, summary)
    fold = int(table[spec.cell[0] // t.block_cells, spec.cell[1] // t.block_cells])
    a, b, c, d, e, f = _affine(info.transform)
    x0 = c + a * spec.window.col_off + b * spec.window.row_off
    y0 = f + d * spec.window.col_off + e * spec.window.row_off
    tile = Tile(
        image=np.ascontiguousarray(chunk.image[sl]),
        label=np.ascontiguousarray(label),
        valid=np.ascontiguousarray(valid),
        fold_map=fold_map(grid, spec.window, table, t.block_cells),
        scene=info.id,
        row=spec.window.row_off,
        col=spec.window.col_off,
        core=(spec.core.row_off, spec.core.col_off, spec.core.height, spec.core.width),
        fold=fold,
        crs=info.crs,
        transform=(x0, a, b, y0, d, e),
        role_map=role_map,
        target=target,
    )
    writer.write(encode(tile))
    summary["tiles"] += 1
    summary["tiles_per_fold"][fold] += 1
    summary["valid_core_pixels"] += n_valid
    _add_counts(summary["class_pixels_per_fold"][fold], label[core_sl])


def _role_labels(
    spec, label: np.ndarray, grid: TileGrid, roles: np.ndarray | None, t: TilingConfig, summary
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """(label, role map, target labels) of a tile: with roles, the labels of unlabelled and
    target pixels are IGNORE in `label` (they never enter `label/raw`), the target pixels'
    labels go to `target` (counted in `summary["target_class_pixels"]`)."""
    if roles is None:
        return label, None, None
    target = None
    role_map = fold_map(grid, spec.window, roles, t.block_cells)
    if (roles == ROLE_TARGET).any():
        target = np.where(role_map == ROLE_TARGET, label, IGNORE).astype(np.uint8)
        _add_counts(summary["target_class_pixels"], target[spec.core.relative_to(spec.window)])
    label = np.where(role_map == ROLE_LABELLED, label, IGNORE).astype(np.uint8)
    return label, role_map, target


def _add_counts(row: list[int], labels: np.ndarray) -> None:
    """Add the pixels of each class in `labels` (IGNORE left out) to `row` (one per class)."""
    counts = np.bincount(labels[labels != IGNORE], minlength=len(row))
    for k, v in enumerate(counts.tolist()):
        row[k] += v


def _affine(gdal: Sequence[float]) -> tuple[float, float, float, float, float, float]:
    """GDAL (c, a, b, f, d, e) -> (a, b, c, d, e, f) of x = a col + b row + c, y = d col + e row + f."""
    c, a, b, f, d, e = gdal
    return a, b, c, d, e, f


class WriteShards(beam.DoFn):
    """Writes each shard it receives; user errors become error records, not failures."""

    def __init__(self, ctx: ShardContext):
        self.ctx = ctx

    def process(self, shard: Shard) -> Iterator[dict]:
        try:
            yield write_shard(self.ctx, shard)
        except ResegError as e:
            _record(self.ctx.out, shard, e)
        except OSError as e:  # Beam would print its traceback; the launcher reports one line
            err = user_error(e, fallback=self.ctx.out)
            if err is None or isinstance(err, StoreError):
                raise  # the store is down: the job ends now, and the launcher names it
            _record(self.ctx.out, shard, err)


_UNRECORDED: list[ResegError] = []
"""Errors whose record the failing disk could not hold (seen when the runner is in-process)."""


def _record(out: str, shard: Shard, e: ResegError) -> None:
    try:
        err_dir = storage.path(out) / "errors"
        storage.mkdir(err_dir)
        record = {"shard": shard.name, "error": str(e), "kind": type(e).__name__}
        artifacts.write_json(err_dir / f"{shard.name}.json", record)
    except OSError:
        _UNRECORDED.append(e)


def _recorded_error(tmp: Path, shards: list[Shard]) -> ResegError | None:
    """The first error the workers recorded, or an error for shards left unwritten."""
    errors = sorted((tmp / "errors").glob("*.json")) if (tmp / "errors").exists() else []
    if errors:
        rec = json.loads(errors[0].read_text())
        return error_class(rec.get("kind", "InputError"))(rec["error"])
    if _UNRECORDED:
        err = _UNRECORDED[0]
        _UNRECORDED.clear()
        return err
    missing = [s.name for s in shards if not (tmp / f"{s.name}.json").exists()]
    if missing:
        return IOFailure(f"{tmp}: {len(missing)} shard(s) not written ({missing[0]}, ...)")
    return None


class TileScenes(beam.PTransform):
    """Shards -> written TFRecord shards (one summary dict per shard)."""

    def __init__(self, ctx: ShardContext):
        super().__init__()
        self.ctx = ctx

    def expand(self, shards):
        return (
            shards
            | "Spread" >> beam.Reshuffle()
            | "WriteShards" >> beam.ParDo(WriteShards(self.ctx))
        )


# --- launcher ---------------------------------------------------------------------------


def plan(
    data: DataConfig, t: TilingConfig
) -> tuple[list[SceneInfo], list[TileGrid], list[np.ndarray], list[Shard]]:
    """Inspect scenes (headers only), lay out grids and fold blocks, cut shards."""
    infos = [inspect_scene(s, data) for s in data.scenes]
    check_consistent(infos)
    grids = [TileGrid(s.height, s.width, t.tile_size, t.overlap) for s in infos]
    roles = role_tables(data, t, grids)
    labelled, other = [], []
    for s, g, rt in zip(infos, grids, roles, strict=True):
        for b in scene_blocks(s.id, g, t.block_cells):
            (labelled if rt is None or rt[b[1], b[2]] == ROLE_LABELLED else other).append(b)
    # labelled blocks are dealt to folds among themselves, so each fold keeps its share of them
    folds = {**assign_folds(labelled, t.folds, t.seed), **assign_folds(other, t.folds, t.seed)}
    tables = [block_table(folds, s.id, g, t.block_cells) for s, g in zip(infos, grids, strict=True)]
    shards = [
        Shard(n, r0, min(g.rows, r0 + t.shard_rows), f"part-{s.id}-{r0 // t.shard_rows:05d}")
        for n, (s, g) in enumerate(zip(infos, grids, strict=True))
        for r0 in range(0, g.rows, t.shard_rows)
    ]
    return infos, grids, tables, shards


def role_table(spec: SceneSpec, grid: TileGrid, block_cells: int) -> np.ndarray | None:
    """(blocks down, blocks across) uint8 role of each fold block; None if all labelled."""
    if not spec.pseudo_source:
        return None
    n_bi = (grid.rows - 1) // block_cells + 1
    n_bj = (grid.cols - 1) // block_cells + 1
    if spec.role != "labelled":
        fill = ROLE_UNLABELLED if spec.role == "unlabelled" else ROLE_TARGET
        return np.full((n_bi, n_bj), fill, np.uint8)
    region = spec.target_blocks
    assert region is not None
    if region.rows[1] > n_bi or region.cols[1] > n_bj:
        raise ConfigError(
            f"data.scenes ({spec.scene_id}).target_blocks: rows {list(region.rows)}, cols "
            f"{list(region.cols)} run past the scene's {n_bi} x {n_bj} fold blocks"
        )
    table = np.full((n_bi, n_bj), ROLE_LABELLED, np.uint8)
    table[region.rows[0] : region.rows[1], region.cols[0] : region.cols[1]] = ROLE_TARGET
    if (table == ROLE_TARGET).all():
        raise ConfigError(
            f"data.scenes ({spec.scene_id}).target_blocks covers the whole scene; "
            "give the scene role target instead"
        )
    return table


def role_tables(
    data: DataConfig, t: TilingConfig, grids: Sequence[TileGrid]
) -> list[np.ndarray | None]:
    """The `role_table` of every scene of `data`, in order."""
    return [role_table(s, g, t.block_cells) for s, g in zip(data.scenes, grids, strict=True)]


def tiles_fingerprint(data: DataConfig, t: TilingConfig) -> str:
    """The scenes' files and the `data` and `tiling` sections (as `Config.section_json`)."""
    files = [f for s in data.scenes for f in scene_files(s)]
    missing = [f for f in files if not storage.path(f).exists()]
    if missing:
        raise InputError(f"{missing[0]}: file not found")
    return artifacts.fingerprint(
        "tiles",
        SCHEMA_VERSION,
        CODE_VERSION,
        {"data": data.model_dump(mode="json"), "tiling": t.model_dump(mode="json")},
        {f: fingerprint_file(f) for f in files},
    )


def tile(
    data: DataConfig,
    t: TilingConfig,
    out: str | Path,
    beam_args: Sequence[str] = (),
    *,
    config_json: str | None = None,
) -> artifacts.TileSet:
    """Tile every scene of `data` into `out` (skipped when current).

    Args:
        data: the `data` section (scenes, classes, nodata).
        t: the `tiling` section.
        out: the tile set's folder (the tile step gives `<root>/tiles`).
        beam_args: the Beam pipeline options (`beam.args` and the command's).
        config_json: the resolved config written beside the tiles (`config.json`).
    """
    out = storage.path(out)
    fp = tiles_fingerprint(data, t)
    if artifacts.is_current(out, fp):
        log.info("tiles are current (%s); skipping", out)
        return artifacts.TileSet.load(out)
    infos, grids, tables, shards = plan(data, t)
    with artifacts.stage(out, fp, "tile", config_json) as st:
        st.manifest.update(_run(data, t, infos, grids, tables, shards, st.dir, fp, beam_args))
    c = st.manifest["counts"]
    log.info(
        "wrote %d tiles (%d dropped without valid pixels) to %s; tiles per fold %s",
        c["tiles"],
        c["dropped"],
        out,
        c["tiles_per_fold"],
    )
    return artifacts.TileSet.load(out)


def _run(
    data: DataConfig, t: TilingConfig, infos, grids, tables, shards, tmp: Path, fp: str, beam_args
) -> dict:
    """The Beam job writing shards into staging directory `tmp`; returns the manifest."""
    # a previous attempt's error records (or the empty folder a full disk left) are stale:
    # the shards they name are done again, and the folder must not be published with the tiles
    storage.rmtree(storage.path(tmp) / "errors")
    todo = [s for s in shards if not (tmp / f"{s.name}.json").exists()]
    if len(todo) < len(shards):
        log.info(
            "resuming: %d of %d shards already complete in %s",
            len(shards) - len(todo),
            len(shards),
            tmp,
        )
    started = time.time()
    if todo:
        roles = tuple(role_tables(data, t, grids))
        ctx = ShardContext(tuple(infos), data, t, tuple(tables), str(tmp), roles=roles)
        args = list(beam_args)
        log.info(
            "tiling %d scenes: %d shards with Beam (%s)", len(infos), len(todo), " ".join(args)
        )
        need = _raw_bytes(t.tile_size, infos, grids, todo)
        with (
            expect_write(str(tmp), need, "the tiles (uncompressed)"),
            _Progress(tmp, len(shards), len(shards) - len(todo)),
            beam.Pipeline(options=PipelineOptions(quiet.beam_args(args))) as p,
        ):
            _ = p | "Shards" >> beam.Create(todo) | "Tile" >> TileScenes(ctx)
    err = _recorded_error(tmp, shards)
    if err is not None:
        raise err
    summaries = [json.loads((tmp / f"{s.name}.json").read_text()) for s in shards]
    manifest = _manifest(data, t, infos, grids, summaries, fp, time.time() - started)
    tileset_files = [f"{s.name}.tfrecord.gz" for s in shards]
    manifest["files"] = tileset_files
    manifest["scene_files"] = {
        info.id: [f"{s.name}.tfrecord.gz" for s in shards if s.scene == n]
        for n, info in enumerate(infos)
    }
    return manifest


def _raw_bytes(t: int, infos, grids, shards) -> int:
    """Upper bound of the bytes `shards` write: every tile's pixels, label, valid and fold map
    (tiles of `t` x `t` pixels)."""
    total = 0
    for s in shards:
        info, grid = infos[s.scene], grids[s.scene]
        per_tile = t * t * (info.num_bands * np.dtype(info.dtype).itemsize + 3)
        total += (s.row1 - s.row0) * grid.cols * per_tile
    return total


def _manifest(
    data: DataConfig, t: TilingConfig, infos, grids, summaries, fp: str, seconds: float
) -> dict:
    """The tile set's manifest from the shards' summaries (a scene's bad labels, NaN or no
    valid pixel raise here, as `data.unknown_labels` and `data.nan` say)."""
    by_scene: dict[str, list[dict]] = {s.id: [] for s in infos}
    for s in summaries:
        by_scene[s["scene"]].append(s)
    scenes = [
        _scene_entry(data, info, grid, spec, by_scene[info.id])
        for info, grid, spec in zip(infos, grids, data.scenes, strict=True)
    ]
    return {
        "fingerprint": fp,
        "step": "tile",
        "schema_version": SCHEMA_VERSION,
        "image_dtype": infos[0].dtype,
        "bands": infos[0].num_bands,
        "num_classes": data.num_classes,
        "class_names": [x.name for x in data.classes],
        "class_colors": [x.color for x in data.classes],
        "folds": t.folds,
        "tile_size": t.tile_size,
        "overlap": t.overlap,
        "block_cells": t.block_cells,
        "scenes": scenes,
        "counts": _counts(summaries, t.folds, data.num_classes),
        "seconds": round(seconds, 3),
    }


def _scene_entry(data: DataConfig, info: SceneInfo, grid: TileGrid, spec: SceneSpec, ss) -> dict:
    """One scene's manifest entry from its shards' summaries `ss`; its user errors raised."""
    unknown = sorted({v for s in ss for v in s["unknown_labels"]}, key=str)
    nan = sum(s["nan_pixels"] for s in ss)
    label_src = info.labels.path or "(polygons)"
    if unknown and data.unknown_labels == "error":
        shown = ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in unknown[:20])
        raise InputError(
            f"{label_src}: label values outside the class map: {shown}"
            f"{' ...' if len(unknown) > 20 else ''} (map them in data.label_values, or set "
            "data.unknown_labels: ignore)"
        )
    if unknown:
        log.warning("%s: ignoring label values outside the class map: %s", label_src, unknown[:20])
    if nan and data.nan == "error":
        raise InputError(f"{info.image}: {nan} pixels are NaN (data.nan: error)")
    if nan:
        log.warning("%s: %d NaN pixels treated as nodata", info.image, nan)
    valid = sum(s["valid_core_pixels"] for s in ss)
    if valid == 0:
        raise InputError(
            f"{info.image}: every pixel is nodata (nodata={info.nodata}); nothing to tile"
        )
    return {
        **asdict(info),
        "rows": grid.rows,
        "cols": grid.cols,
        "tiles": sum(s["tiles"] for s in ss),
        "valid_pixels": valid,
        "nan_pixels": nan,
        "unknown_labels": unknown,
        "role": spec.role,
        "target_blocks": None if spec.target_blocks is None else spec.target_blocks.model_dump(),
    }


def _counts(summaries: list[dict], k: int, c: int) -> dict:
    """The tile set's counts: tiles, dropped tiles, tiles and class pixels per fold (k folds,
    c classes), target class pixels."""
    per_fold = np.zeros((k, c), np.int64)
    for s in summaries:
        per_fold += np.array(s["class_pixels_per_fold"], np.int64)
    return {
        "tiles": sum(s["tiles"] for s in summaries),
        "dropped": sum(s["dropped"] for s in summaries),
        "tiles_per_fold": np.sum([s["tiles_per_fold"] for s in summaries], axis=0).tolist(),
        "class_pixels_per_fold": per_fold.tolist(),
        "target_class_pixels": np.sum(
            [s.get("target_class_pixels", [0] * c) for s in summaries], axis=0
        ).tolist(),
    }


class _Progress:
    """A tqdm bar over completed shards, fed by watching the staging directory."""

    def __init__(self, tmp: Path, total: int, done: int):
        self.tmp, self.total, self.done = tmp, total, done
        self._stop = threading.Event()

    def __enter__(self) -> _Progress:
        from tqdm import tqdm

        self.bar = tqdm(
            total=self.total,
            initial=self.done,
            desc="tiling",
            unit="shard",
            leave=False,
            disable=not quiet.progress_bars(),
        )
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()
        return self

    def _watch(self) -> None:
        while not self._stop.wait(0.5):
            try:
                n = len(list(self.tmp.glob("part-*.json")))
            except Exception:  # the store unreachable: the job reports it, the bar waits
                continue
            self.bar.update(n - self.bar.n)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self.thread.join()
        self.bar.close()
