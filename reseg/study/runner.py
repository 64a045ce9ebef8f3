"""`run_study`: plan, run the jobs in parallel worker processes, write the report.

The study opens one MLflow run; every worker's runs (round 0 trainings, TTA
scorings, the cells' pipeline runs with their nested rounds) are its children,
all in `sqlite:///<study>/mlflow.db`. A study killed at any point resumes when run
again: finished jobs are skipped by their done markers, a half-finished job
resumes from its components' staged artifacts, and the study's MLflow run,
left RUNNING by the kill, is continued.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import time
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from reseg import artifacts, storage, tracking
from reseg.errors import OutputError, ResegError, check_output_folder
from reseg.pipeline import PARENT_RUN_ENV
from reseg.study.config import load_study
from reseg.study.plan import Plan, build_plan, config_of
from reseg.study.report import write_study_report
from reseg.study.scheduler import Outcome, run_jobs, worker_env

log = logging.getLogger(__name__)


@dataclass
class StudyResult:
    plan: Plan
    outcome: Outcome
    report: Path


@contextmanager
def _locked(root: Path):
    """One study process per root at a time."""
    fh = open(root / ".study.lock", "w")  # noqa: SIM115
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.close()
        raise ResegError(f"{root}: another `reseg study` is running in this root") from None
    try:
        yield
    finally:
        fcntl.flock(fh, fcntl.LOCK_UN)
        fh.close()


def study_root(root: str | Path) -> Path:
    """The study root as an absolute local folder, or the one-line error of a root that cannot
    be one: a study's workers share round 0's folders through links and write their logs and
    lock beside the plan, which object storage has no equivalent of yet."""
    storage.check_uri(root)
    if storage.is_remote(root):
        raise OutputError(
            f"{root}: a study root must be a local folder (its cells share round 0 through "
            "links, and its workers keep logs and a lock there)"
        )
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
    root.mkdir(parents=True, exist_ok=True)
    if storage.resolve(study_file) != root / "study.yaml":
        shutil.copyfile(study_file, root / "study.yaml")
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

    Raises:
        ResegError: when jobs failed (after writing the report of what finished).
    """

    load_study(study_file, profile)  # a bad study file is reported before the root is made
    root = study_root(root)
    check_output_folder(root)
    root.mkdir(parents=True, exist_ok=True)
    with _locked(root):
        plan = plan_study(study_file, root, profile, beam_args, parallel)
        study = plan.study
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
            outcome = Outcome()
            if not report_only:
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
                outcome = run_jobs(plan, study["parallel"], worker_env(threads, extra))
            report = write_study_report(plan, time.time() - started)
            if run.enabled:
                _log_results(run, root / "report")
        log.info("study report: %s", report)
        if outcome.failed or outcome.blocked:
            raise ResegError(
                f"{len(outcome.failed)} study job(s) failed ({', '.join(outcome.failed)}) and "
                f"{len(outcome.blocked)} could not start; logs in {root / 'logs'}. The report has "
                "what finished; run the study again to retry (finished jobs are kept)."
            )
        return StudyResult(plan, outcome, report)


def _log_results(run, report_dir: Path) -> None:
    import json

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
