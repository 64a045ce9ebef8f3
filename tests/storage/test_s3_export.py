"""`reseg export` into a root in an S3 bucket: TF Serving's layout under `export/<name>/<v>/`,
uploaded with `saved_model.pb` after the variables and the manifest last."""

from __future__ import annotations

import uuid

import pytest
import yaml

from reseg import artifacts, layout, storage
from reseg.cli import main
from reseg.serving import layout as tfs


def test_export_into_a_bucket_root(demo_rounds, s3_endpoint, tmp_path, monkeypatch):
    import boto3

    local_root, cfg, _ = demo_rounds
    bucket = f"reseg-{uuid.uuid4().hex[:12]}"
    boto3.client("s3").create_bucket(Bucket=bucket)
    root = f"s3://{bucket}/runs/demo"
    for part in ("tiles", "stats", "rounds", "merged"):
        storage.upload((local_root / part).resolve(), f"{root}/{part}")
    raw = cfg.model_dump(mode="json")
    raw["tracking"] = {"enabled": False}
    cfg_file = tmp_path / "config.yaml"
    cfg_file.write_text(yaml.safe_dump(raw))
    monkeypatch.setenv("RESEG_CACHE_DIR", str(tmp_path / "cache"))

    assert main(["export", str(cfg_file), "--root", root]) == 0
    base = layout.export_dir(root, cfg.export.model_name)
    assert tfs.versions(base) == [1]
    names = storage.files_under(tfs.version_dir(base, 1))
    assert tfs.SAVED_MODEL in names and layout.MANIFEST in names
    assert any(n.startswith("variables/") for n in names)
    assert f"{tfs.ASSETS_EXTRA}/{tfs.WARMUP_FILE}" in names
    manifest = artifacts.read_manifest(tfs.version_dir(base, 1))
    assert manifest["version"] == 1 and manifest["source"] == cfg.export.source
    assert not list((tmp_path / "cache" / "staging").iterdir())  # uploaded, nothing left

    assert main(["export", str(cfg_file), "--root", root]) == 0  # the same models: no version 2
    assert tfs.versions(base) == [1]


def test_predict_with_the_export_in_the_bucket(demo_rounds, landsat, s3_endpoint, tmp_path):
    """`reseg predict --model s3://.../export/<name>`: the SavedModel is downloaded once into the
    cache's folders and predicts what the same export does from a local copy."""
    import numpy as np
    import rasterio

    local_root, cfg, _ = demo_rounds
    bucket = f"s3://reseg-{uuid.uuid4().hex[:12]}"
    import boto3

    boto3.client("s3").create_bucket(Bucket=bucket[5:])
    export = layout.export_dir(local_root, cfg.export.model_name)
    model = f"{bucket}/export/{cfg.export.model_name}"
    storage.upload(export.resolve(), model)
    image = str(landsat / "landsat_multiband.tif")
    opts = ["--tile-size", "128", "--overlap", "16", "--no-progress", "--no-preview"]
    cache = tmp_path / "cache"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RESEG_CACHE_DIR", str(cache))
        for _ in range(2):
            assert main(["predict", "--model", model, image, "--out", f"{bucket}/p", *opts]) == 0
    assert len(list((cache / "folders").iterdir())) == 1, "one copy, reused by the second run"
    assert (
        main(["predict", "--model", str(export), image, "--out", str(tmp_path / "p"), *opts]) == 0
    )
    for name in ("landsat_multiband.tif", "landsat_multiband.confidence.tif"):
        with rasterio.open(storage.gdal_path(f"{bucket}/p/{name}")) as a:
            with rasterio.open(tmp_path / "p" / name) as b:
                np.testing.assert_array_equal(a.read(), b.read(), err_msg=name)
