"""The pipeline: the only place that wires components together.

`STEPS` declares the steps by name, in order; `run_pipeline` runs them inside one
MLflow parent run (rounds log nested runs into it). Each component skips its work
when its manifest matches, so a rerun resumes after the last complete artifact.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reseg import artifacts
from reseg.config import Config

log = logging.getLogger(__name__)


@dataclass
class Context:
    """What every step gets: config, root, extra Beam options, the parent MLflow run, results so far."""

    cfg: Config
    root: Path
    beam_args: Sequence[str]
    run: Any
    results: dict[str, Any] = field(default_factory=dict)


def _tile(ctx: Context) -> Any:
    from reseg.components.tiling import tile

    return tile(ctx.cfg, ctx.root, ctx.beam_args)


def _stats(ctx: Context) -> Any:
    from reseg.components.statistics import compute_stats

    return compute_stats(ctx.cfg, ctx.root, ctx.beam_args)


def _rounds(ctx: Context) -> Any:
    from reseg.pipeline.rounds import run_fold

    tiles = ctx.results.get("tile") or artifacts.TileSet.load(ctx.root / "tiles")
    return [
        run_fold(ctx.cfg, ctx.root, k, ctx.beam_args, ctx.run)
        for k in ctx.cfg.rounds.fold_list(tiles.folds)
    ]


def _export(ctx: Context) -> Any:
    from reseg.components.exporter import export

    return export(ctx.cfg, ctx.root, tracking=ctx.run)


def _predict(ctx: Context) -> Any:
    from reseg.components.predictor.root import predict_root

    return predict_root(ctx.cfg, ctx.root, ctx.run)


def _report(ctx: Context) -> Any:
    from reseg.report import write_report

    path = write_report(ctx.root)
    if ctx.run.enabled:
        ctx.run.log_artifacts(path.parent, "report")
    return path


STEPS: dict[str, Callable[[Context], Any]] = {
    "tile": _tile,
    "stats": _stats,
    "rounds": _rounds,
    "export": _export,
    "predict": _predict,
    "report": _report,
}


PARENT_RUN_ENV = "RESEG_PARENT_RUN_ID"
"""Environment variable naming an MLflow run to nest the pipeline run under (a study's run)."""


def parent_tags() -> dict[str, str]:
    """`{"mlflow.parentRunId": $RESEG_PARENT_RUN_ID}` when that is set, else empty."""
    import os

    parent = os.environ.get(PARENT_RUN_ENV)
    return {"mlflow.parentRunId": parent} if parent else {}


def run_pipeline(
    cfg: Config,
    root: str | Path,
    beam_args: Sequence[str] = (),
    steps: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Run the named steps (default all) in order; return each step's result by name."""
    from reseg import tracking

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.json").write_text(cfg.to_json())
    names = list(steps or STEPS)
    key = artifacts.fingerprint("pipeline", cfg.model_dump(mode="json"), str(root.resolve()))
    tags = {"reseg.step": "pipeline", **parent_tags()}
    with tracking.open_run(
        cfg, root, run_name=f"pipeline {cfg.name}", tags=tags, resume_key=key
    ) as run:
        if run.enabled:
            run.log_params(cfg.model_dump(mode="json"))
        ctx = Context(cfg, root, beam_args, run)
        for name in names:
            started = time.time()
            log.info("step %s", name)
            ctx.results[name] = STEPS[name](ctx)
            log.info("step %s done in %.1f s", name, time.time() - started)
    return ctx.results
