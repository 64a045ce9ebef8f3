"""Object stores on loopback, started and stopped by the tests: moto's S3 server and a GCS
emulator. Credentials and endpoints go through the standard settings only (AWS_* variables,
STORAGE_EMULATOR_HOST), as a user's would."""

from __future__ import annotations

import logging
import os
import socket
import uuid

import pytest

BEAM_PROCESSES = [
    "--runner=DirectRunner",
    "--direct_num_workers=2",
    "--direct_running_mode=multi_processing",
]
"""Beam on worker processes: they share nothing with the launcher but the object store."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def s3_endpoint():
    """moto's S3 API server on 127.0.0.1, with the AWS variables a user would set for MinIO."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield env["AWS_ENDPOINT_URL"]
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    server.stop()


@pytest.fixture(scope="session")
def gcs_endpoint():
    """gcp-storage-emulator on 127.0.0.1, found through STORAGE_EMULATOR_HOST (Google's own
    setting: gcsfs and google-cloud-storage read it; reseg gives it to GDAL)."""
    from gcp_storage_emulator.server import create_server

    for name in ("gcsfs", "gcp_storage_emulator", "google"):
        logging.getLogger(name).setLevel(logging.ERROR)  # "no default credentials" per call
    port = free_port()
    server = create_server("127.0.0.1", port, in_memory=True)
    server.start()
    saved = os.environ.get("STORAGE_EMULATOR_HOST")
    os.environ["STORAGE_EMULATOR_HOST"] = f"http://127.0.0.1:{port}"
    yield os.environ["STORAGE_EMULATOR_HOST"]
    if saved is None:
        os.environ.pop("STORAGE_EMULATOR_HOST", None)
    else:
        os.environ["STORAGE_EMULATOR_HOST"] = saved
    server.stop()


@pytest.fixture
def gcs_bucket(gcs_endpoint) -> str:
    """A new, empty bucket: `gs://<name>`."""
    from reseg import storage

    name = f"reseg-{uuid.uuid4().hex[:12]}"
    storage.path(f"gs://{name}").fs.mkdir(name)
    return f"gs://{name}"


@pytest.fixture
def s3_bucket(s3_endpoint) -> str:
    """A new, empty bucket: `s3://<name>`."""
    import boto3

    name = f"reseg-{uuid.uuid4().hex[:12]}"
    boto3.client("s3").create_bucket(Bucket=name)
    return f"s3://{name}"


def upload_tree(local, uri: str) -> None:
    """Copy a local file to `uri` through reseg's storage layer."""
    from reseg import storage

    storage.upload(local, uri)


@pytest.fixture
def no_local_writes(tmp_path, monkeypatch):
    """A working folder and a shard cache that must stay as they are: returns a check."""
    work = tmp_path / "cwd"
    work.mkdir()
    cache = tmp_path / "cache"
    monkeypatch.chdir(work)
    monkeypatch.setenv("RESEG_CACHE_DIR", str(cache))

    def check() -> None:
        written = [str(p.relative_to(work)) for p in work.rglob("*")]
        assert written == [], f"written under the local working folder: {written}"

    return check
