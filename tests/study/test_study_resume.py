"""`reseg study` end to end on a tiny study: killed with -9, resumed, reported, tracked.

One resolution, one evaluation fold, two seeds, a tiny U-Net trained for two steps, one
round, two pipeline cells (top 20% and the all-pixels baseline) and the TTA baseline, each
once per seed. The study process is killed once a cell has published its first selection;
its workers must die with it, the rerun must finish without redoing finished jobs, and a
third run must find everything done. The report carries the comparisons over the two
seeds and the seed spread.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from reseg import layout, storage
from reseg.study.report import SECTIONS

REPO = Path(__file__).resolve().parents[2]

STUDY = {
    "name": "tiny-study",
    "base": str(REPO / "examples" / "demo_landsat.yaml"),
    "overrides": {
        "model": {"name": "unet", "params": {"depth": 2, "base_filters": 4}},
        "train": {"epochs": 1, "steps_per_epoch": 2, "batch_size": 8, "shuffle_buffer": 32},
        "rounds": {"count": 1, "epochs": 1, "selection": {"percent": 20}},
    },
    "grid": {"percent": [20], "resolution": [1]},
    "baselines": {"all_pixels": True, "bottom": None, "cbst": None, "tta": True},
    "folds": [0],
    "seeds": [0, 1],
    "parallel": 2,
    "bootstrap": {"samples": 200},
}


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def _published(path: Path) -> str:
    return json.loads((path / "manifest.json").read_text())["published_at"]


def _weights(model: Path) -> list[np.ndarray]:
    """Every weight array of the saved model.keras (a zip holding model.weights.h5)."""
    import io
    import zipfile

    import h5py

    with zipfile.ZipFile(model / "model.keras") as z:
        data = z.read("model.weights.h5")
    out: list[np.ndarray] = []
    with h5py.File(io.BytesIO(data), "r") as h5:
        h5.visititems(lambda _, v: out.append(v[()]) if isinstance(v, h5py.Dataset) else None)
    return out


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_a_killed_study_resumes_and_reports_everything(demo_root, tmp_path):
    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump(STUDY))
    root = tmp_path / "root"
    data = root / "data" / "res1"
    data.mkdir(parents=True)
    for name in ("tiles", "stats"):  # the demo's tiles: same data and tiling, so current
        (data / name).symlink_to(demo_root / name, target_is_directory=True)
    cmd = [sys.executable, "-m", "reseg", "study", str(study), "--root", str(root)]

    first_log = tmp_path / "first.log"
    with open(first_log, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.time() + 900
        while time.time() < deadline and proc.poll() is None:
            if list(root.glob("cells/*/seed*/rounds/r0/fold0/selection/manifest.json")):
                break
            time.sleep(0.2)
        assert proc.poll() is None, first_log.read_text()[-3000:]
        os.kill(proc.pid, signal.SIGKILL)  # the study process only: workers must follow
        proc.wait()
    workers = [int(p) for p in re.findall(r"started \(pid (\d+)", first_log.read_text())]
    assert workers
    deadline = time.time() + 60
    while any(_alive(p) for p in workers) and time.time() < deadline:
        time.sleep(0.2)
    assert not any(_alive(p) for p in workers), "workers outlived the killed study"

    done_before = {p.name: p.read_text() for p in (root / "jobs").glob("*.json")}
    assert {"data.res1.json", "r0.res1-unet.seed0.fold0.json"} <= set(done_before)
    assert not any(n.startswith("cell.") for n in done_before)
    r0_model = root / "groups" / "res1-unet" / "seed0" / "rounds" / "r0" / "fold0" / "model"
    r0_published = _published(r0_model)

    again = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-4000:]
    assert (
        f"{len(done_before)} of " in again.stderr and "study jobs are done already" in again.stderr
    )
    assert _published(r0_model) == r0_published  # round 0 was not trained again
    for name, text in done_before.items():
        assert (root / "jobs" / name).read_text() == text, name
    cells = sorted(p.name for p in (root / "cells").iterdir())
    assert cells == ["res1-unet.all_pixels", "res1-unet.true_class.top20", "res1-unet.tta2"]
    for c in ("res1-unet.all_pixels", "res1-unet.true_class.top20"):
        for s in (0, 1):
            cell = root / "cells" / c / f"seed{s}"
            r0 = cell / "rounds" / "r0" / "fold0" / "model"
            group_r0 = root / "groups" / "res1-unet" / f"seed{s}" / "rounds" / "r0" / "fold0"
            # round 0 is the group's, read through the cell's shared.json (no link, no copy)
            assert not r0.exists() and (group_r0 / "model" / "manifest.json").exists()
            assert storage.same(layout.Shared.load(cell).round0, group_r0.parent.parent.parent)
            assert (cell / "merged" / "fold0" / "eval" / "metrics.json").exists()
            train = yaml.safe_load((cell / "cell.yaml").read_text())["train"]
            assert train["seed"] == s and train["deterministic"] is True
    # the seeds are different trainings: round 0's weights differ
    seed1 = root / "groups" / "res1-unet" / "seed1" / "rounds" / "r0" / "fold0" / "model"
    a, b = _weights(r0_model), _weights(seed1)
    assert len(a) == len(b) > 0 and any(not np.array_equal(x, y) for x, y in zip(a, b, strict=True))

    _check_report(root)
    _check_mlflow(root)

    merged = root / "cells" / "res1-unet.true_class.top20" / "seed1" / "merged" / "fold0" / "eval"
    stamp = _published(merged)
    third = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert third.returncode == 0, third.stderr[-3000:]
    assert "study jobs: 0 run, 7 already done" in third.stdout
    assert _published(merged) == stamp


def _check_report(root: Path) -> None:
    report = root / "report"
    md = (report / "report.md").read_text()
    for section in SECTIONS:
        assert f"## {section}" in md, section
    for png in re.findall(r"!\[[^]]*\]\(([^)]+)\)", md):
        assert (report / png).is_file(), png
    assert "rounds_res1-unet.png" in md and "paired_differences.png" in md
    assert "hist_res1-unet_true_class.png" in md and "jaccard_res1-unet.png" in md
    html = (report / "report.html").read_text()
    assert "<table>" in html and "<img" in html
    rows = {r["cell"]: r for r in json.loads((report / "results.json").read_text())}
    assert len(rows) == 3 and all(r["complete"] for r in rows.values())
    for r in rows.values():
        d = r["delta_merged_tiles"]
        assert d["low"] <= d["mean"] <= d["high"] and d["n"] > 0
        assert set(r["per_run"]) == {"seed0.fold0", "seed1.fold0"}
        c = r["comparisons"]["vs_r0"]  # over the two seeds of fold 0
        assert c["n"] == 2 and c["low"] <= c["mean"] <= c["high"] and c["mde"] >= 0
        assert c["verdict"].startswith("no verdict")
    top = rows["res1-unet.true_class.top20"]
    assert top["per_run"]["seed1.fold0"]["jaccard"]["1"] is not None
    assert set(top["comparisons"]) == {
        "vs_r0",
        "last_vs_r0",
        "vs_all_pixels",
        "last_vs_all_pixels",
        "vs_tta",
        "merged_vs_last",
    }
    spread = md.split("## Seed spread")[1].split("## ")[0]
    assert "| res1-unet | 0 |" in spread and "| 2 |" in spread
    # one evaluation fold: the seeds × folds design cannot give a verdict, and says so
    assert "## Where the rounds help" in md and "No verdict: too few evaluation folds." in md
    assert "**merged − round 0**" not in md
    assert "| res1-unet | round 0 |" in (report / "results.md").read_text()


def _check_mlflow(root: Path) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{root.resolve()}/mlflow.db")
    exp = client.get_experiment_by_name("tiny-study")
    runs = client.search_runs([exp.experiment_id], max_results=500)
    studies = [r for r in runs if r.data.tags.get("reseg.step") == "study"]
    assert len(studies) == 1 and studies[0].info.status == "FINISHED"
    sid = studies[0].info.run_id
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == sid]
    steps = sorted(r.data.tags.get("reseg.step") for r in children)
    assert steps.count("pipeline") == 4 and steps.count("round0") == 2 and steps.count("tta") == 2
    pipelines = {r.info.run_id for r in children if r.data.tags.get("reseg.step") == "pipeline"}
    rounds = [r for r in runs if r.data.tags.get("mlflow.parentRunId") in pipelines]
    assert len(rounds) >= 4  # round 1 of each pipeline (round 0 is the group's, linked)
    assert any(k.endswith(".vs_r0_mean") for k in studies[0].data.metrics)
