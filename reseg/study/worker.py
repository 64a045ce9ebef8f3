"""One job of a study, in its own process: `python -m reseg.study.worker STUDY_ROOT JOB_ID`.

The study runner starts workers (at most `parallel` at a time) and gives them the
MLflow run of the study in `RESEG_PARENT_RUN_ID`, so what they log appears under it.
A worker ends by writing its done marker `<study>/jobs/<job>.json`; every step it
runs skips work whose artifact is current, so a worker killed half way and started
again resumes.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

import yaml

from reseg import artifacts, layout, quiet, storage, tracking
from reseg.config import DataConfig
from reseg.errors import ResegError
from reseg.pipeline import parent_tags, run_pipeline, steps
from reseg.report import collect
from reseg.study import refine as refine_factor
from reseg.study import tilecm
from reseg.study.cells import seed_root, seeded
from reseg.study.plan import Job, Plan, config_of, marker
from reseg.study.resample import resample_scenes

log = logging.getLogger(__name__)


def share(root: Path, shared: layout.Shared) -> layout.Shared:
    """Record in `root` the roots it reads its data and round 0 from (`<root>/shared.json`), so
    the steps and every command on the root find them; returns `shared`."""
    storage.mkdir(root)
    artifacts.write_json(layout.shared_file(root), shared.to_dict())
    return shared


def run_data(plan: Plan, job: Job) -> None:
    """Resample the scenes (f > 1), tile them and compute the statistics of one resolution."""
    g = plan.group(job.params["group"])
    cfg = config_of(g.config, g.id)
    if g.resolution > 1:
        source = DataConfig.model_validate(plan.source_data)
        resample_scenes(source, g.resolution, storage.path(g.data_root) / "scenes")
    ctx = steps.Context(
        cfg, storage.path(g.data_root), tuple(plan.beam_args), shared=layout.Shared()
    )
    steps.tile(ctx)
    steps.stats(ctx)


def run_r0(plan: Plan, job: Job) -> None:
    """Round 0 of a group, seed and evaluation fold (`steps.round_zero`, per-tile confusions),
    then the group's TTA baseline and refine cells on that seed and fold."""
    g = plan.group(job.params["group"])
    fold, seed = job.params["fold"], job.params["seed"]
    cfg = config_of(seeded(g.config, seed), g.id)
    root = seed_root(g.root, seed)
    shared = share(root, layout.Shared(data=g.data_root))
    key = artifacts.fingerprint("study-r0", job.fingerprint, str(root))
    tags = {"reseg.step": "round0", "reseg.fold": fold, "reseg.seed": seed, "reseg.group": g.id}
    with tracking.open_run(
        cfg,
        root,
        run_name=f"round 0 {g.id} seed{seed} fold{fold}",
        tags={**parent_tags(), **tags},
        resume_key=key,
    ) as run:
        r0 = steps.round_zero(
            steps.Context(cfg, root, tuple(plan.beam_args), run, shared), fold, run
        )
        run.log_metrics({"eval_mean_iou": r0.metrics.mean_iou})  # type: ignore[union-attr]
        if r0.target is not None:  # source only: round 0 on the target pixels
            run.log_metrics({"target_mean_iou": r0.target.mean_iou})
    n = cfg.data.num_classes
    tilecm.save(
        root / "study" / f"r0_fold{fold}.npz", *tilecm.tile_confusions(r0.scores.path, fold, n)
    )
    if r0.target is not None:
        tilecm.save(
            root / "study" / f"r0_target_fold{fold}.npz",
            *tilecm.target_tile_confusions(r0.scores.path, n),
        )
    if job.params.get("tta_cell"):
        run_tta(plan, job.params["tta_cell"], seed, fold, job.fingerprint)
    if job.params.get("refine_cells"):
        cells = {
            plan.cell(c).x: seed_root(plan.cell(c).root, seed) for c in job.params["refine_cells"]
        }
        ctx = steps.Context(cfg, root, tuple(plan.beam_args), shared=shared)
        refine_factor.run_refine(ctx, fold, cells)


def run_tta(plan: Plan, cell_id: str, seed: int, fold: int, key: str) -> None:
    """Round 0's model (of `seed`) with test-time augmentation, scored and evaluated on one fold."""
    cell = plan.cell(cell_id)
    g = plan.group(cell.group)
    cfg = config_of(seeded(g.config, seed), g.id)
    root = seed_root(cell.root, seed)
    group_root = seed_root(g.root, seed)
    out = root / layout.fold_name(fold)
    tags = {"reseg.step": "tta", "reseg.fold": fold, "reseg.seed": seed, "reseg.cell": cell.id}
    with tracking.open_run(
        cfg,
        root,
        run_name=f"tta {cell.id} seed{seed} fold{fold}",
        tags={**parent_tags(), **tags},
        resume_key=artifacts.fingerprint("study-tta", key, str(root)),
    ) as run:
        shared = layout.Shared(data=g.data_root)
        ctx = steps.Context(cfg, group_root, tuple(plan.beam_args), run, shared)
        metrics = steps.score_tta(ctx, fold, cell.tta or ("identity",), out)
        run.log_metrics({"eval_mean_iou": metrics.mean_iou})
    tilecm.save(
        root / "study" / f"merged_fold{fold}.npz",
        *tilecm.tile_confusions(out / layout.SCORES, fold, cfg.data.num_classes),
    )


CELL_STEPS = ("tile", "stats", "rounds", "report")
"""Pipeline steps of a cell (`cell.yaml` with `reseg run` adds export and predict)."""


def run_cell(plan: Plan, job: Job) -> None:
    """The rounds of one cell and seed as a pipeline run that reads the group's tiles and round
    0 (`layout.Shared`), then the per-tile confusions of its last round and merge."""
    cell = plan.cell(job.params["cell"])
    g = plan.group(cell.group)
    seed = job.params["seed"]
    raw = seeded(cell.config, seed)  # type: ignore[arg-type]
    cfg = config_of(raw, cell.id)
    root = seed_root(cell.root, seed)
    shared = share(root, layout.Shared(data=g.data_root, round0=str(seed_root(g.root, seed))))
    with storage.atomic_write(root / "cell.yaml", "w") as fh:
        fh.write(yaml.safe_dump(raw, sort_keys=False))
    # a study compares rounds: no SavedModel export and no whole-scene prediction per cell
    run_pipeline(cfg, root, plan.beam_args, steps=CELL_STEPS)
    target = steps.has_target(steps.Context(cfg, root, shared=shared))
    n = cfg.data.num_classes
    for view in collect(root, shared):
        if not view.fold.startswith("fold"):
            continue
        fold = int(view.fold[4:])
        last = max((r for r in view.rounds if r["metrics"]), key=lambda r: r["round"])
        found = {
            "last": last["published"] / layout.SCORES,
            "merged": layout.merged_scores_dir(root, fold),
        }
        for what, d in found.items():
            tilecm.save(
                root / "study" / f"{what}_fold{fold}.npz", *tilecm.tile_confusions(d, fold, n)
            )
            if target:
                tilecm.save(
                    root / "study" / f"{what}_target_fold{fold}.npz",
                    *tilecm.target_tile_confusions(d, n),
                )


RUNNERS = {"data": run_data, "r0": run_r0, "cell": run_cell}


def run_job(root: str | Path, job_id: str) -> None:
    """Run one job of the plan in `root` and write its done marker."""
    plan = Plan.load(root)
    job = plan.job(job_id)
    started = time.time()
    log.info("study job %s (%s) starts", job.id, job.kind)
    RUNNERS[job.kind](plan, job)
    storage.mkdir(marker(root, job.id).parent)
    artifacts.write_json(
        marker(root, job.id),
        {
            "job": job.id,
            "fingerprint": job.fingerprint,
            "seconds": round(time.time() - started, 1),
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        },
    )
    log.info("study job %s done in %.1f s", job.id, time.time() - started)


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent (the study runner) dies."""
    try:
        import ctypes
        import signal

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() == 1:  # the parent is gone already
            os._exit(1)
    except OSError:
        pass


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) != 2:
        print("usage: python -m reseg.study.worker STUDY_ROOT JOB_ID", file=sys.stderr)
        return 2
    _die_with_parent()
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        force=True,  # a library's import may have configured the root logger already
    )
    quiet.configure(verbose=False)
    try:
        run_job(argv[0], argv[1])
    except ResegError as e:
        log.error("study job %s failed: %s", argv[1], e)
        return e.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
