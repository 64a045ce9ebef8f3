"""`reseg predict` with the model, the scene, its labels and `--out` in an S3 bucket (moto's
server on loopback): sequential and as a Beam job on worker processes, the same outputs array
for array as the same prediction on a local disk, nothing written locally but the cache, and
a bad URI refused with one line."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import rasterio
from PIL import Image
from rasterio.errors import NotGeoreferencedWarning

from reseg import stac, storage
from reseg.cli import main
from reseg.components.predictor import predict_scene
from reseg.components.predictor.blocks import (
    BLOCK_JSON,
    block_name,
    plan_blocks,
    predict_block,
    staging_dir,
)
from reseg.components.predictor.reader import open_scene
from reseg.config import PredictConfig
from tests.components.predictor.helpers import smooth_image
from tests.rasters import write_raster
from tests.storage.conftest import BEAM_PROCESSES

CFG = PredictConfig(
    tile_size=64, overlap=16, batch_size=2, block_size=128, probabilities=True, progress=False
)
OPTS = ["--tile-size", "64", "--overlap", "16", "--batch-size", "2", "--probabilities"]
OPTS += ["--no-progress"]
RASTERS = ("classes", "confidence", "probabilities")


@pytest.fixture(scope="module")
def inputs(s3_endpoint, _cnn_backend, cnn_dir, tmp_path_factory):
    """(bucket, scene URI, labels URI, model URI, local reference prediction): a 250 x 200
    scene with nodata in a corner and labels 10/20/30, the tiny CNN, all in a new bucket."""
    cnn = _cnn_backend  # module-scoped: the shared backend as it is
    import uuid

    import boto3

    bucket = f"s3://reseg-{uuid.uuid4().hex[:12]}"
    boto3.client("s3").create_bucket(Bucket=bucket[5:])
    tmp = tmp_path_factory.mktemp("s3_predict")
    img = smooth_image(4, 250, 200, seed=11)
    img[:, :20, :30] = 0
    lab = np.kron(np.random.default_rng(4).choice([10, 20, 30], (25, 20)), np.ones((10, 10)))
    image = write_raster(tmp / "scene.tif", img, nodata=0)
    labels = write_raster(tmp / "scene_labels.tif", lab.astype("uint8"))
    storage.upload(image, f"{bucket}/in/scene.tif")
    storage.upload(labels, f"{bucket}/in/scene_labels.tif")
    storage.upload(cnn_dir, f"{bucket}/models/cnn")
    local = predict_scene(cnn, image, tmp / "local", CFG, labels=labels)
    return bucket, f"{bucket}/in/scene.tif", f"{bucket}/in/scene_labels.tif", local


def _read(p) -> tuple[np.ndarray, dict]:
    with rasterio.open(storage.gdal_path(p)) as ds:
        return ds.read(), {"crs": ds.crs, "transform": ds.transform, "nodata": ds.nodata}


def _assert_same_as_local(out: str, local, stac_items: bool = True) -> None:
    """`stac_items`: written by `reseg predict` (the command), not by `predict_scene`."""
    for key in RASTERS:
        name = local.outputs[key].name
        (x, mx), (y, my) = _read(f"{out}/{name}"), _read(local.outputs[key])
        assert mx == my, key
        np.testing.assert_array_equal(x, y, err_msg=key)
    with storage.path(f"{out}/scene.preview.png").open("rb") as fh, Image.open(fh) as pa:
        with Image.open(local.outputs["preview"]) as pb:
            np.testing.assert_array_equal(np.asarray(pa), np.asarray(pb))
    metrics = json.loads(storage.path(f"{out}/scene.metrics.json").read_text())
    assert metrics["confusion"] == local.metrics["confusion"]
    # published beside them by the command (docs/stac.md)
    stac_files = ["collection.json", "scene.item.json"] if stac_items else []
    assert storage.files_under(out) == sorted(
        [p.name for p in local.outputs.values()] + stac_files
    ), "exactly the outputs and their STAC item: nothing staged is left in the bucket"
    for name in stac_files:  # written through storage as on a disk, valid offline
        doc = json.loads(storage.path(f"{out}/{name}").read_text())
        stac.validate(doc, f"{out}/{name}")
    if stac_items:
        item = json.loads(storage.path(f"{out}/scene.item.json").read_text())
        assert item["assets"]["classes"]["href"] == "./scene.tif"
        assert item["properties"]["proj:shape"] == list(_read(f"{out}/scene.tif")[0].shape[1:])


@pytest.mark.parametrize("beam", [False, True], ids=["sequential", "beam"])
def test_predict_from_the_bucket_into_the_bucket(inputs, beam, no_local_writes, tmp_path):
    bucket, image, labels, local = inputs
    out = f"{bucket}/out-{'beam' if beam else 'seq'}"
    argv = ["predict", "--model", f"{bucket}/models/cnn", image, "--labels", labels]
    argv += ["--out", out, *OPTS]
    if beam:
        argv += ["--block-size", "128", "--beam", "--", *BEAM_PROCESSES]
    assert main(argv) == 0
    no_local_writes()
    _assert_same_as_local(out, local)
    cache = tmp_path / "cache"
    assert any(p.name.endswith("model.keras") for p in (cache / "objects").iterdir())
    assert not [p for p in (cache / "staging").rglob("*") if p.is_file()], "staging emptied"


def test_a_beam_rerun_reuses_the_blocks_staged_in_the_bucket(inputs, cnn, no_local_writes, capsys):
    """A killed job left block 0 complete (with its block.json) and block 1 without one, in the
    bucket; the rerun keeps block 0 (tampered with here, so reuse shows) and redoes block 1."""
    bucket, image, labels, local = inputs
    out = f"{bucket}/rerun"
    model = f"{bucket}/models/cnn"
    scene = open_scene(image, cnn.info)
    blocks = plan_blocks(cnn.info, scene, CFG)
    assert len(blocks) == 4  # 2 x 2
    staging = staging_dir(out, scene, model, CFG)
    for b in blocks[:2]:
        predict_block(cnn, scene, CFG, b, staging)
    storage.rmtree(staging / block_name(blocks[1]) / BLOCK_JSON)
    d0 = staging / block_name(blocks[0])
    rec = json.loads((d0 / BLOCK_JSON).read_text())
    forged = storage.cache_dir() / "forged.tif"
    forged.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():  # a block's rasters carry no georeferencing
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(storage.gdal_path(d0 / "classes.tif")) as ds:
            prof, shape = ds.profile, (ds.count, ds.height, ds.width)
        with rasterio.open(forged, "w", **prof) as ds:
            ds.write(np.full(shape, 2, np.uint8))
    storage.upload(forged, d0 / "classes.tif")
    forged.unlink()
    argv = ["predict", "--model", model, image, "--out", out, *OPTS, "--block-size", "128"]
    assert main([*argv, "--beam", "--", *BEAM_PROCESSES]) == 0
    no_local_writes()
    got, want = _read(f"{out}/scene.tif")[0][0], _read(local.outputs["classes"])[0][0]
    r0, c0, h, w = rec["window"]
    inside = (slice(r0, r0 + h), slice(c0, c0 + w))
    assert (got[inside][want[inside] != 255] == 2).all(), "the complete staged block was reused"
    rest = np.ones_like(got, bool)
    rest[inside] = False
    np.testing.assert_array_equal(got[rest], want[rest], err_msg="partial block predicted again")
    assert not [n for n in storage.files_under(out) if n.startswith(".")], "staging removed"


def _one_line(capsys, argv) -> str:
    assert main(argv) != 0
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    return err


def test_bad_uris_give_one_line_and_write_nothing(inputs, no_local_writes, capsys):
    bucket, image, _, _ = inputs
    model = f"{bucket}/models/cnn"
    err = _one_line(
        capsys,
        ["predict", "--model", model, f"{bucket}/in/nope.tif", "--out", f"{bucket}/bad1", *OPTS],
    )
    assert f"{bucket}/in/nope.tif" in err and "not found" in err
    err = _one_line(
        capsys,
        ["predict", "--model", model, image, "--out", "s3://reseg-no-such-bucket/out", *OPTS],
    )
    assert "s3://reseg-no-such-bucket/out" in err and "does not exist" in err
    err = _one_line(capsys, ["predict", "--model", model, image, "--out", "ftp://x/out", *OPTS])
    assert "ftp://" in err and "unsupported" in err
    assert not storage.path(f"{bucket}/bad1").exists()
    no_local_writes()


def test_a_crash_while_uploading_leaves_no_class_map(inputs, cnn, monkeypatch, no_local_writes):
    """Killed after the other outputs were uploaded: no `<scene>.tif` (what a reader trusts);
    an older class map is gone before the upload starts; the rerun writes the whole scene."""
    bucket, image, labels, local = inputs
    out = f"{bucket}/crash"
    storage.path(f"{out}/scene.tif").write_bytes(b"an older class map")
    real = storage.upload

    def upload(src, dst):
        if str(dst).endswith("/scene.tif"):
            raise KeyboardInterrupt  # the process dies before the class map is put
        real(src, dst)

    monkeypatch.setattr(storage, "upload", upload)
    with pytest.raises(KeyboardInterrupt):
        predict_scene(cnn, image, out, CFG, labels=labels)
    names = storage.files_under(out)
    assert "scene.tif" not in names and "scene.confidence.tif" in names
    monkeypatch.setattr(storage, "upload", real)
    predict_scene(cnn, image, out, CFG, labels=labels)
    no_local_writes()
    _assert_same_as_local(out, local, stac_items=False)
