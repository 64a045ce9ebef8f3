"""The object store going away mid-step, throttling, and an endpoint that does not resolve:
one line naming the root, exit code 12, nothing unfinished published, and a rerun after the
store is back that resumes and equals an uninterrupted run.

The store's faults are real: the CLI runs in a process of its own and talks to moto's S3
server through a TCP relay (`tests.storage.faults.Relay`) that resets every connection and
stops listening when a chosen request arrives, and listens again later; moto keeps the bucket
meanwhile, as a store that comes back does. The cut lands at the same request on every run.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid

import pytest

from reseg import layout, storage
from reseg.cli import main
from reseg.errors import StoreError, store_unavailable, user_error
from tests.lease_helpers import config_file
from tests.storage.faults import Relay

THREADS = [
    "--runner=DirectRunner",
    "--direct_num_workers=2",
    "--direct_running_mode=multi_threading",
]
FAST_RETRIES = {"AWS_MAX_ATTEMPTS": "2", "AWS_RETRY_MODE": "standard"}
"""The clients' own retry settings (docs: Reliability), lowered so a dead store fails fast."""


@pytest.fixture(scope="module")
def relay(s3_endpoint):
    r = Relay(int(s3_endpoint.rsplit(":", 1)[1]))
    yield r
    r.close()


@pytest.fixture
def bucket(s3_endpoint):
    import boto3

    name = f"reseg-{uuid.uuid4().hex[:12]}"
    boto3.client("s3").create_bucket(Bucket=name)
    return name


RECORD = re.compile(r"^\d\d:\d\d:\d\d (INFO|WARNING) reseg[.:]")


def user_env() -> dict[str, str]:
    """The environment as a user's shell has it (tests set TF_CPP_MIN_LOG_LEVEL for pytest)."""
    return {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}


def reseg(relay: Relay, *args: str, **env: str) -> subprocess.CompletedProcess:
    """`python -m reseg ARGS` whose storage clients go through the relay."""
    return subprocess.run(
        [sys.executable, "-m", "reseg", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**user_env(), **FAST_RETRIES, "AWS_ENDPOINT_URL": relay.url, **env},
    )


@pytest.fixture
def rerun(relay, monkeypatch):
    """`reseg ARGS` in this process (TensorFlow is imported already), through the relay: the
    rerun once the store is back. Returns the exit code."""
    import s3fs

    def run(*args: str) -> int:
        for k, v in {**FAST_RETRIES, "AWS_ENDPOINT_URL": relay.url}.items():
            monkeypatch.setenv(k, v)
        s3fs.S3FileSystem.clear_instance_cache()  # clients are cached per settings
        return main(list(args))

    yield run
    s3fs.S3FileSystem.clear_instance_cache()


def one_line(out: subprocess.CompletedProcess) -> str:
    lines = out.stderr.strip().splitlines()
    errors = [x for x in lines if not RECORD.match(x)]  # all but reseg's progress records
    assert len(errors) == 1, out.stderr[-3000:]
    assert "Traceback" not in out.stderr
    return errors[0]


def shards(root: str) -> dict[str, bytes]:
    tiles = storage.path(layout.tiles_dir(root))
    return {
        name: (tiles / name).read_bytes()
        for name in storage.files_under(tiles)
        if name.endswith(".tfrecord.gz")
    }


def test_the_store_cut_while_tiling_is_one_line_and_the_rerun_resumes(
    relay, bucket, demo_config, demo_root, tmp_path, rerun
):
    root = f"s3://{bucket}/root"
    # Beam's default runner, whose in-process workers print a failed bundle's traceback
    threads = demo_config.beam.model_validate({"args": THREADS})
    cfg = str(config_file(demo_config.model_copy(update={"beam": threads}), tmp_path))
    # in the Beam job, when a worker starts the third of the 5 shards: each thread writes a
    # shard's summary (and waits for the store's answer) before it starts its next shard, so
    # at least one shard is complete
    relay.cut_on(f"PUT /{bucket}/root/tiles.tmp-", nth=5)
    cut = reseg(relay, "tile", cfg, "--root", root, RESEG_LEASE_SECONDS="2")
    relay.restore()
    assert cut.returncode == 12, cut.stderr[-3000:]
    line = one_line(cut)
    assert line.startswith(f"reseg tile: error: {root}: object store unreachable at {relay.url}")
    assert "run again when it is back" in line
    assert not storage.path(f"{layout.tiles_dir(root)}/manifest.json").exists()

    done = {
        name.split("/")[-1][: -len(".json")]
        for name in storage.files_under(root)
        if ".tmp-" in name and name.endswith(".json") and "/part-" in name
    }
    assert 1 <= len(done) < 5, done
    start = len(relay.requests)
    # the failed run could not remove its lease from the store: it lapses (2 s here)
    assert rerun("tile", cfg, "--root", root, "--wait", "60") == 0
    assert shards(root) == {
        p.name: p.read_bytes() for p in sorted((demo_root / "tiles").glob("*.tfrecord.gz"))
    }, "the tiles differ from an uninterrupted run's"
    assert not storage.path(layout.lease_file(root)).exists()
    # resumed: the shards the first run completed before the cut were not written again
    written = [r for r in relay.requests[start:] if r.startswith(b"PUT") and b"tiles.tmp-" in r]
    assert not any(f"/{shard}.".encode() in r for r in written for shard in done)


def test_the_store_cut_while_computing_statistics(relay, bucket, demo_config, tmp_path, rerun):
    root = f"s3://{bucket}/root"
    cfg = str(config_file(demo_config, tmp_path))
    relay.cut_on(f"/{bucket}/root/stats.tmp-")
    cut = reseg(relay, "run", cfg, "--root", root, "--steps", "tile,stats", RESEG_LEASE_SECONDS="2")
    relay.restore()
    assert cut.returncode == 12, cut.stderr[-3000:]
    assert "object store unreachable" in one_line(cut)
    tiles = storage.path(layout.tiles_dir(root))
    assert (tiles / "manifest.json").exists(), "tiles were published before the cut"
    assert not storage.path(f"{layout.stats_dir(root)}/manifest.json").exists()
    shards_before = shards(root)
    start = len(relay.requests)
    assert rerun("run", cfg, "--root", root, "--steps", "tile,stats", "--wait", "60") == 0
    assert storage.path(f"{layout.stats_dir(root)}/manifest.json").exists()
    assert shards(root) == shards_before
    written = [r for r in relay.requests[start:] if r.startswith(b"PUT")]
    assert not any(b"/tiles" in r for r in written), "the published tiles were current"


def test_throttling_after_the_retries_is_one_line(relay, bucket, demo_config, tmp_path):
    root = f"s3://{bucket}/root"
    relay.throttle_on(f"PUT /{bucket}/root/tiles.tmp-")
    try:
        out = reseg(relay, "tile", str(config_file(demo_config, tmp_path)), "--root", root)
    finally:
        relay.throttle_on(None)
    assert out.returncode == 12, out.stderr[-3000:]
    line = one_line(out)
    assert f"{root}: the object store throttled the requests (SlowDown)" in line
    assert not storage.path(f"{layout.tiles_dir(root)}/manifest.json").exists()
    assert relay.throttled >= 2, "the clients retried a throttled request"


def test_gs_without_a_reachable_endpoint_fails_at_once(demo_config, tmp_path):
    cfg = str(config_file(demo_config, tmp_path))
    env = {k: v for k, v in user_env().items() if not k.lower().endswith("_proxy")}
    env["STORAGE_EMULATOR_HOST"] = "http://reseg-no-emulator.invalid:9023"  # RFC 6761: no such
    out = subprocess.run(
        [sys.executable, "-m", "reseg", "tile", cfg, "--root", "gs://reseg-none/root"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert out.returncode == 12, out.stderr[-3000:]
    (line,) = out.stderr.strip().splitlines()
    assert line.startswith(
        "reseg tile: error: gs://reseg-none/root: object store unreachable at "
        "http://reseg-no-emulator.invalid:9023 (the host name does not resolve"
    )


BEAM_TEXT = (
    "botocore.exceptions.EndpointConnectionError: Could not connect to the endpoint URL: "
    '"http://127.0.0.1:46401/b/root/tiles.tmp-6de4b870eb66/part-landsat-00001.tfrecord.gz" '
    "[while running 'Tile/WriteShards']"
)


def test_a_beam_workers_store_error_arrives_as_text_and_becomes_one_line():
    # what Beam's multi-process runner raises in the launcher for a worker's error
    err = user_error(RuntimeError(BEAM_TEXT), fallback="s3://b/root")
    assert isinstance(err, StoreError) and err.exit_code == 12
    assert str(err).startswith(
        "s3://b/root: object store unreachable at http://127.0.0.1:46401 (no connection"
    )
    throttled = RuntimeError(
        "OSError: [Errno 16] Please reduce your request rate. [while running 'Stats/Sum']"
    )
    assert "throttled" in str(store_unavailable(throttled, "s3://b/root"))
    # a local connection error (TF Serving, a socket) is not the object store's
    assert store_unavailable(ConnectionRefusedError(111, "Connection refused")) is None
    assert store_unavailable(RuntimeError("ValueError: bad value")) is None
