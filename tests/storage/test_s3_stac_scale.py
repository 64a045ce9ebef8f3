"""A catalog of 200 small generated scenes in an S3 bucket (moto on loopback), predicted from its
ItemCollection with `--beam` on 2 worker processes and sequentially, into the bucket: the same
outputs byte for byte (one listing of ETags), an item per scene and a valid collection."""

from __future__ import annotations

import json
import time
import uuid

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from reseg import stac, storage
from reseg.cli import main
from reseg.components.predictor.stac import COLLECTION, ITEM_SUFFIX
from tests.storage.conftest import BEAM_PROCESSES

N = 200
SIZE = 48
OPTS = ["--tile-size", "48", "--overlap", "8", "--no-progress", "--no-preview"]
OPTS += ["--precision", "float32"]


@pytest.fixture(scope="module")
def catalog(s3_endpoint, tmp_path_factory):
    """s3://<bucket>/cat/items.json: N scenes of 4 x uint16 bands, assets beside it."""
    import boto3

    bucket = f"reseg-{uuid.uuid4().hex[:12]}"
    boto3.client("s3").create_bucket(Bucket=bucket)
    tmp = tmp_path_factory.mktemp("scale")
    rng = np.random.default_rng(7)
    docs = []
    for k in range(N):
        sid = f"s{k:03d}"
        img = rng.integers(1, 4000, (4, SIZE, SIZE)).astype("uint16")
        path = tmp / f"{sid}.tif"
        profile = dict(driver="GTiff", height=SIZE, width=SIZE, count=4, dtype="uint16")
        profile.update(crs="EPSG:32632", transform=from_origin(500_000 + 480 * k, 6e6, 10, 10))
        with rasterio.open(path, "w", **profile) as ds:
            ds.write(img)
        docs.append(stac.describe(sid, {"image": path}, relative_to=tmp))
    (tmp / "items.json").write_text(json.dumps(stac.item_collection(docs)))
    storage.upload(tmp, f"s3://{bucket}/cat")
    return f"s3://{bucket}"


@pytest.mark.slow  # ~3.2 min on 2 shared cores: sequential ~63 s, Beam ~100 s, setup ~30 s
def test_200_scenes_from_a_bucket_catalog_with_beam_equal_sequential(
    catalog, cnn_dir, tmp_path, monkeypatch
):
    monkeypatch.setenv("RESEG_CACHE_DIR", str(tmp_path / "cache"))
    items = f"{catalog}/cat/items.json"
    walls = {}
    for mode in ("seq", "beam"):
        argv = ["predict", "--model", str(cnn_dir), "--stac", items]
        argv += ["--out", f"{catalog}/{mode}", *OPTS]
        if mode == "beam":
            argv += ["--beam", "--", *BEAM_PROCESSES]
        t0 = time.perf_counter()
        assert main(argv) == 0
        walls[mode] = time.perf_counter() - t0
    seq = storage.files_with_versions(storage.path(f"{catalog}/seq"))
    beam = storage.files_with_versions(storage.path(f"{catalog}/beam"))
    rasters = sorted(n for n in seq if n.endswith(".tif"))
    assert len(rasters) == 2 * N
    assert {n: seq[n] for n in rasters} == {n: beam.get(n) for n in rasters}, "same bytes"
    assert sum(n.endswith(ITEM_SUFFIX) for n in beam) == N
    coll = json.loads(storage.path(f"{catalog}/beam/{COLLECTION}").read_text())
    stac.validate(coll, COLLECTION)
    assert len([x for x in coll["links"] if x["rel"] == "item"]) == N
    print(f"200 scenes: sequential {walls['seq']:.1f} s, beam on 2 processes {walls['beam']:.1f} s")
