"""A study on an `s3://` root (moto's server on loopback) gives the figures of the same study on
a local root, and a local study root holds no symbolic link: cells and groups read their data
and round 0 from the roots named in their `shared.json` (`reseg.layout.Shared`).

One resolution, one seed, evaluation folds 0 and 1, a tiny U-Net trained for two steps, one
round of the top 20% and the TTA baseline: data, two round-0 jobs and one cell job per root.
The demo's tiles and statistics are copied into each study's data root (the same data and
tiling, so current: the data job skips them).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest
import yaml

from reseg import artifacts, layout, storage
from reseg.config import load_config
from reseg.errors import LeaseError
from reseg.pipeline import sources, steps
from reseg.study.runner import run_study

REPO = Path(__file__).resolve().parents[2]

STUDY = {
    "name": "tiny-s3-study",
    "base": str(REPO / "examples" / "demo_landsat.yaml"),
    "overrides": {
        "model": {"name": "unet", "params": {"depth": 2, "base_filters": 4}},
        "train": {"epochs": 1, "steps_per_epoch": 2, "batch_size": 8, "shuffle_buffer": 32},
        "rounds": {"count": 1, "epochs": 1, "selection": {"percent": 20}},
        "tracking": {"enabled": False},
    },
    "grid": {"percent": [20], "resolution": [1]},
    "baselines": {"all_pixels": False, "bottom": None, "cbst": None, "tta": True},
    "folds": [0, 1],
    "seeds": [0],
    "parallel": 2,
    "bootstrap": {"samples": 100},
}

OUTPUTS = ("report/results.json", "report/results.md")
"""The study's figures (no timings, no paths)."""


def _study(demo_root: Path, root: str, study_file: Path) -> float:
    """Copy the demo's tiles and stats into the study's data root, run it; its seconds."""
    data = storage.path(root) / "data" / "res1"
    for name in ("tiles", "stats"):
        if storage.is_remote(root):
            storage.upload(demo_root / name, data / name)
        else:
            shutil.copytree(demo_root / name, data / name)
    started = time.monotonic()
    run_study(study_file, root)
    return time.monotonic() - started


def _links(root: Path) -> list[str]:
    out = []
    for here, dirs, files in os.walk(root):
        out += [
            os.path.join(here, n) for n in dirs + files if os.path.islink(os.path.join(here, n))
        ]
    return out


@pytest.mark.slow  # two tiny studies, one of them in a bucket
def test_a_study_on_a_bucket_equals_the_local_study_and_nothing_is_a_link(
    demo_root, s3_bucket, tmp_path, monkeypatch
):
    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump(STUDY))
    local = tmp_path / "local"
    local_s = _study(demo_root, str(local), study)

    work, cache = tmp_path / "cwd", tmp_path / "cache"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("RESEG_CACHE_DIR", str(cache))
    remote = f"{s3_bucket}/studies/tiny"
    remote_s = _study(demo_root, remote, study)
    print(f"tiny study: local root {local_s:.1f} s, s3 root {remote_s:.1f} s")
    assert list(work.iterdir()) == []  # no ./s3:/... folder

    for name in OUTPUTS:
        a = (local / name).read_text()
        b = (storage.path(remote) / name).read_text()
        assert (json.loads(a) if name.endswith(".json") else a) == (
            json.loads(b) if name.endswith(".json") else b
        ), name
    rows = json.loads((local / OUTPUTS[0]).read_text())
    assert {r["cell"] for r in rows} == {"res1-unet.true_class.top20", "res1-unet.tta2"}
    assert all(r["complete"] and r["merged"][0] is not None for r in rows)

    # everything of the study lives in the bucket: plan, markers, confusions, cells, report
    r = storage.path(remote)
    for rel in (
        "plan.json",
        "study.yaml",
        "jobs/cell.res1-unet.true_class.top20.seed0.json",
        "logs/cell.res1-unet.true_class.top20.seed0.log",
        "groups/res1-unet/seed0/study/r0_fold1.npz",
        "cells/res1-unet.true_class.top20/seed0/cell.yaml",
        "cells/res1-unet.true_class.top20/seed0/study/merged_fold0.npz",
        "cells/res1-unet.tta2/seed0/study/merged_fold1.npz",
        "report/report.html",
    ):
        assert (r / rel).exists(), rel
    assert not (r / layout.LEASE).exists()  # released

    # round 0 is read from the group's root, never copied or linked into a cell's
    for root in (local, r):
        cell = root / "cells" / "res1-unet.true_class.top20" / "seed0"
        group = root / "groups" / "res1-unet" / "seed0"
        shared = layout.Shared.load(cell)
        assert storage.same(shared.round0, group) and storage.same(
            shared.data, root / "data" / "res1"
        )
        assert not (layout.round_dir(cell, 0, 0) / layout.MODEL).exists()
        assert (layout.selection_dir(cell, 0, 0) / layout.MANIFEST).exists()
        assert (layout.model_dir(group, 0, 0) / layout.MANIFEST).exists()
        assert not (group / "tiles").exists() and not (cell / "tiles").exists()
    assert _links(local) == []
    # an export's source on a cell root: round 0 is the group's, later rounds and merges the cell's
    cell = local / "cells" / "res1-unet.true_class.top20" / "seed0"
    group = local / "groups" / "res1-unet" / "seed0"
    cfg = load_config(cell / "cell.yaml")
    assert sources.resolve(cfg, cell, "r0", 0)[2] == layout.model_dir(group, 0, 0)
    assert sources.resolve(cfg, cell, "last", 0)[:2] == ("r1", 0)
    assert sources.resolve(cfg, cell, "merged", 1)[2] == layout.merged_dir(cell, 1)
    assert sources.tile_set(steps.Context(cfg, cell).data_root) is not None
    # and the export step on the cell root makes a SavedModel of the cell's merged rounds
    exported = steps.export(steps.Context(cfg, cell), "merged", 0)
    assert exported.path.parent == layout.export_dir(cell, cfg.export.model_name)
    assert exported.manifest["source"] == "merged"
    # the cell's own report shows round 0 (read from the group's root)
    md = local / "cells" / "res1-unet.true_class.top20" / "seed0" / "report" / "report.md"
    assert "### Round 0" in md.read_text()


@pytest.mark.parametrize("where", ["local", "s3"])
def test_one_study_process_per_root_by_the_roots_lease(where, landsat, tmp_path, request):
    """The lease a pipeline run holds (no fcntl lock of the study's own): a second study on a
    held root stops before it writes anything."""
    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump(STUDY))
    root = tmp_path / "root" if where == "local" else request.getfixturevalue("s3_bucket") + "/s"
    with artifacts.hold(root), pytest.raises(LeaseError, match="another run writes this root"):
        run_study(study, root)
    assert not (storage.path(root) / "plan.json").exists()
