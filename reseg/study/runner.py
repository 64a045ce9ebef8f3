"""`run_study`: plan, run the jobs in parallel worker processes, write the report.

The study opens one MLflow run; every worker's runs (round 0 trainings, TTA
scorings, the cells' pipeline runs with their nested rounds) are its children,
all in `sqlite:///<study>/mlflow.db`. A study killed at any point resumes when run
again: finished jobs are skipped by their done markers, a half-finished job
resumes from its components' staged artifacts, and the study's MLflow run,
left RUNNING by the kill, is continued. The root is a local folder or an object-store URI
(`s3://`, `gs://`); the study holds its lease while it runs (one study process per root), and
on object storage MLflow tracks only with `tracking.uri` naming a server.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from reseg import artifacts, storage, tracking
from reseg.errors import ResegError
from reseg.pipeline import PARENT_RUN_ENV
from reseg.pipeline.run import check_root
from reseg.study.config import load_study
from reseg.study.plan import Plan, build_plan, config_of
from reseg.study.report import write_study_report
from reseg.study.scheduler import Outcome, logs_dir, run_jobs, worker_env

log = logging.getLogger(__name__)


@dataclass
class StudyResult:
    plan: Plan
    outcome: Outcome
    report: Path


def study_root(root: str | Path) -> Path:
    """The study root: an absolute local folder or an object-store URI (`s3://`, `gs://`);
    the one-line error of a scheme reseg does not write."""
    storage.check_uri(root)
    return storage.resolve(root)


def plan_study(
    study_file: str | Path,
    root: str | Path,
    profile: str | None = None,
    beam_args: Sequence[str] = (),
    parallel: int | None = None,
) -> Plan:
    """Load the study and write its plan (plan.json, study.yaml, study.json) into `root`."""
    study, base = load_study(study_file, profile)
    if parallel is not None:
        study = study.model_copy(update={"parallel": parallel})
    root = study_root(root)
    storage.mkdir(root)
    if not storage.same(study_file, root / "study.yaml"):
        storage.upload(study_file, root / "study.yaml")
    artifacts.write_json(root / "study.json", study.model_dump(mode="json"))
    plan = build_plan(study, base, root, list(beam_args))
    plan.save()
    return plan


def run_study(
    study_file: str | Path,
    root: str | Path,
    profile: str | None = None,
    beam_args: Sequence[str] = (),
    parallel: int | None = None,
    report_only: bool = False,
) -> StudyResult:
    """Run (or resume) the study of `study_file` in `root`; returns the plan, outcome and report.

    The study holds the root's lease (`reseg.artifacts.hold`, as a pipeline run holds its
    root's): one study process per root, on a disk or in a bucket.

    Raises:
        LeaseError: another process runs a study in this root.
        ResegError: when jobs failed (after writing the report of what finished).
    """
    load_study(study_file, profile)  # a bad study file is reported before the root is made
    root = study_root(root)
    check_root(root)
    with artifacts.hold(root):
        plan = plan_study(study_file, root, profile, beam_args, parallel)
        outcome, report = _tracked(plan, report_only)
    log.info("study report: %s", report)
    if outcome.failed or outcome.blocked:
        raise ResegError(
            f"{len(outcome.failed)} study job(s) failed ({', '.join(outcome.failed)}) and "
            f"{len(outcome.blocked)} could not start; logs in {logs_dir(root)}. The report has "
            "what finished; run the study again to retry (finished jobs are kept)."
        )
    return StudyResult(plan, outcome, report)


def _tracked(plan: Plan, report_only: bool) -> tuple[Outcome, Path]:
    """The jobs not done yet (none with `report_only`) and the report, in the study's MLflow
    run (continued when the study was run before)."""
    study, root = plan.study, storage.path(plan.root)
    cfg = config_of(plan.groups[0].config, plan.groups[0].id)
    # an edited study gets a new run; how it runs (parallel, threads) may change on resume
    fixed = {k: v for k, v in study.items() if k not in ("parallel", "threads")}
    key = artifacts.fingerprint("study", fixed, str(root))
    started = time.time()
    with tracking.open_run(
        cfg,
        root,
        run_name=f"study {study['name']}"
        + (f" ({study['profile']})" if study.get("profile") else ""),
        tags={"reseg.step": "study", "reseg.profile": study.get("profile") or ""},
        resume_key=key,
        reopen=True,
    ) as run:
        if run.enabled:
            run.log_params({"study": fixed})
            run.set_tags({"reseg.parallel": study["parallel"]})
        outcome = Outcome() if report_only else _run_jobs(plan, run)
        report = write_study_report(plan, time.time() - started)
        if run.enabled:
            _log_results(run, root / "report")
    return outcome, report


def _run_jobs(plan: Plan, run: tracking.Run) -> Outcome:
    """The plan's jobs not done yet, `parallel` worker processes at a time."""
    study = plan.study
    threads = study["threads"] or max(1, (os.cpu_count() or 1) // study["parallel"])
    extra = {PARENT_RUN_ENV: run.run_id} if run.enabled else {}
    log.info(
        "study %s: %d cells, %d jobs, %d at a time, %d TF threads each",
        study["name"],
        len(plan.cells),
        len(plan.jobs),
        study["parallel"],
        threads,
    )
    return run_jobs(plan, study["parallel"], worker_env(threads, extra))


def _log_results(run, report_dir: Path) -> None:
    rows = json.loads((report_dir / "results.json").read_text())
    metrics = {}
    for r in rows:
        c = r["cell"]
        for what in ("r0", "last", "merged"):
            if r[what][0] is not None:
                metrics[f"{c}.{what}_miou"] = r[what][0]
        for key, d in r["comparisons"].items():
            for part in ("mean", "low", "high", "mde"):
                if d[part] is not None:
                    metrics[f"{c}.{key}_{part}"] = d[part]
    run.log_metrics(metrics)
    run.log_artifacts(report_dir, "report")
