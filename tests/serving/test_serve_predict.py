"""Done when: `reseg export`, then `reseg serve-predict` against the stand-in, gives the class
map of `reseg predict` with the same model on the demo scene; the registry shows the version."""

from __future__ import annotations

import contextlib
import io
import json
import math

import numpy as np
import pytest
import rasterio
import yaml

from reseg import layout
from reseg.cli import main
from reseg.components.predictor.sliding import SlidingPlan
from tests.serving.standin import StandIn


@pytest.fixture(scope="module")
def exported_demo(tmp_path_factory, demo_rounds):
    """`reseg export --round merged` of the demo's trained rounds, in a root of its own."""
    ref_root, cfg, _ = demo_rounds
    cfg = cfg.model_copy(update={"export": cfg.export.model_copy(update={"validation": True})})
    root = tmp_path_factory.mktemp("serve_root")
    for name in ("tiles", "stats", "rounds", "merged"):
        (root / name).symlink_to(ref_root / name, target_is_directory=True)
    cfg_file = root / "config.yaml"
    cfg_file.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["export", str(cfg_file), "--root", str(root), "--round", "merged"]) == 0
    assert "as reseg version 1" in out.getvalue() and "registered as version 1" in out.getvalue()
    return root, cfg


def _read(path):
    with rasterio.open(path) as ds:
        return ds.read(1), ds.transform, ds.crs


@pytest.mark.slow
def test_serve_predict_gives_the_class_map_of_predict(exported_demo, tmp_path):
    root, cfg = exported_demo
    version = layout.export_dir(root, cfg.export.model_name) / "1"
    manifest = json.loads((version / "manifest.json").read_text())
    assert manifest["source"] == "merged" and manifest["validation"]["requests"] == 3
    scene = cfg.data.scenes[0].image
    opts = [
        "--tile-size",
        "256",
        "--overlap",
        "32",
        "--batch-size",
        "4",
        "--no-progress",
        "--no-preview",
    ]
    local = ["predict", "--model", str(layout.merged_dir(root, 0)), scene, "--out"]
    assert main([*local, str(tmp_path / "local"), *opts]) == 0
    with StandIn({cfg.export.model_name: version.parent}) as server:
        server.fail(2, only="predict")  # TF Serving overloaded for a moment
        server.drop(1, only="predict")  # and a connection lost mid-request
        remote = ["serve-predict", "--url", server.url, "--model", cfg.export.model_name]
        args = [*remote, scene, "--out", str(tmp_path / "remote"), "--backoff", "0.05", *opts]
        assert main(args) == 0
        plan = SlidingPlan.make(443, 489, 256, 32, 4)  # the demo scene; U-Net depth 2: stride 4
        batches = math.ceil(plan.num_tiles / 4)
        assert server.counts["predict"] == 1 + 3 + batches  # model_info, faults, the batches
    want, transform, crs = _read(tmp_path / "local" / "landsat_multiband.tif")
    got, got_transform, got_crs = _read(tmp_path / "remote" / "landsat_multiband.tif")
    assert (got_transform, got_crs) == (transform, crs)
    assert len(np.unique(want)) > 1  # a real class map, not a constant
    np.testing.assert_array_equal(got, want)
    conf_local = _read(tmp_path / "local" / "landsat_multiband.confidence.tif")[0]
    conf_remote = _read(tmp_path / "remote" / "landsat_multiband.confidence.tif")[0]
    np.testing.assert_array_equal(conf_remote, conf_local)


def test_the_registry_shows_the_export_version(exported_demo):
    from mlflow import MlflowClient

    root, cfg = exported_demo
    name = cfg.export.model_name
    client = MlflowClient(layout.tracking_uri(root))
    mv = client.get_model_version(name, "1")
    assert mv.tags["reseg.export_version"] == "1" and mv.source.endswith(f"export/{name}/1")
    assert client.get_run(mv.run_id).data.tags["reseg.step"] == "export"


@pytest.mark.slow
def test_serve_predict_applies_the_refine_tuning_as_predict_does(exported_demo, tmp_path, caplog):
    """`--tuning` (a tuning of `reseg tune-refine`) reaches the served model's prediction: the
    same tuned setting, message and class map as `reseg predict` of the model it was tuned for
    (which finds its tuning by itself); without it, the configured setting."""
    import logging

    root, cfg = exported_demo
    raw = cfg.model_dump(mode="json")
    tune = {"slic": {"size": ["150 m"], "compactness": [0.5]}, "bootstrap": 100}
    tune["only_if_better"] = False  # applied either way: the setting differs from the default
    raw["predict"].update(refine="slic", tune=tune, preview=False, progress=False)
    raw["tracking"]["enabled"] = False
    cfg_file = tmp_path / "refine.yaml"
    cfg_file.write_text(yaml.safe_dump(raw))
    assert main(["tune-refine", str(cfg_file), "--root", str(root)]) == 0
    tuning = layout.refine_dir(root, 0)
    version = layout.export_dir(root, cfg.export.model_name) / "1"
    scene = cfg.data.scenes[0].image
    opts = ["--config", str(cfg_file), "--tile-size", "256", "--overlap", "32"]

    def said() -> list[str]:
        out = [r.getMessage() for r in caplog.records if r.getMessage().startswith("refine ")]
        caplog.clear()
        return out

    with caplog.at_level(logging.INFO):
        model = str(layout.merged_dir(root, 0))
        assert main(["predict", "--model", model, scene, "--out", str(tmp_path / "p"), *opts]) == 0
        by_predict = said()
        with StandIn({cfg.export.model_name: version.parent}) as server:
            remote = ["serve-predict", "--url", server.url, "--model", cfg.export.model_name]
            out = str(tmp_path / "s")
            assert main([*remote, scene, "--out", out, "--tuning", str(tuning), *opts]) == 0
            by_serving = said()
            untuned = str(tmp_path / "u")
            assert main([*remote, scene, "--out", untuned, *opts]) == 0
            by_untuned = said()
    assert len(by_predict) == 1 and str(tuning) in by_predict[0]
    assert by_serving == by_predict
    assert by_untuned == [
        "refine slic: no tuning for this model; predict.slic as configured "
        "(`reseg tune-refine` tunes it on the validation pixels)"
    ]
    want = _read(tmp_path / "p" / "landsat_multiband.tif")[0]
    np.testing.assert_array_equal(_read(tmp_path / "s" / "landsat_multiband.tif")[0], want)
    assert (_read(tmp_path / "u" / "landsat_multiband.tif")[0] != want).any()


def test_serve_predict_reads_stac_items_and_publishes_its_outputs_as_stac(exported_demo, tmp_path):
    """`--stac` gives the scenes (ids from the items), and the outputs are published as valid
    STAC items naming the served model and version, as `reseg predict` publishes its own."""
    from reseg import stac

    root, cfg = exported_demo
    version = layout.export_dir(root, cfg.export.model_name) / "1"
    scene = cfg.data.scenes[0].image
    items = tmp_path / "items.json"
    doc = stac.describe("demo-scene", {"image": scene}, relative_to=tmp_path)
    items.write_text(json.dumps(stac.item_collection([doc])))
    out = tmp_path / "out"
    opts = ["--tile-size", "256", "--overlap", "32", "--no-progress", "--no-preview"]
    with StandIn({cfg.export.model_name: version.parent}) as server:
        remote = ["serve-predict", "--url", server.url, "--model", cfg.export.model_name]
        assert main([*remote, "--stac", str(items), "--out", str(out), *opts]) == 0
    item = json.loads((out / "demo-scene.item.json").read_text())
    stac.validate(item, out / "demo-scene.item.json")
    stac.validate(json.loads((out / "collection.json").read_text()), out / "collection.json")
    assert item["properties"]["reseg:served_model"] == cfg.export.model_name
    assert item["properties"]["reseg:served_version"] == 1
    assert [x["href"] for x in item["links"] if x["rel"] == "derived_from"] == [str(items)]
    assert (out / "demo-scene.tif").exists()
