"""`train.deterministic: true`: a run killed with -9 at two epochs and resumed twice ends
with the same weights and per-epoch metrics as a run never interrupted (real subprocesses)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from reseg import artifacts, layout
from tests.components.trainer.tiles import checkpoint_epoch, config_dict

pytestmark = pytest.mark.slow  # real subprocesses: TF starts in each

EPOCHS = 6
SECTIONS = {
    "model": {"name": "unet", "params": {"depth": 2, "base_filters": 4, "dropout": 0.2}},
    "train": {
        "epochs": EPOCHS,
        "steps_per_epoch": 3,
        "deterministic": True,
        "shuffle_buffer": 16,
        "augment": {"enabled": True, "rotation": 10, "noise_std": 0.05},
    },
    "tracking": {"enabled": False},
}


def _start(root: Path) -> subprocess.Popen:
    cfg = root / "config.yaml"
    cfg.write_text(yaml.safe_dump(config_dict(root, **SECTIONS)))
    return subprocess.Popen(
        [sys.executable, "-m", "reseg", "train", str(cfg), "--root", str(root), "--fold", "0"],
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _kill_after(root: Path, epoch: int) -> int:
    """Start training and kill -9 it once the checkpoint of `epoch` is written."""
    model_dir = layout.model_dir(root, 0, 0)
    proc = _start(root)
    deadline = time.monotonic() + 240
    while checkpoint_epoch(model_dir) < epoch:
        assert proc.poll() is None, f"training ended before the kill:\n{proc.stdout.read()}"
        assert time.monotonic() < deadline, "no checkpoint within 240 s"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL
    killed = checkpoint_epoch(model_dir)
    assert killed < EPOCHS and not model_dir.exists()
    return killed


def _finish(root: Path) -> tuple[str, list[dict], str]:
    proc = _start(root)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    model_dir = layout.model_dir(root, 0, 0)
    manifest = artifacts.read_manifest(model_dir)
    keep = ("epoch", "loss", "miou", "val_loss", "val_miou", "lr", "best")
    history = [
        {k: h[k] for k in keep} for h in json.loads((model_dir / "history.json").read_text())
    ]
    return manifest["weights_digest"], history, out


def _root(tmp_path: Path, tiled, name: str) -> Path:
    root = tmp_path / name
    root.mkdir()
    for n in ("tiles", "stats"):
        (root / n).symlink_to(tiled[0] / n, target_is_directory=True)
    return root


def test_killed_twice_and_resumed_equals_uninterrupted(tmp_path, tiled):
    straight = _root(tmp_path, tiled, "straight")
    digest, history, _ = _finish(straight)
    assert [h["epoch"] for h in history] == list(range(1, EPOCHS + 1))

    killed = _root(tmp_path, tiled, "killed")
    first = _kill_after(killed, 2)
    second = _kill_after(killed, first + 2)
    assert 2 <= first < second < EPOCHS
    digest_k, history_k, out = _finish(killed)
    assert f"resumed from the checkpoint of epoch {second}" in out
    assert history_k == history  # loss, mIoU, validation and lr of every epoch, exactly
    assert digest_k == digest  # every weight, bit for bit
