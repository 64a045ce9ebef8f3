"""The job scheduler: parallel limit, dependency order, failures, resume by done markers."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from reseg.study.plan import Job, Plan, is_done, marker
from reseg.study.scheduler import run_jobs, worker_env

SCRIPT = r"""
import json, sys, time
root, job, fp, fail, seconds = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1", float(sys.argv[5])
start = time.time()
time.sleep(seconds)
with open(f"{root}/times.jsonl", "a") as fh:
    fh.write(json.dumps({"job": job, "start": start, "end": time.time()}) + "\n")
if fail:
    sys.exit(3)
open(f"{root}/jobs/{job}.json", "w").write(json.dumps({"fingerprint": fp}))
"""


def _plan(root: Path, jobs: list[Job]) -> Plan:
    (root / "jobs").mkdir(parents=True, exist_ok=True)
    return Plan(str(root), {}, [], 0, [], [], [], jobs, [], {})


def _command(fail: set[str], seconds: float = 1.0):
    def cmd(root: Path, job: Job) -> list[str]:
        flag = "1" if job.id in fail else "0"
        return [
            sys.executable,
            "-c",
            SCRIPT,
            str(root),
            job.id,
            job.fingerprint,
            flag,
            str(seconds),
        ]

    return cmd


def _times(root: Path) -> dict[str, dict]:
    lines = (root / "times.jsonl").read_text().splitlines()
    return {d["job"]: d for d in map(json.loads, lines)}


def _max_overlap(times: dict[str, dict]) -> int:
    events = sorted(
        [(t["start"], 1) for t in times.values()] + [(t["end"], -1) for t in times.values()]
    )
    now = best = 0
    for _, step in events:
        now += step
        best = max(best, now)
    return best


def test_at_most_parallel_jobs_run_at_once_and_dependencies_come_first(tmp_path):
    jobs = [Job("a", "data", [], {}, "fa")]
    jobs += [Job(f"b{i}", "r0", ["a"], {}, f"fb{i}") for i in range(4)]
    jobs += [Job("c", "cell", [f"b{i}" for i in range(4)], {}, "fc")]
    plan = _plan(tmp_path, jobs)
    out = run_jobs(plan, 2, worker_env(1, {}), _command(set()))
    assert sorted(out.ran) == sorted(j.id for j in jobs) and not out.failed
    t = _times(tmp_path)
    assert _max_overlap(t) == 2  # the four b jobs ran two at a time, never three
    assert all(t["a"]["end"] <= t[f"b{i}"]["start"] for i in range(4))
    assert all(t[f"b{i}"]["end"] <= t["c"]["start"] for i in range(4))
    assert all(is_done(tmp_path, j) for j in jobs)


def test_a_failed_job_blocks_its_dependents_only_and_a_rerun_skips_done_jobs(tmp_path):
    jobs = [
        Job("a", "data", [], {}, "fa"),
        Job("b", "r0", ["a"], {}, "fb"),
        Job("c", "cell", ["b"], {}, "fc"),
        Job("d", "r0", ["a"], {}, "fd"),
    ]
    plan = _plan(tmp_path, jobs)
    out = run_jobs(plan, 2, worker_env(1, {}), _command({"b"}, 0.2))
    assert out.failed == ["b"] and out.blocked == ["c"] and sorted(out.ran) == ["a", "d"]
    assert "start b" in (tmp_path / "logs" / "b.log").read_text()
    (tmp_path / "times.jsonl").unlink()
    again = run_jobs(plan, 2, worker_env(1, {}), _command(set(), 0.2))
    assert sorted(again.skipped) == ["a", "d"] and sorted(again.ran) == ["b", "c"]
    assert set(_times(tmp_path)) == {"b", "c"}  # a and d did not run again


def test_a_changed_job_fingerprint_runs_the_job_again(tmp_path):
    plan = _plan(tmp_path, [Job("a", "data", [], {}, "one")])
    run_jobs(plan, 1, worker_env(1, {}), _command(set(), 0.1))
    assert json.loads(marker(tmp_path, "a").read_text())["fingerprint"] == "one"
    plan.jobs[0].fingerprint = "two"
    out = run_jobs(plan, 1, worker_env(1, {}), _command(set(), 0.1))
    assert out.ran == ["a"] and is_done(tmp_path, plan.jobs[0])


def test_worker_env_limits_threads():
    env = worker_env(3, {"X": "1"})
    assert env["TF_NUM_INTRAOP_THREADS"] == "3" and env["OMP_NUM_THREADS"] == "3"
    assert env["TF_NUM_INTEROP_THREADS"] == "2" and env["X"] == "1"
