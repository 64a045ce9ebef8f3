"""`run_pipeline`: the steps of `reseg run` in order, inside one MLflow parent run.

`STEPS` declares the steps by name, in order; each is a function of `steps`, so
the pipeline is exactly the step commands run one after the other. Every step
skips its work when its artifact is current, so a rerun resumes after the last
complete artifact.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from reseg import artifacts, layout, storage, tracking
from reseg.components.tiling import plan as plan_tiles
from reseg.config import Config
from reseg.errors import (
    PLACE_ERRORS,
    ConfigError,
    LeaseError,
    ResegError,
    user_error,
)
from reseg.inference.precision import pinned_config
from reseg.pipeline import steps as step_fns

log = logging.getLogger(__name__)


def _rounds(ctx: step_fns.Context) -> list[step_fns.FoldResult]:
    return [step_fns.rounds(ctx, k) for k in ctx.folds()]


STEPS: dict[str, Callable[[step_fns.Context], Any]] = {
    "tile": step_fns.tile,
    "stats": step_fns.stats,
    "rounds": _rounds,
    "refine": step_fns.refine,
    "export": step_fns.export,
    "predict": step_fns.predict,
    "report": step_fns.report,
}

PARENT_RUN_ENV = "RESEG_PARENT_RUN_ID"
"""Environment variable naming an MLflow run to nest the pipeline run under (a study's run)."""


def parent_tags() -> dict[str, str]:
    """`{"mlflow.parentRunId": $RESEG_PARENT_RUN_ID}` when that is set, else empty."""
    parent = os.environ.get(PARENT_RUN_ENV)
    return {"mlflow.parentRunId": parent} if parent else {}


def step_names(steps: Sequence[str] | None) -> list[str]:
    """The named steps in pipeline order (default all); unknown names are a ConfigError."""
    if steps is None:
        return list(STEPS)
    names = [s.strip() for s in steps if s.strip()]
    unknown = [s for s in names if s not in STEPS]
    if unknown or not names:
        raise ConfigError(
            f"steps: unknown step(s) {unknown or list(steps)}; the steps are {', '.join(STEPS)}"
        )
    return [s for s in STEPS if s in names]


def hold_root(root: str | Path, wait: float = 0.0):
    """The root's lease, held by a step command while it writes (`reseg.artifacts.hold`)."""
    return artifacts.hold(root, wait)


def check_root(root: Path) -> None:
    """A root that cannot be a folder is a user error, raised before anything is written; so
    is a root in a bucket that does not exist, cannot be reached or refuses the credentials."""
    storage.check_output(root)


def check_inputs(cfg: Config, root: Path, names: Sequence[str]) -> None:
    """Check what the first step reads before anything is created (no root, run or config
    left behind by a user error): the scenes when tiling runs, else the tiles (the root's own,
    or those of the root its `shared.json` names)."""
    check_root(root)
    if "tile" in names:
        plan_tiles(cfg.data, cfg.tiling)  # every scene's header, labels and polygons
    else:
        artifacts.TileSet.load(layout.tiles_dir(layout.Shared.load(root).data_root(root)))


def run_pipeline(
    cfg: Config,
    root: str | Path,
    beam_args: Sequence[str] = (),
    steps: Sequence[str] | None = None,
    wait: float = 0.0,
) -> dict[str, Any]:
    """Run the named steps (default all) in order; return each step's result by name.

    The run holds the root's lease (`reseg.artifacts.lease`) from after the inputs are checked
    to the end; another writer holding it is an error (`LeaseError`), or is waited for up to
    `wait` seconds."""
    storage.check_uri(root)
    root = storage.path(root)
    names = step_names(steps)
    check_inputs(cfg, root, names)
    with artifacts.hold(root, wait):
        fresh = all(p.name == layout.LEASE for p in storage.path(root).iterdir())
        try:
            return _run_steps(cfg, root, beam_args, names)
        except Exception as e:
            if fresh and _failed_on_inputs(e):
                _remove_all_but_the_lease(root)
            raise


def _failed_on_inputs(e: BaseException) -> bool:
    """Whether a run ended on a user error of its inputs (found inside a Beam job too), not of
    the place written to (kept for the rerun to resume), the lease, or a bug (kept to see)."""
    err = e if isinstance(e, ResegError) else user_error(e)
    return err is not None and not isinstance(err, (*PLACE_ERRORS, LeaseError))


def _remove_all_but_the_lease(root: Path) -> None:
    """What a run made in a root that was empty before it (`config.json`, `mlflow.db`, the
    MLflow artifacts): the run failed on its inputs, so it leaves nothing, as a run whose
    inputs are refused before it starts (the lease, released next, removes the root)."""
    for name in storage.files_under(root):
        top = name.split("/", 1)[0]
        if top != layout.LEASE:
            storage.rmtree(storage.join(root, top))


def _run_steps(
    cfg: Config, root: Path, beam_args: Sequence[str], names: Sequence[str]
) -> dict[str, Any]:
    """The steps `names` in order in one MLflow run (the root's lease held)."""
    layout.config_file(root).write_text(cfg.to_json())
    where = storage.resolved(root)
    # `auto` precisions pinned: a run of a config from before `auto` was the default resumes
    key = artifacts.fingerprint("pipeline", pinned_config(cfg.model_dump(mode="json")), where)
    tags = {"reseg.step": "pipeline", **parent_tags()}
    results: dict[str, Any] = {}
    with tracking.open_run(
        cfg, root, run_name=f"pipeline {cfg.name}", tags=tags, resume_key=key
    ) as run:
        if run.enabled:
            run.log_params(cfg.model_dump(mode="json"))
        ctx = step_fns.Context(cfg, root, tuple(beam_args), run)
        for name in names:
            started = time.time()
            log.info("step %s", name)
            results[name] = STEPS[name](ctx)
            log.info("step %s done in %.1f s", name, time.time() - started)
    return results
