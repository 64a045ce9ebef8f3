"""MLflow with a root in a bucket: a real `mlflow server` on loopback whose artifact store is in
the same bucket (`--artifacts-destination s3://...`), found by the server through the same
AWS variables."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from reseg import storage, tracking
from reseg.config import parse_config
from tests.rasters import config_dict, scene
from tests.storage.conftest import free_port


@pytest.fixture
def mlflow_on_bucket(s3_bucket, tmp_path):
    port = free_port()
    log = open(tmp_path / "server.log", "wb")
    mlflow = Path(sys.executable).with_name("mlflow")
    proc = subprocess.Popen(
        [str(mlflow), "server", "--backend-store-uri", f"sqlite:///{tmp_path / 'mlflow.db'}",
         "--artifacts-destination", f"{s3_bucket}/mlartifacts", "--host", "127.0.0.1",
         "--port", str(port), "--workers", "1"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while True:
        assert proc.poll() is None, (tmp_path / "server.log").read_text()[-2000:]
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            assert time.monotonic() < deadline, "mlflow server did not answer"
            time.sleep(0.5)
    yield url
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    log.close()


def test_artifacts_of_a_bucket_root_land_in_the_same_bucket(s3_bucket, mlflow_on_bucket, tmp_path):
    image, labels = scene(tmp_path, seed=1)
    raw = config_dict(image, labels)
    raw["tracking"] = {"enabled": True, "uri": mlflow_on_bucket}
    cfg = parse_config(raw)
    root = f"{s3_bucket}/runs/r"
    curves = storage.path(f"{root}/rounds/r0/fold0/model/curves.png")
    curves.write_bytes(b"\x89PNG not really")
    with tracking.open_run(cfg, root, run_name="bucket") as run:
        assert run.enabled
        run.log_artifact(curves)  # a file in the bucket, logged through a local copy
        run.log_artifacts(curves.parent, "model")
        run_id = run.run_id
    stored = storage.files_under(f"{s3_bucket}/mlartifacts")
    assert any(n.endswith(f"{run_id}/artifacts/curves.png") for n in stored), stored
    assert any(n.endswith(f"{run_id}/artifacts/model/curves.png") for n in stored), stored


def test_a_bucket_root_without_a_tracking_server_is_not_tracked(s3_bucket, tmp_path, caplog):
    image, labels = scene(tmp_path, seed=1)
    raw = config_dict(image, labels)
    raw["tracking"] = {"enabled": True}
    with tracking.open_run(parse_config(raw), f"{s3_bucket}/r", run_name="x") as run:
        assert not run.enabled
    assert "set tracking.uri to a tracking server" in caplog.text
    assert storage.files_under(s3_bucket) == []
