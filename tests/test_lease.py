"""One writer per root on a disk: the lease (`reseg.artifacts.lease`), held by real processes.

The lease is an flock on `<root>/lease.json`: a second writer is refused with one line
naming the holder (exit 11) or waits with `--wait`; a lease file left by a killed run is
taken over at once; two `reseg run` started together leave one run's complete results.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time

import pytest

from reseg import artifacts, layout
from reseg.artifacts import TileSet
from reseg.errors import LeaseError
from tests.lease_helpers import config_file, reseg, start, start_holder


def test_a_second_writer_in_the_same_process_is_refused_naming_the_holder(tmp_path):
    root = tmp_path / "root"
    with artifacts.hold(root) as lease:
        record = json.loads(layout.lease_file(root).read_text())
        assert record["pid"] == lease.holder.pid and record["host"] == socket.gethostname()
        with pytest.raises(LeaseError, match=rf"pid {record['pid']}, since 20\d\d-") as err:
            with artifacts.hold(root):
                pass
        assert err.value.exit_code == 11 and "--wait" in str(err.value)
    assert not root.exists(), "a root the lease created and nothing else wrote is removed"
    with artifacts.hold(root):  # released: free again
        pass


def test_reseg_tile_beside_a_holder_is_one_line_and_exit_11(demo_config, tmp_path):
    root = tmp_path / "root"
    holder = start_holder(root, 60)
    try:
        out = reseg("tile", str(config_file(demo_config, tmp_path)), "--root", str(root))
    finally:
        holder.kill()
        holder.wait()
    assert out.returncode == 11, out.stderr[-2000:]
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr[-2000:]
    assert lines[0].startswith(f"reseg tile: error: {root}: another run writes this root")
    assert f"host {socket.gethostname()}, pid {holder.pid}, since " in lines[0]
    assert not layout.tiles_dir(root).exists() and not list(root.glob("tiles.tmp-*"))


def test_a_killed_holders_lease_file_is_taken_over_at_once(tmp_path):
    root = tmp_path / "root"
    holder = start_holder(root, 600)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    left = json.loads(layout.lease_file(root).read_text())
    assert left["pid"] == holder.pid  # the killed run's record is still there ...
    started = time.monotonic()
    with artifacts.hold(root) as lease:  # ... but its lock died with it
        assert time.monotonic() - started < 5
        assert json.loads(layout.lease_file(root).read_text())["token"] == lease.holder.token
    assert not layout.lease_file(root).exists()


def test_wait_takes_the_lease_when_the_holder_ends(demo_config, tmp_path):
    root = tmp_path / "root"
    held, done = threading.Event(), threading.Event()

    def hold_until_done() -> None:
        with artifacts.hold(root):
            held.set()
            done.wait(120)

    t = threading.Thread(target=hold_until_done)
    t.start()
    held.wait()
    proc = start("tile", str(config_file(demo_config, tmp_path)), "--root", str(root), "--wait")
    first = proc.stderr.readline()  # the waiting writer says whom it waits for, then waits
    assert "waiting for the run that writes this root" in first, first
    assert f"pid {os.getpid()}" in first
    time.sleep(1.5)
    assert proc.poll() is None and not layout.tiles_dir(root).exists()
    done.set()
    t.join()
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-2000:]
    assert TileSet.load(layout.tiles_dir(root)).manifest["counts"]["tiles"] > 0


@pytest.mark.slow  # two pipelines in real processes
def test_two_runs_started_together_leave_one_complete_result(demo_config, tmp_path):
    root = tmp_path / "root"
    cfg = config_file(demo_config, tmp_path)
    args = ("run", str(cfg), "--root", str(root), "--steps", "tile,stats")
    procs = [start(*args)]
    time.sleep(0.5)  # as a scheduler might: half a second apart
    procs.append(start(*args))
    outs = [(p.wait(timeout=600), *p.communicate()) for p in procs]
    codes = sorted(rc for rc, _, _ in outs)
    assert codes == [0, 11], [err[-1500:] for _, _, err in outs]
    (refused,) = [err for rc, _, err in outs if rc == 11]
    (winner,) = [p for p, (rc, _, _) in zip(procs, outs, strict=True) if rc == 0]
    assert len(refused.strip().splitlines()) == 1
    assert f"pid {winner.pid}, since" in refused
    tiles = TileSet.load(layout.tiles_dir(root))
    assert all(f.stat().st_size > 0 for f in tiles.files)
    assert (layout.stats_dir(root) / layout.MANIFEST).exists()
    assert not layout.lease_file(root).exists()
    assert not list(root.glob("*.tmp-*"))


@pytest.mark.slow  # `reseg predict` processes, each importing TensorFlow
def test_two_predictions_into_one_out_are_refused_or_serialised(cnn_dir, tmp_path):
    from tests.components.predictor.helpers import smooth_image
    from tests.rasters import write_raster

    scene = write_raster(tmp_path / "b.tif", smooth_image(4, 64, 96, seed=4))
    out = tmp_path / "out"
    holder = start_holder(out, 600)  # another prediction into --out, with its live staging
    live = out / ".a.tmp-0123456789ab"
    live.mkdir()
    (live / "raw.classes.tif").write_bytes(b"being written")
    args = ("predict", "--model", str(cnn_dir), str(scene), "--out", str(out), "--no-progress")
    try:
        refused = reseg(*args)
        assert refused.returncode == 11, refused.stderr[-2000:]
        assert f"pid {holder.pid}, since" in refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1
        waiting = start(*args, "--wait")
        first = waiting.stderr.readline()
        assert "waiting for the run that writes this root" in first, first
    finally:
        holder.kill()  # the other prediction ends (killed: its lock goes with it)
        holder.wait()
    _, err = waiting.communicate(timeout=300)
    assert waiting.returncode == 0, err[-2000:]
    assert (out / "b.tif").exists()
    assert (live / "raw.classes.tif").read_bytes() == b"being written", "not touched while held"
