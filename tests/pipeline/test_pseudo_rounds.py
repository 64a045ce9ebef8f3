"""Pseudo-label rounds through `run_pipeline`: a labelled scene with a target region, an
unlabelled scene and a target scene; target labels reach no trained weight."""

from __future__ import annotations

import json
import sqlite3

import numpy as np
import pytest
import rasterio

from reseg import layout
from reseg.artifacts import Model, PseudoLabels
from reseg.config import parse_config
from reseg.pipeline import run_pipeline
from tests.rasters import config_dict, scene, write_raster

pytestmark = pytest.mark.slow  # two whole pipelines (tile, stats, two rounds, report)

C = 3


def pseudo_config(tmp, target_labels):
    a, b, c = (scene(tmp, n, height=64, width=72, classes=C, seed=s) for s, n in enumerate("abc"))
    ta = write_raster(tmp / "a_target.tif", target_labels(a[1]))
    tc = write_raster(tmp / "c_target.tif", target_labels(c[1]))
    raw = config_dict(*a, classes=C, tile_size=32, overlap=8, folds=3, block_size=24)
    raw["data"]["scenes"] = [
        # a's labels outside the target region are the same in both runs; inside they differ
        {
            "id": "a",
            "image": str(a[0]),
            "labels": str(ta),
            "target_blocks": {"rows": [0, 2], "cols": [0, 1]},
        },
        {"id": "b", "image": str(b[0]), "role": "unlabelled"},
        {"id": "c", "image": str(c[0]), "labels": str(tc), "role": "target"},
    ]
    raw["model"] = {"name": "unet", "params": {"depth": 2, "base_filters": 4}}
    raw["train"] = {"epochs": 1, "batch_size": 8, "deterministic": True, "progress": "log"}
    raw["rounds"] = {"count": 1, "pseudo": {"grow": {"start": 20, "step": 5, "max": 50}}}
    raw["tracking"] = {"enabled": True}
    return parse_config(raw)


def read(path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read(1)


def as_is(path):
    return read(path)


def other_in_region(path):
    """Labels changed where scene a's target region lies (rows < 48, cols < 24) and in all of c."""
    lab = read(path)
    out = lab.copy()
    region = np.zeros(lab.shape, bool)
    region[:48, :24] = True
    if "c_" in str(path):
        region[:] = True
    out[region] = (lab[region] + 1) % C
    return out


@pytest.fixture(scope="module")
def two_roots(tmp_path_factory):
    """The same pipeline twice: target labels as they are, and changed."""
    roots = {}
    for name, fn in (("same", as_is), ("changed", other_in_region)):
        tmp = tmp_path_factory.mktemp(f"pseudo_{name}")
        cfg = pseudo_config(tmp, fn)
        results = run_pipeline(cfg, tmp / "root", steps=["tile", "stats", "rounds", "report"])
        roots[name] = (tmp / "root", cfg, results)
    return roots


def test_target_labels_reach_no_weight_and_no_pseudo_label(two_roots):
    (ra, _, res_a), (rb, _, res_b) = two_roots["same"], two_roots["changed"]
    for r in (0, 1):
        ma, mb = (Model.load(layout.model_dir(root, r, 0)) for root in (ra, rb))
        assert ma.manifest["weights_digest"] == mb.manifest["weights_digest"]
    for s in "abc":
        np.testing.assert_array_equal(
            read(layout.pseudo_dir(ra, 0, 0) / f"{s}.tif"),
            read(layout.pseudo_dir(rb, 0, 0) / f"{s}.tif"),
        )
    # ... while the target metrics do see them
    ta = res_a["rounds"][0].rounds[0].target
    tb = res_b["rounds"][0].rounds[0].target
    assert ta.values["pixels"] == tb.values["pixels"] > 0
    assert ta.values["confusion"] != tb.values["confusion"]


def test_round_one_trains_on_the_pseudo_labels_of_round_zero(two_roots):
    root, cfg, results = two_roots["same"]
    fold = results["rounds"][0]
    assert [r.selection for r in fold.rounds] == [None, None]
    p0, p1 = (PseudoLabels.load(layout.pseudo_dir(root, r, 0)) for r in (0, 1))
    model = Model.load(layout.model_dir(root, 1, 0))
    # round 0 trains on the labelled scene's tiles only (the others hold no training label)
    r0_files = Model.load(layout.model_dir(root, 0, 0)).manifest["inputs"]["files"]
    assert r0_files and all("/part-a-" in f for f in r0_files)
    assert all(str(p0.path) in f for f in model.manifest["inputs"]["files"])
    # CBST schedule: 20% after round 0, 25% after round 1
    assert {v["percent"] for v in p0.report["per_class"].values()} == {20}
    assert {v["percent"] for v in p1.report["per_class"].values()} == {25}
    assert all(v["jaccard_previous"] is not None for v in p1.report["per_class"].values())
    assert p0.report["target_judged"] > 0 and p0.report["accuracy"] is not None
    # the rasters open as GeoTIFFs on the scene grid, with a colour table
    with rasterio.open(p0.path / "b.tif") as src:
        assert (src.height, src.width) == (64, 72) and src.colormap(1)[1][3] == 255
    assert not (p0.path / "a_unused.tif").exists() and (p0.path / "a.tif").exists()
    assert fold.merged_target is not None


def test_report_and_mlflow_show_target_and_pseudo_label_figures(two_roots):
    root, _, _ = two_roots["same"]
    md = (layout.report_dir(root) / "report.md").read_text()
    assert (
        "### Target pixels and pseudo-labels, fold0" in md
        and "pseudo-label rounds: per predicted class" in md
    )
    table = [line for line in md.splitlines() if line.startswith("| r1 ")]
    assert len(table) == 2  # the round table and the target table
    db = sqlite3.connect(root / "mlflow.db")
    keys = {k for (k,) in db.execute("select distinct key from metrics")}
    assert {
        "target_mean_iou",
        "pseudo_accuracy",
        "pseudo_precision_c0",
        "pseudo_selected_c1",
    } <= keys
    rows = db.execute("select value from metrics where key = 'pseudo_selected'").fetchall()
    assert len(rows) == 2 and all(v > 0 for (v,) in rows)
    assert json.loads((layout.tiles_dir(root) / layout.MANIFEST).read_text())["counts"][
        "target_class_pixels"
    ]


def test_step_commands_print_the_pseudo_labels_and_target_metrics(two_roots, capsys):
    from reseg.cli import main

    root, _, _ = two_roots["same"]
    config = str(layout.config_file(root))  # the resolved config (JSON is YAML)
    assert main(["select", config, "--root", str(root), "--round", "1"]) == 0
    out = capsys.readouterr().out
    assert f"pseudo-labels: {layout.pseudo_dir(root, 1, 0)}" in out and "precision" in out
    assert main(["evaluate", config, "--root", str(root), "--round", "merged"]) == 0
    out = capsys.readouterr().out
    assert "merged fold0 target: mIoU" in out


def test_the_python_api_reads_the_same_artifacts(two_roots):
    import reseg

    root, cfg, results = two_roots["same"]
    p = reseg.Pipeline(cfg, root)
    assert (
        p.pseudo(round=0, fold=0).fingerprint == results["rounds"][0].rounds[0].pseudo.fingerprint
    )
    assert (
        p.evaluate_target(round=1, fold=0).mean_iou
        == results["rounds"][0].rounds[1].target.mean_iou
    )
