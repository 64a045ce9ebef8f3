"""STAC in and out: `reseg predict --stac ITEMS` reads scenes from an ItemCollection (one
multi-band asset, or single-band assets stacked), publishes a valid STAC Item per scene and
a Collection beside the COGs (validated offline against the core and extension schemas),
odc-stac loads them back equal to the COGs, and bad sources give one line and publish
nothing."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import rasterio

from reseg import stac
from reseg.cli import main
from reseg.components.predictor.stac import COLLECTION, ITEM_SUFFIX
from reseg.errors import OutputError
from tests.components.predictor.helpers import smooth_image
from tests.rasters import write_raster
from tests.storage.conftest import s3_endpoint  # noqa: F401  (fixture)

OPTS = ["--tile-size", "64", "--overlap", "16", "--no-progress", "--no-preview"]
LABELS = np.kron(np.random.default_rng(4).choice([10, 20, 30], (8, 10)), np.ones((10, 10)))


def _scenes(folder, n=2, bands=4):
    """n scenes of `bands` uint16 bands (80 x 100): image, single-band files, labels."""
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for k in range(n):
        img = smooth_image(bands, 80, 100, seed=20 + k)
        sid = f"scene-{k}"
        paths = {"image": write_raster(folder / f"{sid}.tif", img)}
        for b in range(bands):
            paths[f"B{b + 1}"] = write_raster(folder / f"{sid}_B{b + 1}.tif", img[b])
        paths["labels"] = write_raster(folder / f"{sid}_labels.tif", LABELS.astype("uint8"))
        out[sid] = paths
    return out


def _items_file(folder, scenes, name="items.json", props=None):
    docs = [
        stac.describe(sid, paths, relative_to=folder, properties=(props or {}).get(sid))
        for sid, paths in scenes.items()
    ]
    p = folder / name
    p.write_text(json.dumps(stac.item_collection(docs), indent=2))
    return p


@pytest.fixture(scope="module")
def published(tmp_path_factory, cnn_dir):
    """(items file, scenes, out folder): two scenes predicted from an ItemCollection."""
    tmp = tmp_path_factory.mktemp("stac")
    scenes = _scenes(tmp / "data")
    items = _items_file(tmp / "data", scenes)
    out = tmp / "out"
    rc = main(
        ["predict", "--model", str(cnn_dir), "--stac", str(items), "--stac-labels", "labels"]
        + ["--out", str(out), *OPTS]
    )
    assert rc == 0
    return items, scenes, out


def test_items_and_collection_are_valid_stac_with_the_extensions(published):
    items, scenes, out = published
    coll = json.loads((out / COLLECTION).read_text())
    stac.validate(coll, out / COLLECTION)
    assert sorted(link["href"] for link in coll["links"] if link["rel"] == "item") == [
        f"./{sid}{ITEM_SUFFIX}" for sid in sorted(scenes)
    ]
    for sid in scenes:
        item = json.loads((out / f"{sid}{ITEM_SUFFIX}").read_text())
        stac.validate(item, out / f"{sid}{ITEM_SUFFIX}")
        assert {e.split("/")[3] for e in item["stac_extensions"]} == {
            "projection",
            "raster",
            "classification",
        }
        p = item["properties"]
        with rasterio.open(out / f"{sid}.tif") as ds:
            assert p["proj:code"] == "EPSG:32632" and p["proj:shape"] == [ds.height, ds.width]
            assert p["proj:transform"] == list(ds.transform)[:6]
        cls = item["assets"]["classes"]
        assert cls["href"] == f"./{sid}.tif"
        assert [c["value"] for c in cls["classification:classes"]] == [0, 1, 2]
        assert all(len(c["color_hint"]) == 6 for c in cls["classification:classes"])
        assert cls["raster:bands"][0] == {"data_type": "uint8", "nodata": 255.0, "name": "class"}
        conf = item["assets"]["confidence"]["raster:bands"][0]
        assert conf["data_type"] == "uint8" and conf["scale"] == pytest.approx(1 / 255)
        assert "metrics" in item["assets"] and "style" in item["assets"]
        derived = [link["href"] for link in item["links"] if link["rel"] == "derived_from"]
        assert derived == [str(items)]
        assert p["reseg:model_path"] and p["reseg:architecture"]
        assert p["datetime"] == "2020-01-01T00:00:00Z"  # the source item's acquisition
        assert -180 <= item["bbox"][0] < item["bbox"][2] <= 180


def test_validation_is_real_and_offline(published):
    """A broken item fails validation: the core schema (no datetime) and an extension schema
    (a class without its value), with no network (schemas come from the package)."""
    _, scenes, out = published
    item = json.loads((out / f"{next(iter(scenes))}{ITEM_SUFFIX}").read_text())
    bad = copy.deepcopy(item)
    del bad["properties"]["datetime"]
    with pytest.raises(OutputError, match="not a valid STAC Feature"):
        stac.validate(bad, "bad.json")
    bad = copy.deepcopy(item)
    del bad["assets"]["classes"]["classification:classes"][0]["value"]
    with pytest.raises(OutputError, match="value"):
        stac.validate(bad, "bad.json")


def test_odc_stac_loads_the_published_items_equal_to_the_cogs(published):
    """The ecosystem's loader reads what we published: odc-stac from the Collection's items."""
    import odc.stac
    import pystac

    _, scenes, out = published
    coll = pystac.Collection.from_file(str(out / COLLECTION))
    items = list(coll.get_items())
    assert sorted(i.id for i in items) == sorted(scenes)
    for item in items:
        ds = odc.stac.load([item], bands=["classes", "confidence"], chunks=None)
        with (
            rasterio.open(out / f"{item.id}.tif") as c,
            rasterio.open(out / f"{item.id}.confidence.tif") as f,
        ):
            assert np.array_equal(ds["classes"].values[0], c.read(1))
            assert np.array_equal(ds["confidence"].values[0], f.read(1))


def test_stacked_single_band_assets_predict_as_the_multiband_image(published, cnn_dir, tmp_path):
    _, scenes, out = published
    data = tmp_path / "data"
    data.mkdir()
    items = _items_file(next(iter(scenes.values()))["image"].parent, scenes, "bands.json")
    out2 = tmp_path / "out2"
    rc = main(
        ["predict", "--model", str(cnn_dir), "--stac", str(items)]
        + ["--stac-image", "B1,B2,B3,B4", "--out", str(out2), *OPTS]
    )
    assert rc == 0
    for sid in scenes:
        with rasterio.open(out / f"{sid}.tif") as a, rasterio.open(out2 / f"{sid}.tif") as b:
            assert np.array_equal(a.read(), b.read())


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing", "item scene-1: no asset 'labels' (assets: B1, B2, B3, B4, image)"),
        ("bands", "has 4 bands in item scene-0 and 3 in item scene-1"),
        ("empty", "no STAC items found"),
        ("absent", "STAC document not found"),
    ],
)
def test_a_bad_source_is_one_line_and_publishes_nothing(
    case, message, published, cnn_dir, tmp_path, capsys
):
    _, scenes, _ = published
    folder = next(iter(scenes.values()))["image"].parent
    docs = [stac.describe(sid, p, relative_to=folder) for sid, p in scenes.items()]
    if case == "missing":
        del docs[1]["assets"]["labels"]
    if case == "bands":
        docs[1]["assets"]["image"]["raster:bands"].pop()
    if case == "empty":
        docs = []
    items = folder / f"{case}.json"
    if case != "absent":
        items.write_text(json.dumps(stac.item_collection(docs)))
    out = tmp_path / "out"
    rc = main(
        ["predict", "--model", str(cnn_dir), "--stac", str(items), "--stac-labels", "labels"]
        + ["--out", str(out), *OPTS]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 3
    assert message in err[-1] and str(items) in err[-1]
    assert not out.exists() or not any(out.iterdir())


def test_the_example_config_reads_its_scenes_from_the_shipped_items(cnn_dir, tmp_path):
    """examples/stac_items.yaml: scene ids from item ids, roles from the `reseg:role`
    property, hrefs relative to examples/stac/items.json (so a fresh clone works)."""
    from reseg.config import load_config
    from tests.conftest import REPO

    cfg = load_config(REPO / "examples" / "stac_items.yaml")
    items = str(REPO / "examples" / "stac" / "items.json")
    got = [(s.scene_id, s.role, s.stac_item) for s in cfg.data.scenes]
    assert got == [
        ("scene-a", "labelled", items),
        ("scene-b", "labelled", items),
        ("scene-c", "unlabelled", items),
    ]
    assert cfg.data.scenes[0].image == str(REPO / "examples" / "stac" / "scene-a.tif")
    assert cfg.data.scenes[1].labels == str(REPO / "examples" / "stac" / "scene-b_labels.tif")
    assert cfg.data.scenes[2].labels is None
    assert cfg.data.stac[0].items == items  # the source stays in the config, for the record


def test_a_bad_role_in_an_item_is_one_line(tmp_path, published, capsys):
    import yaml

    from reseg.config import load_config
    from reseg.errors import InputError

    _, scenes, _ = published
    folder = next(iter(scenes.values()))["image"].parent
    _items_file(folder, scenes, "roles.json", props={"scene-1": {"reseg:role": "teacher"}})
    cfg = tmp_path / "c.yaml"
    data = {"stac": [{"items": str(folder / "roles.json"), "labels": "labels"}]}
    data["classes"] = [{"name": n} for n in ("a", "b", "c")]
    cfg.write_text(yaml.safe_dump({"data": data}))
    with pytest.raises(InputError, match="item scene-1: reseg:role 'teacher' is not labelled"):
        load_config(cfg)


@pytest.mark.usefixtures("s3_endpoint")
def test_scenes_from_a_static_catalog_in_a_bucket_published_into_the_bucket(
    published, cnn_dir, tmp_path, monkeypatch
):
    """catalog.json -> child collection -> item files, with the data beside them, all in a
    bucket: the same class maps as from the local ItemCollection, items in the bucket that
    link to their source item file there."""
    import uuid

    import boto3

    from reseg import storage

    monkeypatch.setenv("RESEG_CACHE_DIR", str(tmp_path / "cache"))
    _, scenes, local_out = published
    cat = tmp_path / "cat"
    (cat / "coll").mkdir(parents=True)
    links = []
    for sid, paths in scenes.items():
        (cat / "coll" / sid).mkdir()
        for key in ("image", "labels"):
            (cat / "data").mkdir(exist_ok=True)
            (cat / "data" / paths[key].name).write_bytes(paths[key].read_bytes())
        doc = stac.describe(
            sid,
            {k: cat / "data" / paths[k].name for k in ("image", "labels")},
            relative_to=cat / "coll" / sid,
        )
        (cat / "coll" / sid / f"{sid}.json").write_text(json.dumps(doc))
        links.append({"rel": "item", "href": f"./{sid}/{sid}.json"})
    coll = {"type": "Collection", "id": "c", "links": links}
    (cat / "coll" / "collection.json").write_text(json.dumps(coll))
    root = {
        "type": "Catalog",
        "id": "root",
        "links": [{"rel": "child", "href": "./coll/collection.json"}],
    }
    (cat / "catalog.json").write_text(json.dumps(root))
    bucket = f"reseg-{uuid.uuid4().hex[:12]}"
    boto3.client("s3").create_bucket(Bucket=bucket)
    storage.upload(cat, f"s3://{bucket}/cat")
    out = f"s3://{bucket}/out"
    rc = main(
        ["predict", "--model", str(cnn_dir), "--stac", f"s3://{bucket}/cat/catalog.json"]
        + ["--stac-labels", "labels", "--out", out, *OPTS]
    )
    assert rc == 0
    for sid in scenes:
        with rasterio.open(storage.gdal_path(f"{out}/{sid}.tif")) as a:
            with rasterio.open(local_out / f"{sid}.tif") as b:
                assert np.array_equal(a.read(), b.read())
        item = json.loads(storage.path(f"{out}/{sid}{ITEM_SUFFIX}").read_text())
        stac.validate(item, f"{out}/{sid}{ITEM_SUFFIX}")
        derived = [x["href"] for x in item["links"] if x["rel"] == "derived_from"]
        assert derived == [f"s3://{bucket}/cat/coll/{sid}/{sid}.json"]
    coll_out = json.loads(storage.path(f"{out}/{COLLECTION}").read_text())
    assert len([x for x in coll_out["links"] if x["rel"] == "item"]) == len(scenes)


def test_the_pipeline_publishes_its_predictions_as_stac(demo_rounds):
    """The predict step's folder holds an item per scene and the collection, recorded in its
    manifest (published with the folder), with the model, export version and run."""
    from reseg import artifacts, layout

    root, cfg, _ = demo_rounds
    out = layout.predictions_dir(root)
    contents = artifacts.read_manifest(out)["contents"]
    assert {"landsat.item.json", COLLECTION} <= set(contents)
    coll = json.loads((out / COLLECTION).read_text())
    stac.validate(coll, out / COLLECTION)
    assert coll["id"] == cfg.name
    item = json.loads((out / f"landsat{ITEM_SUFFIX}").read_text())
    stac.validate(item, out / f"landsat{ITEM_SUFFIX}")
    p = item["properties"]
    assert p["reseg:model_source"] == "merged" and p["reseg:fold"] == 0
    assert p["reseg:run_id"] and p["reseg:experiment"] == cfg.name
    classes = item["assets"]["classes"]["classification:classes"]
    assert [(c["name"], "#" + c["color_hint"].lower()) for c in classes] == [
        (c.name, c.color.lower()) for c in cfg.data.classes
    ]
    assert not any(x["rel"] == "derived_from" for x in item["links"])  # scene given by path


def test_a_vector_label_asset_scores_the_scene(published, cnn_dir, tmp_path):
    """`data.stac[].vector`: the labels asset is polygons (GeoJSON), burnt onto the image grid
    with the given attribute; `reseg predict --config` scores the scene with them."""
    import yaml
    from rasterio.warp import transform_bounds

    _, scenes, _ = published
    sid, paths = next(iter(scenes.items()))
    with rasterio.open(paths["image"]) as ds:
        w, s, e, n = transform_bounds(ds.crs, "EPSG:4326", *ds.bounds)
    mid = (w + e) / 2

    def box(x0, x1, value):
        ring = [[x0, s], [x1, s], [x1, n], [x0, n], [x0, s]]
        geom = {"type": "Polygon", "coordinates": [ring]}
        return {"type": "Feature", "properties": {"kind": value}, "geometry": geom}

    polygons = tmp_path / "labels.geojson"
    polygons.write_text(
        json.dumps(
            {"type": "FeatureCollection", "features": [box(w, mid, "10"), box(mid, e, "30")]}
        )
    )
    doc = stac.describe(sid, {"image": paths["image"]})
    doc["assets"]["polygons"] = {"href": "./labels.geojson", "type": "application/geo+json"}
    (tmp_path / "items.json").write_text(json.dumps(stac.item_collection([doc])))
    data = {
        "stac": [
            {
                "items": "items.json",
                "labels": "polygons",
                "vector": {"attribute": "kind", "values": {"10": 0, "30": 2}},
            }
        ],
        "classes": [{"name": f"class{k}"} for k in range(3)],
    }
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text(yaml.safe_dump({"data": data}))
    from reseg.config import load_config

    (scene,) = load_config(cfg_file).data.scenes
    assert scene.vector.path == str(polygons) and scene.labels is None
    out = tmp_path / "out"
    argv = ["predict", "--model", str(cnn_dir), "--config", str(cfg_file), scene.image]
    assert main([*argv, "--out", str(out), *OPTS]) == 0
    metrics = json.loads((out / f"{paths['image'].stem}.metrics.json").read_text())
    assert metrics["pixels"] > 0.9 * 80 * 100


def test_labels_from_label_items_linked_to_their_source(published, tmp_path):
    """A catalog with image items and label items (label extension: `label:type`, a `source`
    link to the image item): the label items are not scenes, and each scene's labels are the
    asset of the label item that links to it."""
    from reseg.config import load_config

    _, scenes, _ = published
    links = []
    for sid, paths in scenes.items():
        (tmp_path / sid).mkdir()
        img = stac.describe(sid, {"image": paths["image"]})
        (tmp_path / sid / f"{sid}.json").write_text(json.dumps(img))
        lab = stac.describe(f"{sid}-labels", {"raster": paths["labels"]})
        lab["properties"].update({"label:type": "raster", "label:description": "land cover"})
        lab["links"] = [{"rel": "source", "href": f"../{sid}/{sid}.json"}]
        (tmp_path / f"{sid}-labels").mkdir()
        (tmp_path / f"{sid}-labels" / f"{sid}-labels.json").write_text(json.dumps(lab))
        links += [{"rel": "item", "href": f"./{d}/{d}.json"} for d in (sid, f"{sid}-labels")]
    (tmp_path / "catalog.json").write_text(json.dumps({"type": "Catalog", "links": links}))
    import yaml

    data = {
        "stac": [{"items": "catalog.json", "labels": "raster"}],
        "classes": [{"name": n} for n in ("a", "b", "c")],
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({"data": data}))
    got = [(s.scene_id, s.labels) for s in load_config(tmp_path / "c.yaml").data.scenes]
    assert got == [(sid, str(p["labels"])) for sid, p in scenes.items()]


def test_predict_the_shipped_example_items_with_their_labels(cnn_dir, tmp_path):
    """`reseg predict --stac examples/stac/items.json --stac-labels labels`: every item scored
    (the unlabelled role of scene-c is the pipeline's business, not prediction's)."""
    from tests.conftest import REPO

    items = REPO / "examples" / "stac" / "items.json"
    out = tmp_path / "out"
    argv = ["predict", "--model", str(cnn_dir), "--stac", str(items), "--stac-labels", "labels"]
    assert main([*argv, "--out", str(out), *OPTS]) == 0
    for sid in ("scene-a", "scene-b", "scene-c"):
        assert json.loads((out / f"{sid}.metrics.json").read_text())["pixels"] == 128 * 128
        item = json.loads((out / f"{sid}{ITEM_SUFFIX}").read_text())
        assert item["properties"]["datetime"].startswith("2024-06-0")


def test_an_https_asset_with_a_bucket_alternate_is_read_from_the_bucket(tmp_path):
    """Public archives (Earth Search) give https hrefs and the bucket copy as an alternate
    (alternate-assets extension): the scene is read from the bucket."""
    doc = {
        "type": "Feature",
        "id": "s2",
        "properties": {},
        "assets": {
            "visual": {
                "href": "https://sentinel-cogs.example/tiles/s2/TCI.tif",
                "alternate": {"s3": {"href": "s3://sentinel-cogs/tiles/s2/TCI.tif"}},
            }
        },
    }
    items = tmp_path / "items.json"
    items.write_text(json.dumps(stac.item_collection([doc])))
    (entry,) = stac.scene_dicts(items, "visual")
    assert entry["image"] == "s3://sentinel-cogs/tiles/s2/TCI.tif" and entry["id"] == "s2"


@pytest.mark.slow
def test_reseg_run_on_the_shipped_example_publishes_stac_that_odc_stac_loads(tmp_path):
    """The example config end to end (`reseg run examples/stac_items.yaml`, its scenes read
    from the shipped items): every scene's prediction is a valid item, derived from its
    source item, that odc-stac loads back equal to the COGs."""
    import subprocess
    import sys

    import odc.stac
    import pystac

    from reseg import layout
    from tests.conftest import REPO

    root = tmp_path / "root"
    config = REPO / "examples" / "stac_items.yaml"
    run = subprocess.run(
        [sys.executable, "-m", "reseg", "run", str(config), "--root", str(root)],
        cwd=REPO, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    out = layout.predictions_dir(root)
    coll = pystac.Collection.from_file(str(out / COLLECTION))
    items = sorted(coll.get_items(), key=lambda i: i.id)
    assert [i.id for i in items] == ["scene-a", "scene-b", "scene-c"]
    source = REPO / "examples" / "stac" / "items.json"
    for item in items:
        path = out / f"{item.id}{ITEM_SUFFIX}"
        stac.validate(json.loads(path.read_text()), path)
        assert [x.href for x in item.links if x.rel == "derived_from"] == [str(source)]
        ds = odc.stac.load([item], bands=["classes", "confidence"], chunks=None)
        with rasterio.open(out / f"{item.id}.tif") as c:
            assert np.array_equal(ds["classes"].values[0], c.read(1))
        with rasterio.open(out / f"{item.id}.confidence.tif") as f:
            assert np.array_equal(ds["confidence"].values[0], f.read(1))
