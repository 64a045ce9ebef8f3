"""Real processes around a root's lease: a holder that sleeps, and the CLI as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

from reseg import layout, storage

HOLDER = """
import sys, time
from reseg import artifacts
with artifacts.hold(sys.argv[1]):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def config_file(cfg, folder: Path) -> Path:
    """`cfg` written as YAML into `folder` (what the CLI reads)."""
    f = folder / "config.yaml"
    f.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    return f


def reseg(*args: str, env: dict | None = None, **kw) -> subprocess.CompletedProcess:
    """`python -m reseg ARGS` in a fresh process, output captured."""
    return subprocess.run(
        [sys.executable, "-m", "reseg", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **(env or {})},
        **kw,
    )


def start(*args: str, env: dict | None = None) -> subprocess.Popen:
    """`python -m reseg ARGS` started, output captured."""
    return subprocess.Popen(
        [sys.executable, "-m", "reseg", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def start_holder(root: str | Path, seconds: float, env: dict | None = None) -> subprocess.Popen:
    """A process that holds `root`'s lease for `seconds`; returns once it holds it."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(root), str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )
    assert proc.stdout.readline().strip() == "held"
    return proc


def wait_for_lease(root: str | Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    """Return once `root`'s lease file is there (`proc` has taken the lease)."""
    deadline = time.monotonic() + timeout
    while not storage.path(layout.lease_file(root)).exists():
        assert proc.poll() is None, "the writer ended before it took the lease"
        assert time.monotonic() < deadline, "the writer did not take the lease"
        time.sleep(0.05)
