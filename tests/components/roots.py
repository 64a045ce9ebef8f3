"""The components on the artifacts of a root, resolved as the pipeline's steps resolve them
(`reseg.pipeline.steps`): for component tests that work in a root. Components take config
sections and artifacts, never the root; these few lines are the steps' resolution."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from reseg import layout, tracking
from reseg.artifacts import Export, Model, Stats, TileSet
from reseg.components import statistics, tiling
from reseg.components import trainer as trainer_mod
from reseg.components.exporter import export as export_component
from reseg.components.exporter import sources as export_sources
from reseg.config import Config
from reseg.pipeline import sources


def tile(cfg: Config, root: Path, beam_args: Sequence[str] = ()) -> TileSet:
    """`<root>/tiles` of `cfg`'s scenes."""
    return tiling.tile(
        cfg.data,
        cfg.tiling,
        layout.tiles_dir(root),
        [*cfg.beam.args, *beam_args],
        config_json=cfg.to_json(),
    )


def compute_stats(cfg: Config, root: Path, beam_args: Sequence[str] = ()) -> Stats:
    """`<root>/stats` of `<root>/tiles`."""
    return statistics.compute_stats(
        TileSet.load(layout.tiles_dir(root)),
        layout.stats_dir(root),
        [*cfg.beam.args, *beam_args],
        config_json=cfg.to_json(),
    )


def train(
    cfg: Config,
    root: Path,
    *,
    fold: int | None,
    round: int = 0,
    tile_files: Sequence[str | Path] | None = None,
    init_model: str | Path | None = None,
    run: tracking.Run | None = None,
) -> Model:
    """Round `round`'s model of `fold` in `root`, on its tiles and stats (a run of its own
    unless `run`)."""
    return trainer_mod.train(
        cfg,
        TileSet.load(layout.tiles_dir(root)),
        Stats.load(layout.stats_dir(root)),
        layout.model_dir(root, round, fold),
        fold=fold,
        round=round,
        tile_files=tile_files,
        init_model=init_model,
        tracking=run,
        open_run=tracking.opener(cfg, root),
    )


def export(
    cfg: Config,
    root: Path,
    source: str | int | None = None,
    fold: int | str | None = sources.DEFAULT,
    run: tracking.Run | None = None,
) -> Export:
    """`source` of `root` (default `export.source`) exported to `<root>/export/<name>`."""
    label, k, path = sources.resolve(
        cfg, root, cfg.export.source if source is None else source, fold
    )
    return export_component(
        cfg.export,
        export_sources.load(label, k, path),
        sources.tile_set(root),
        layout.export_dir(root, cfg.export.model_name),
        registry=cfg.tracking.enabled and cfg.export.registry,
        tracking=run,
        open_run=tracking.opener(cfg, root),
    )
