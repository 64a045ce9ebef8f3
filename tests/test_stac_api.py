"""`reseg predict --stac-search` and `data.stac[].api` against a real STAC API server on
127.0.0.1: stac-fastapi-static (stac-fastapi over a static catalog, no database) serving a
catalog of the example scenes, whose assets are in an S3 bucket (moto on loopback), as an
API over a bucket would be. An empty search and an unreachable API are one line each, and
publish nothing."""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid

import numpy as np
import pytest
import rasterio

from reseg import stac, storage
from reseg.cli import main
from reseg.components.predictor.stac import ITEM_SUFFIX
from tests.conftest import REPO
from tests.storage.conftest import s3_endpoint  # noqa: F401  (fixture)

EXAMPLE = REPO / "examples" / "stac"
SCENES = ("scene-a", "scene-b")
OPTS = ["--tile-size", "64", "--overlap", "16", "--no-progress", "--no-preview"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def api(s3_endpoint, tmp_path_factory):  # noqa: F811
    """(URL of the STAC API, bucket): collection `scenes` with scene-a and scene-b."""
    import boto3
    import uvicorn
    from stac_fastapi.api.middleware import CORSMiddleware
    from stac_fastapi.static.api import Settings, make_api

    bucket = f"reseg-{uuid.uuid4().hex[:12]}"
    boto3.client("s3").create_bucket(Bucket=bucket)
    cat = tmp_path_factory.mktemp("api") / "catalog"
    links = []
    for sid in SCENES:
        for name in (f"{sid}.tif", f"{sid}_labels.tif"):
            storage.upload(EXAMPLE / name, f"s3://{bucket}/data/{name}")
        doc = stac.describe(
            sid, {"image": EXAMPLE / f"{sid}.tif", "labels": EXAMPLE / f"{sid}_labels.tif"}
        )
        for key, asset in doc["assets"].items():
            asset["href"] = f"s3://{bucket}/data/{sid}{'' if key == 'image' else '_labels'}.tif"
        doc["collection"] = "scenes"
        doc["links"] = [
            {"rel": "collection", "href": "../collection.json"},
            {"rel": "parent", "href": "../collection.json"},
            {"rel": "root", "href": "../../catalog.json"},
        ]
        (cat / "scenes" / sid).mkdir(parents=True)
        (cat / "scenes" / sid / f"{sid}.json").write_text(json.dumps(doc))
        links.append({"rel": "item", "href": f"./{sid}/{sid}.json"})
    coll = {
        "type": "Collection",
        "stac_version": "1.1.0",
        "id": "scenes",
        "description": "the example scenes",
        "license": "other",
        "extent": {
            "spatial": {"bbox": [[-180, -90, 180, 90]]},
            "temporal": {"interval": [["2020-01-01T00:00:00Z", None]]},
        },
        "links": links + [{"rel": "root", "href": "../catalog.json"}],
    }
    (cat / "scenes" / "collection.json").write_text(json.dumps(coll))
    root = {
        "type": "Catalog",
        "stac_version": "1.1.0",
        "id": "root",
        "description": "root",
        "links": [{"rel": "child", "href": "./scenes/collection.json"}],
    }
    (cat / "catalog.json").write_text(json.dumps(root))
    port = _free_port()
    settings = Settings(
        catalog_href=str(cat / "catalog.json"), app_host="127.0.0.1", app_port=port, reload=False
    )
    app = make_api(settings).app
    # stac-fastapi 5.2's CORS middleware passes positional arguments that the installed
    # Starlette reorders; CORS is for browsers, not needed on loopback
    app.user_middleware = [m for m in app.user_middleware if m.cls is not CORSMiddleware]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started and time.time() < deadline:
        time.sleep(0.05)
    assert server.started
    yield f"http://127.0.0.1:{port}/", bucket
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def reference(cnn_dir, tmp_path_factory):
    """The example scenes predicted from their local files, by path."""
    out = tmp_path_factory.mktemp("ref")
    images = [str(EXAMPLE / f"{sid}.tif") for sid in SCENES]
    assert main(["predict", "--model", str(cnn_dir), *images, "--out", str(out), *OPTS]) == 0
    return out


def test_predict_the_scenes_a_search_finds(api, reference, cnn_dir, tmp_path, monkeypatch):
    url, _ = api
    monkeypatch.setenv("RESEG_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "out"
    rc = main(
        ["predict", "--model", str(cnn_dir), "--stac-search", url, "--stac-collections", "scenes"]
        + ["--stac-labels", "labels", "--stac-max-items", "10", "--out", str(out), *OPTS]
    )
    assert rc == 0
    for sid in SCENES:
        with rasterio.open(out / f"{sid}.tif") as a, rasterio.open(reference / f"{sid}.tif") as b:
            assert np.array_equal(a.read(), b.read())
        assert json.loads((out / f"{sid}.metrics.json").read_text())["pixels"] > 0
        item = json.loads((out / f"{sid}{ITEM_SUFFIX}").read_text())
        derived = [x["href"] for x in item["links"] if x["rel"] == "derived_from"]
        assert len(derived) == 1 and derived[0].startswith(url) and sid in derived[0]


def test_a_bbox_search_in_the_config_selects_its_scenes(api, tmp_path):
    import yaml

    from reseg.config import load_config

    url, bucket = api
    with rasterio.open(EXAMPLE / "scene-a.tif") as ds:
        from rasterio.warp import transform_bounds

        w, s, e, n = transform_bounds(ds.crs, "EPSG:4326", *ds.bounds)
    small = [w + 0.001, s + 0.001, w + 0.002, s + 0.002]  # inside scene-a only
    data = {
        "stac": [
            {"api": url, "collections": ["scenes"], "bbox": small, "labels": "labels"},
        ],
        "classes": [{"name": n} for n in ("water", "field", "forest")],
    }
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text(yaml.safe_dump({"data": data}))
    cfg = load_config(cfg_file)
    assert [(s.scene_id, s.image, s.labels) for s in cfg.data.scenes] == [
        ("scene-a", f"s3://{bucket}/data/scene-a.tif", f"s3://{bucket}/data/scene-a_labels.tif")
    ]


@pytest.mark.parametrize(
    "case, code, message",
    [
        ("empty", 3, "the STAC search matched no items (collections ['scenes'], bbox"),
        ("unreachable", 10, "STAC API unreachable"),
    ],
)
def test_an_empty_search_or_an_unreachable_api_is_one_line(
    case, code, message, api, cnn_dir, tmp_path, capsys
):
    url, _ = api
    if case == "unreachable":
        url = f"http://127.0.0.1:{_free_port()}/"
    out = tmp_path / "out"
    rc = main(
        ["predict", "--model", str(cnn_dir), "--stac-search", url, "--stac-collections", "scenes"]
        + ["--stac-bbox", "0,0,0.001,0.001", "--out", str(out), *OPTS]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == code
    assert message in err[-1] and url in err[-1]
    assert not out.exists() or not any(out.iterdir())
