"""Fixtures of the trainer tests: a small tiled root (synthetic scene, 9 tiles of 32 px, 3 folds)."""

from __future__ import annotations

import os

import pytest

from tests.components.trainer.tiles import write_root

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session")
def tiled(tmp_path_factory):
    """(root, scene, tiles): read-only; tests that train copy or use their own root."""
    root = tmp_path_factory.mktemp("tiled")
    scene, tiles = write_root(root)
    return root, scene, tiles


@pytest.fixture
def root(tmp_path, tiled):
    """A fresh pipeline root sharing the session's tiles and stats (symlinked, read-only)."""
    src = tiled[0]
    for name in ("tiles", "stats"):
        (tmp_path / name).symlink_to(src / name, target_is_directory=True)
    return tmp_path


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session", autouse=True)
def _mlflow_server_process(request, tmp_path_factory):
    """Start `mlflow server` as soon as the session needs one (it takes seconds to come up)."""
    if not any("mlflow_server" in item.fixturenames for item in request.session.items):
        yield None
        return
    import signal
    import subprocess
    import sys
    from pathlib import Path

    base = tmp_path_factory.mktemp("mlflow_server")
    port = free_port()
    log = open(base / "server.log", "wb")
    mlflow = Path(sys.executable).with_name("mlflow")
    proc = subprocess.Popen(
        [str(mlflow), "server", "--backend-store-uri", f"sqlite:///{base / 'mlflow.db'}",
         "--artifacts-destination", str(base / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
    )  # fmt: skip
    yield proc, f"http://127.0.0.1:{port}", base
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    log.close()


@pytest.fixture
def mlflow_server(_mlflow_server_process):
    """URL of a real `mlflow server` (sqlite store, artifacts proxied), once it answers."""
    import time
    import urllib.request

    proc, url, base = _mlflow_server_process
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(
                f"mlflow server exited with {proc.returncode}: {(base / 'server.log').read_text()[-2000:]}"
            )
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                if r.status == 200:
                    return url
        except OSError:
            time.sleep(0.5)
    pytest.fail(
        f"mlflow server did not answer within 180 s: {(base / 'server.log').read_text()[-2000:]}"
    )
