"""`reseg train` as users run it: kill -9 and resume, two real workers, a real MLflow server."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from reseg import artifacts, layout
from tests.components.trainer.conftest import free_port
from tests.components.trainer.tiles import checkpoint_epoch, config_dict, write_root

UNET = {"name": "unet", "params": {"depth": 2, "base_filters": 4}}

pytestmark = pytest.mark.slow  # real subprocesses: TF starts in each


def _write_config(root: Path, **sections) -> Path:
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(config_dict(root, **sections)))
    return path


def _reseg(*args: str, env: dict | None = None, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "reseg", *args],
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **kwargs,
    )


def _client(uri):
    from mlflow import MlflowClient

    return MlflowClient(uri)


def test_kill_9_during_training_and_rerun_continues_from_the_last_complete_epoch(root):
    cfg = _write_config(root, model=UNET, train={"epochs": 6, "steps_per_epoch": 2})
    args = ("train", str(cfg), "--root", str(root), "--fold", "0")
    model_dir = layout.model_dir(root, 0, 0)
    first = _reseg(*args)
    deadline = time.monotonic() + 240
    while checkpoint_epoch(model_dir) < 1:
        assert first.poll() is None, (
            f"training ended before it could be killed:\n{first.stdout.read()}"
        )
        assert time.monotonic() < deadline, "no checkpoint within 240 s"
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    assert first.wait(timeout=30) == -signal.SIGKILL
    killed_at = checkpoint_epoch(model_dir)
    assert 1 <= killed_at < 6 and not model_dir.exists()

    second = _reseg(*args)
    out, _ = second.communicate(timeout=300)
    assert second.returncode == 0, out
    resumed = int(re.search(r"resumed from the checkpoint of epoch (\d+)", out).group(1))
    assert resumed >= killed_at
    assert f"epoch {resumed + 1}/6" in out and "epoch 1/6" not in out  # continued, not restarted
    history = json.loads((model_dir / "history.json").read_text())
    assert [h["epoch"] for h in history] == list(range(1, 7))
    manifest = artifacts.read_manifest(model_dir)
    assert manifest["resumed_from_epoch"] == resumed
    # the MLflow run of the killed process is continued and ends FINISHED with every epoch
    client = _client(layout.tracking_uri(root))
    (run,) = client.search_runs([client.get_experiment_by_name("trainer-test").experiment_id])
    assert run.info.run_id == manifest["mlflow_run_id"] and run.info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val_miou")] == list(
        range(1, 7)
    )


def test_two_workers_on_localhost_train_in_sync_and_only_the_chief_writes(root, tmp_path):
    cfg = _write_config(root, model=UNET, train={"epochs": 1, "batch_size": 4})
    cluster = {"worker": [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]}
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    procs = [
        _reseg(
            "train", str(cfg), "--root", str(root), "--fold", "0",
            env={"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}}),
                 "TMPDIR": str(scratch)},
        )
        for i in range(2)
    ]  # fmt: skip
    outs = []
    try:
        for p in procs:
            outs.append(p.communicate(timeout=300)[0])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert [p.returncode for p in procs] == [0, 0], "\n\n".join(outs)
    assert "(chief)" in outs[0] and "(chief)" not in outs[1]
    digests = [re.search(r"weights digest (\w+) \(worker (\d)\)", o).groups() for o in outs]
    assert digests[0][0] == digests[1][0] and [d[1] for d in digests] == [
        "0",
        "1",
    ]  # identical weights

    model_dir = layout.model_dir(root, 0, 0)
    manifest = artifacts.read_manifest(model_dir)
    assert manifest["distribute"] == {"strategy": "multi_worker", "replicas": 2, "workers": 2}
    assert manifest["weights_digest"] == digests[0][0]
    assert (model_dir / "model.keras").is_file()
    assert not list(model_dir.parent.glob("model.tmp-*"))
    assert "published" in outs[0] and "published" not in outs[1]
    assert list(scratch.iterdir()) == []  # the worker's private directory is gone
    client = _client(layout.tracking_uri(root))
    runs = client.search_runs([client.get_experiment_by_name("trainer-test").experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"  # the chief alone logs


def test_every_fold_against_a_real_mlflow_server(tmp_path, mlflow_server):
    from reseg import cli

    root = tmp_path
    write_root(root, folds=2)
    cfg = _write_config(root, folds=2, model=UNET, train={"epochs": 1, "steps_per_epoch": 1})
    rc = cli.main(
        ["train", str(cfg), "--root", str(root), "--fold", "all", "--tracking-uri", mlflow_server]
    )
    assert rc == 0
    for k in range(2):
        m = artifacts.read_manifest(layout.model_dir(root, 0, k))
        assert m["fold"] == k and m["validation_fold"] is None and m["counts"]["val_tiles"] == 0
    client = _client(mlflow_server)
    runs = client.search_runs([client.get_experiment_by_name("trainer-test").experiment_id])
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = sorted((r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id),
                      key=lambda r: r.data.params["run.fold"])  # fmt: skip
    assert [c.data.params["run.fold"] for c in children] == ["fold0", "fold1"]
    assert all(r.info.status == "FINISHED" for r in runs)
    for child in children:
        assert (
            child.data.params["model.name"] == "unet" and child.data.params["train.epochs"] == "1"
        )
        # K = 2: no validation fold (reseg.folds), so nothing to validate on
        assert {"loss", "miou"} <= set(child.data.metrics)
        assert "val_miou" not in child.data.metrics
        logged = {a.path for a in client.list_artifacts(child.info.run_id, "model")}
        assert "model/model.keras" in logged and "model/model.json" in logged
    assert not (root / "mlflow.db").exists()  # nothing went to the default store


def test_two_mirrored_replicas_take_the_same_step_as_one(tmp_path):
    """MirroredStrategy on 2 logical CPUs: the global batch is split, the loss and step are the same."""
    out = tmp_path / "mirrored.json"
    proc = subprocess.run(
        [sys.executable, "-m", "tests.components.trainer.mirrored_check", str(out)],
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(__file__).resolve().parents[3],
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert abs(result["loss"][0] - result["loss"][1]) < 1e-5
    assert result["pixels"] == [16 * 16 * 4] * 2
    assert result["moved"] > 1e-4  # the step changed the weights ...
    assert result["max_weight_diff"] < 1e-6  # ... identically with 1 and with 2 replicas
