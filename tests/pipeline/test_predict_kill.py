"""`reseg run --steps predict` killed with -9 while a scene is being written: the rerun
removes the scene's staging folder and nothing temporary reaches `predictions/`."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
import yaml

from reseg import layout

pytestmark = pytest.mark.slow  # real subprocesses: TF starts in each


def test_kill_9_during_the_predict_step_publishes_nothing_temporary(demo_rounds, tmp_path):
    ref_root, cfg, _ = demo_rounds
    raw = cfg.model_dump(mode="json")
    raw["predict"]["tta"] = "d4"  # eight passes: a scene long enough to be killed in
    cfg_file = tmp_path / "tiny.yaml"
    cfg_file.write_text(yaml.safe_dump(raw))
    root = tmp_path / "root"
    root.mkdir()
    for name in ("tiles", "stats", "rounds", "merged"):  # current: only predict runs
        (root / name).symlink_to(ref_root / name, target_is_directory=True)
    cmd = [sys.executable, "-m", "reseg", "run", str(cfg_file), "--root", str(root)]
    cmd += ["--steps", "predict"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not list(root.glob("predictions.tmp-*/.*.tmp-*/raw.classes.tif")):
        assert proc.poll() is None, "the predict step ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL
    (left,) = root.glob("predictions.tmp-*/.*.tmp-*")
    assert not layout.predictions_dir(root).exists()

    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"removing {left}, left by a run that did not finish" in out.stderr
    published = layout.predictions_dir(root)
    assert not [p.name for p in published.iterdir() if p.name.startswith(".")]
    assert (published / "manifest.json").exists() and not list(root.glob("predictions.tmp-*"))
