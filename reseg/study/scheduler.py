"""Runs the plan's jobs in worker processes, at most `parallel` at a time, in dependency order.

A job whose done marker matches its fingerprint is skipped (that is how an
interrupted study resumes); a job whose dependency failed is not started. Each
worker's output goes to `<study>/logs/<job>.log` (`logs_dir`; for a root in a bucket, a local
folder whose logs are copied to `<study>/logs/` as each job ends). Workers die with the runner
(PR_SET_PDEATHSIG), and Ctrl-C terminates them.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from reseg import storage
from reseg.study.plan import Job, Plan, is_done

log = logging.getLogger(__name__)

POLL_S = 0.5
PRIORITY = {"data": 0, "r0": 1, "cell": 2}


@dataclass
class Outcome:
    """What happened to the jobs: ids done now, skipped (done before), failed, blocked."""

    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)


def worker_env(threads: int, extra: Mapping[str, str]) -> dict[str, str]:
    """The environment of a worker: TensorFlow and BLAS limited to `threads` threads."""
    env = dict(os.environ)
    env.update(
        {
            "TF_NUM_INTRAOP_THREADS": str(threads),
            "TF_NUM_INTEROP_THREADS": str(max(1, min(2, threads))),
            "OMP_NUM_THREADS": str(threads),
            "TF_CPP_MIN_LOG_LEVEL": env.get("TF_CPP_MIN_LOG_LEVEL", "2"),
            **extra,
        }
    )
    return env


def logs_dir(root: str | Path) -> Path:
    """The local folder of the workers' logs: `<study>/logs` for a study on a disk; for one on
    object storage a folder under `<cache>/mirrors/` (`RESEG_CACHE_DIR`), since a
    log grows while its job runs and an object cannot be appended to: each log is copied to
    `<study>/logs/` when its job ends (`storage.local_mirror`)."""
    return storage.local_mirror(storage.path(root) / "logs")


def worker_command(root: Path, job: Job) -> list[str]:
    """The worker process of a job: `python -m reseg.study.worker ROOT JOB`."""
    return [sys.executable, "-m", "reseg.study.worker", str(root), job.id]


def run_jobs(
    plan: Plan,
    parallel: int,
    env: Mapping[str, str],
    command: Callable[[Path, Job], list[str]] = worker_command,
) -> Outcome:
    """Run every job of `plan` not done yet, at most `parallel` at a time; returns what happened.

    `command(root, job)` is the process of a job (default `worker_command`); it must exit 0
    and write the job's done marker (`reseg.study.plan.marker`) when the job succeeded.
    """
    root = storage.path(plan.root)
    logs_dir(root).mkdir(parents=True, exist_ok=True)
    out = Outcome()
    state: dict[str, str] = {}
    for j in plan.jobs:
        if is_done(root, j):
            state[j.id] = "done"
            out.skipped.append(j.id)
    if out.skipped:
        log.info("%d of %d study jobs are done already", len(out.skipped), len(plan.jobs))
    running: dict[str, tuple[subprocess.Popen, float, object]] = {}
    try:
        while True:
            _reap(running, state, out, root)
            ready = [j for j in plan.jobs if j.id not in state and _ready(j, state)]
            ready.sort(key=lambda j: PRIORITY.get(j.kind, 9))  # stable: plan order within a kind
            for j in [j for j in plan.jobs if j.id not in state and _blocked(j, state)]:
                state[j.id] = "blocked"
                out.blocked.append(j.id)
                log.warning("study job %s not started: a job it needs failed", j.id)
            for j in ready[: max(0, parallel - len(running))]:
                running[j.id] = _start(j, root, env, command(root, j))
                state[j.id] = "running"
            if not running and not any(j.id not in state for j in plan.jobs):
                break
            time.sleep(POLL_S)
    except BaseException:
        for proc, _, _fh in running.values():
            proc.terminate()
        for proc, _, fh in running.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
            fh.close()  # type: ignore[attr-defined]
        raise
    return out


def _ready(job: Job, state: dict[str, str]) -> bool:
    return all(state.get(d) == "done" for d in job.deps)


def _blocked(job: Job, state: dict[str, str]) -> bool:
    return any(state.get(d) in ("failed", "blocked") for d in job.deps)


def _start(
    job: Job, root: Path, env: Mapping[str, str], cmd: list[str]
) -> tuple[subprocess.Popen, float, object]:
    logfile = logs_dir(root) / f"{job.id}.log"
    fh = open(logfile, "a")  # noqa: SIM115  (closed when the job ends)
    fh.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} start {job.id}\n")
    fh.flush()
    proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=dict(env))
    log.info("study job %s started (pid %d, log %s)", job.id, proc.pid, logfile)
    return proc, time.time(), fh


def _reap(running: dict, state: dict[str, str], out: Outcome, root: Path) -> None:
    for jid in list(running):
        proc, started, fh = running[jid]
        rc = proc.poll()
        if rc is None:
            continue
        fh.close()
        del running[jid]
        _keep_log(root, jid)
        out.seconds[jid] = round(time.time() - started, 1)
        if rc == 0:
            state[jid] = "done"
            out.ran.append(jid)
            log.info("study job %s done in %.0f s", jid, out.seconds[jid])
        else:
            state[jid] = "failed"
            out.failed.append(jid)
            tail = _tail(logs_dir(root) / f"{jid}.log")
            log.error("study job %s failed (exit %d); log tail:\n%s", jid, rc, tail)


def _keep_log(root: Path, jid: str) -> None:
    """Copy a finished job's log into a study root on object storage (`logs_dir`)."""
    try:
        storage.mirror_back(logs_dir(root) / f"{jid}.log", storage.path(root) / "logs")
    except Exception as e:  # the log stays in the local folder; the study goes on
        log.warning("%s: log of job %s not copied to the root (%s)", logs_dir(root), jid, e)


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
