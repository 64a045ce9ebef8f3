"""One writer per root in a bucket (moto's S3 server on loopback): the lease object.

Created by a conditional put (`If-None-Match: *`), renewed by a heartbeat with puts
conditional on the last version (`If-Match`), taken over when expired; real processes.
"""

from __future__ import annotations

import json
import signal
import socket
import time

import pytest

from reseg import artifacts, layout, storage
from reseg.artifacts import Holder, TileSet
from reseg.artifacts.lease import try_acquire
from tests.lease_helpers import config_file, reseg, start, start_holder


def test_the_store_decides_the_conditional_puts(s3_bucket):
    f = storage.path(f"{s3_bucket}/root/{layout.LEASE}")
    assert storage.put_new(f, b"first")
    assert not storage.put_new(f, b"second"), "If-None-Match: * must refuse an existing object"
    data, version = storage.read_object(f)
    assert data == b"first"
    assert storage.put_if(f, b"third", version)
    assert not storage.put_if(f, b"fourth", version), "If-Match must refuse an older version"
    assert storage.read_object(f)[0] == b"third"


def test_reseg_tile_beside_a_holder_is_one_line_and_exit_11(s3_bucket, demo_config, tmp_path):
    root = f"{s3_bucket}/runs/a"
    holder = start_holder(root, 120)
    try:
        out = reseg("tile", str(config_file(demo_config, tmp_path)), "--root", root)
    finally:
        holder.kill()
        holder.wait()
    assert out.returncode == 11, out.stderr[-2000:]
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr[-2000:]
    assert f"{root}: another run writes this root (host {socket.gethostname()}, " in lines[0]
    assert f"pid {holder.pid}, since " in lines[0] and "unless renewed" in lines[0]
    assert not storage.path(layout.tiles_dir(root)).exists()


def test_the_heartbeat_keeps_a_lease_past_its_lifetime(s3_bucket, monkeypatch):
    monkeypatch.setenv("RESEG_LEASE_SECONDS", "1.5")
    root = f"{s3_bucket}/runs/b"
    with artifacts.hold(root) as lease:
        first = lease.holder.expires
        time.sleep(4)  # more than two lifetimes: only renewals keep it
        now = try_acquire(root)
        assert isinstance(now, Holder) and now.token == lease.holder.token
        assert now.expires > first + 2 and not now.expired()
    assert not storage.path(layout.lease_file(root)).exists()


def test_an_expired_lease_is_taken_over(s3_bucket, demo_config, tmp_path):
    root = f"{s3_bucket}/runs/c"
    stale = Holder("elsewhere", 4242, time.time() - 600, time.time() - 60, "stale")
    storage.path(layout.lease_file(root)).write_bytes(stale.to_bytes())
    out = reseg("tile", str(config_file(demo_config, tmp_path)), "--root", root)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "took over an expired lease (host elsewhere, pid 4242" in out.stderr
    assert TileSet.load(layout.tiles_dir(root)).manifest["counts"]["tiles"] > 0
    assert not storage.path(layout.lease_file(root)).exists()


def test_a_killed_runs_lease_lapses(s3_bucket):
    root = f"{s3_bucket}/runs/d"
    env = {"RESEG_LEASE_SECONDS": "3"}
    holder = start_holder(root, 600, env=env)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    left = json.loads(storage.path(layout.lease_file(root)).read_bytes())
    assert left["pid"] == holder.pid
    assert isinstance(try_acquire(root), Holder), "not expired yet: still refused"
    started = time.monotonic()
    with artifacts.hold(root, wait=30) as lease:
        waited = time.monotonic() - started
        assert lease.holder.pid != holder.pid
    assert waited < 10, f"the killed run's lease should lapse within its lifetime, took {waited}"


@pytest.mark.slow  # two runs in real processes against the bucket
def test_two_runs_started_together_leave_one_complete_result(s3_bucket, demo_config, tmp_path):
    root = f"{s3_bucket}/runs/e"
    args = ("run", str(config_file(demo_config, tmp_path)), "--root", root)
    args += ("--steps", "tile,stats")
    procs = [start(*args)]
    time.sleep(0.5)
    procs.append(start(*args))
    outs = [(p.wait(timeout=600), *p.communicate()) for p in procs]
    assert sorted(rc for rc, _, _ in outs) == [0, 11], [e[-1500:] for _, _, e in outs]
    (refused,) = [err for rc, _, err in outs if rc == 11]
    (winner,) = [p for p, (rc, _, _) in zip(procs, outs, strict=True) if rc == 0]
    assert len(refused.strip().splitlines()) == 1 and f"pid {winner.pid}, since" in refused
    tiles = TileSet.load(layout.tiles_dir(root))
    assert tiles.files and all(storage.path(f).exists() for f in tiles.files)
    assert storage.path(layout.stats_dir(root) / layout.MANIFEST).exists()
    names = storage.files_under(root)
    assert layout.LEASE not in names and not [n for n in names if ".tmp-" in n]
