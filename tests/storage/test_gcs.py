"""The same against a GCS emulator (gcp-storage-emulator on loopback): scenes and root in a
`gs://` bucket for tiling and statistics on Beam worker processes, publishing, bad inputs,
and `reseg predict` from the bucket into it. Training, scoring and the rounds on `gs://` go
through the same lines as on `s3://` (tests/storage/test_s3_pipeline.py) and are not run
here again."""

from __future__ import annotations

import json
import os

import pytest
import yaml

from reseg import artifacts, layout, storage
from reseg.cli import main
from tests.rasters import config_dict, scene
from tests.storage.conftest import BEAM_PROCESSES


@pytest.mark.slow
def test_tile_and_stats_in_a_gcs_bucket_equal_the_local_run(
    demo_config, demo_root, gcs_bucket, tmp_path, no_local_writes
):
    raw = demo_config.model_dump(mode="json")
    for s in raw["data"]["scenes"]:
        for key in ("image", "labels"):
            uri = f"{gcs_bucket}/scenes/{os.path.basename(s[key])}"
            storage.upload(s[key], uri)
            s[key] = uri
    raw["beam"] = {"args": BEAM_PROCESSES}
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    root = f"{gcs_bucket}/runs/demo"
    assert main(["run", str(cfg), "--root", root, "--steps", "tile,stats"]) == 0
    no_local_writes()
    remote = artifacts.TileSet.load(layout.tiles_dir(root))
    local = artifacts.TileSet.load(layout.tiles_dir(demo_root))
    assert [f.name for f in remote.files] == [f.name for f in local.files]
    for r, loc in zip(remote.files, local.files, strict=True):
        assert storage.path(r).read_bytes() == loc.read_bytes(), r.name
    got = json.loads(storage.path(layout.stats_dir(root) / layout.STATS_JSON).read_text())
    ref = json.loads((layout.stats_dir(demo_root) / layout.STATS_JSON).read_text())
    assert got["class_pixels_per_fold"] == ref["class_pixels_per_fold"]
    assert not [n for n in storage.files_under(root) if ".tmp-" in n]


def test_publish_on_gcs_writes_the_manifest_last(gcs_bucket):
    final = f"{gcs_bucket}/root/thing"
    with pytest.raises(RuntimeError), artifacts.stage(final, "fp1", "test") as st:
        (st.dir / "a.txt").write_text("kept")
        raise RuntimeError("killed")
    assert not artifacts.is_current(final, "fp1")
    with artifacts.stage(final, "fp1", "test") as st:
        assert (st.dir / "a.txt").read_text() == "kept"
    assert artifacts.is_current(final, "fp1")
    assert storage.files_under(final) == ["a.txt", layout.MANIFEST]


def test_bad_gcs_inputs_are_one_line(gcs_bucket, tmp_path, capsys):
    image, labels = scene(tmp_path, seed=3)
    storage.upload(labels, f"{gcs_bucket}/in/labels.tif")
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(config_dict(f"{gcs_bucket}/in/nope.tif", labels)))
    assert main(["tile", str(cfg), "--root", f"{gcs_bucket}/root"]) != 0
    err = capsys.readouterr().err
    assert f"{gcs_bucket}/in/nope.tif" in err and "not found" in err
    assert len(err.strip().splitlines()) == 1
    cfg.write_text(yaml.safe_dump(config_dict(image, labels)))
    assert main(["tile", str(cfg), "--root", "gs://reseg-no-such-bucket/root"]) != 0
    err = capsys.readouterr().err
    assert "gs://reseg-no-such-bucket/root" in err and "does not exist" in err
    assert storage.files_under(f"{gcs_bucket}/root") == []


def test_predict_from_a_gcs_bucket_into_it(gcs_bucket, cnn, cnn_dir, tmp_path, no_local_writes):
    """`reseg predict` with model, scene and `--out` in a `gs://` bucket (GDAL's `/vsigs/`):
    the class and confidence COGs equal the same prediction on a local disk."""
    import numpy as np
    import rasterio

    from reseg.components.predictor import predict_scene
    from tests.storage.test_s3_predict import CFG, OPTS

    image, _ = scene(tmp_path, bands=4, seed=5)
    storage.upload(image, f"{gcs_bucket}/in/scene.tif")
    storage.upload(cnn_dir, f"{gcs_bucket}/models/cnn")
    local = predict_scene(cnn, image, tmp_path / "local", CFG, scene_id="scene")
    out = f"{gcs_bucket}/out"
    argv = ["predict", "--model", f"{gcs_bucket}/models/cnn", f"{gcs_bucket}/in/scene.tif"]
    assert main([*argv, "--out", out, *OPTS]) == 0
    no_local_writes()
    for key in ("classes", "confidence", "probabilities"):
        with rasterio.open(storage.gdal_path(f"{out}/{local.outputs[key].name}")) as a:
            with rasterio.open(local.outputs[key]) as b:
                np.testing.assert_array_equal(a.read(), b.read(), err_msg=key)
    stac_files = ["collection.json", "scene.item.json"]  # published in the bucket too
    assert storage.files_under(out) == sorted(
        [*(p.name for p in local.outputs.values()), *stac_files]
    )
