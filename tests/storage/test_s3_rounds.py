"""Pseudo-label rounds, the refine step and the Python API with the root in an S3 bucket (moto's
server on loopback): the same artifacts as the same pipeline on a local root.

Before the one location type, `PseudoLabels.load` and `RefineTuning.load` wrapped the root in
`pathlib.Path` and these steps failed on a bucket (`TypeError ... not S3Path`), and
`reseg.Pipeline("s3://...")` wrote a local folder `./s3:/...`."""

from __future__ import annotations

import json
import uuid

import numpy as np
import pytest
import rasterio

import reseg
from reseg import artifacts, layout, storage
from reseg.config import parse_config
from reseg.pipeline import run_pipeline
from tests.pipeline.test_pseudo_rounds import as_is, pseudo_config

pytestmark = pytest.mark.slow  # two small pseudo-label pipelines with refinement tuning

STEPS = ["tile", "stats", "rounds", "refine"]
TUNE = {
    "crf": {"bilateral_sxy": [3], "bilateral_sstd": [0.5], "bilateral_compat": [3]},
    "slic": {"size": [6], "compactness": [0.5]},
    "bootstrap": 100,
}


def _config(tmp):
    raw = pseudo_config(tmp, as_is).model_dump(mode="json")
    raw["predict"].update(refine="slic", tune=TUNE, preview=False, precision="float32")
    raw["export"] = {"source": "last", "precision": "float32", "validation": False}
    raw["rounds"]["score_precision"] = "float32"
    raw["tracking"]["enabled"] = False
    return raw


@pytest.fixture(scope="module")
def roots(s3_endpoint, tmp_path_factory):
    """(local root, bucket root, cfg, bucket cfg, local cache): the same pipeline on each, the
    bucket's run from an empty working folder with its scenes in the bucket too."""
    import boto3

    tmp = tmp_path_factory.mktemp("s3_rounds")
    raw = _config(tmp)
    cfg = parse_config(raw)
    local = tmp / "root"
    run_pipeline(cfg, local, steps=STEPS)

    bucket = f"s3://reseg-{uuid.uuid4().hex[:12]}"
    boto3.client("s3").create_bucket(Bucket=bucket[5:])
    for scene in raw["data"]["scenes"]:
        for key in ("image", "labels"):
            if scene.get(key):
                uri = f"{bucket}/scenes/{scene[key].rsplit('/', 1)[-1]}"
                storage.upload(scene[key], uri)
                scene[key] = uri
    s3_cfg = parse_config(raw)
    work, cache = tmp / "cwd", tmp / "cache"
    work.mkdir()
    remote = f"{bucket}/runs/pseudo"
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(work)
        mp.setenv("RESEG_CACHE_DIR", str(cache))
        run_pipeline(s3_cfg, remote, steps=STEPS)
        assert [p.name for p in work.iterdir()] == []  # no ./s3:/... folder
    return local, remote, cfg, s3_cfg


def _raster(p) -> np.ndarray:
    with rasterio.open(storage.gdal_path(p)) as src:
        return src.read()


def test_pseudo_label_rounds_on_a_bucket_equal_the_local_run(roots):
    local, remote, _, _ = roots
    for r in (0, 1):
        ml, mr = (artifacts.Model.load(layout.model_dir(x, r, 0)) for x in (local, remote))
        assert mr.manifest["weights_digest"] == ml.manifest["weights_digest"], r
    pl = artifacts.PseudoLabels.load(layout.pseudo_dir(local, 0, 0))
    pr = artifacts.PseudoLabels.load(layout.pseudo_dir(remote, 0, 0))
    assert storage.is_remote(pr.path) and str(pr.path).startswith(remote)
    assert pr.manifest["files"] == pl.manifest["files"]
    assert pr.manifest["files"] and all(f.endswith(".tfrecord.gz") for f in pr.manifest["files"])
    for s in "abc":  # the pseudo-label rasters, read from the bucket by GDAL
        np.testing.assert_array_equal(_raster(pr.path / f"{s}.tif"), _raster(pl.path / f"{s}.tif"))
    assert pr.report["selected"] == pl.report["selected"] > 0
    assert pr.report["per_class"] == pl.report["per_class"]


def test_the_refine_step_on_a_bucket_equals_the_local_run(roots):
    local, remote, _, _ = roots
    tl = artifacts.RefineTuning.load(layout.refine_dir(local, 0))
    tr = artifacts.RefineTuning.load(layout.refine_dir(remote, 0))
    rl, rr = dict(tl.record), dict(tr.record)
    # the record names where its models are: the only difference
    assert rr.pop("source")["path"] == storage.resolved(layout.model_dir(remote, 1, 0))
    assert rl.pop("source")["path"] == storage.resolved(layout.model_dir(local, 1, 0))
    rl.pop("members"), rr.pop("members")
    assert json.dumps(rr, sort_keys=True) == json.dumps(rl, sort_keys=True)
    assert set(rr["methods"]) == {"crf", "slic"}
    with (
        np.load(storage.local_copy(tr.path / layout.REFINE_TILES_NPZ)) as a,
        np.load(tl.path / layout.REFINE_TILES_NPZ) as b,
    ):
        for k in ("keys", "none", "crf", "slic"):
            np.testing.assert_array_equal(a[k], b[k])


def test_the_python_api_on_a_bucket_root_equals_the_local_root(roots, tmp_path, monkeypatch):
    local, remote, cfg, s3_cfg = roots
    monkeypatch.chdir(tmp_path)
    pl, pr = reseg.Pipeline(cfg, local), reseg.Pipeline(s3_cfg, remote)
    assert storage.is_remote(pr.root) and str(pr.root) == remote
    # every step is current: the API loads the bucket's artifacts instead of recomputing
    before = artifacts.PseudoLabels.load(layout.pseudo_dir(remote, 0, 0)).manifest
    assert pr.pseudo(0, 0).manifest == before  # current: not published again
    assert pr.pseudo(0, 0).report["per_class"] == pl.pseudo(0, 0).report["per_class"]
    assert pr.evaluate(1, 0).mean_iou == pl.evaluate(1, 0).mean_iou
    assert pr.tune_refine(0).record["methods"] == pl.tune_refine(0).record["methods"]
    tl, tr = pl.round_table(), pr.round_table()
    assert [r["round"] for r in tr] == [r["round"] for r in tl] and len(tr) >= 2
    assert [r["mean_iou"] for r in tr] == [r["mean_iou"] for r in tl]
    image = s3_cfg.data.scenes[0].image
    assert storage.is_remote(image)
    a = reseg.predict_arrays(layout.model_dir(remote, 1, 0), image, cfg.predict)
    b = reseg.predict_arrays(layout.model_dir(local, 1, 0), cfg.data.scenes[0].image, cfg.predict)
    np.testing.assert_array_equal(a.classes, b.classes)
    np.testing.assert_allclose(a.probabilities, b.probabilities, atol=1e-6)
    assert list(tmp_path.iterdir()) == []  # nothing written under the working folder
