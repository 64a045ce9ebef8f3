"""`reseg predict` on the demo scene (Landsat) and the Sentinel-2 scene, and its errors."""

from __future__ import annotations

import json

import numpy as np
import rasterio
from rio_cogeo.cogeo import cog_validate

from reseg.cli import main
from tests.components.predictor.helpers import save_model, small_cnn, smooth_image
from tests.conftest import REPO
from tests.rasters import write_raster

DEMO_CLASSES = (
    "developed",
    "agriculture",
    "herbaceous",
    "shrubland",
    "forest",
    "water",
    "sediment",
)


def _check_georeferenced_with_colours(image, out, scene, n_classes):
    with rasterio.open(image) as src, rasterio.open(out / f"{scene}.tif") as ds:
        assert ds.crs == src.crs and ds.crs is not None
        assert ds.transform.almost_equals(src.transform) and ds.shape == src.shape
        cmap = ds.colormap(1)
        assert all(cmap[i][3] == 255 for i in range(n_classes)) and cmap[255][3] == 0
        cls = ds.read(1)
        with rasterio.open(out / f"{scene}.confidence.tif") as conf:
            assert conf.crs == src.crs and conf.transform.almost_equals(src.transform)
        if src.nodata is not None:
            nodata = (src.read() == src.nodata).any(0)
            assert (cls[nodata] == 255).all() and (cls[~nodata] < n_classes).all()
    assert cog_validate(out / f"{scene}.tif", quiet=True)[0]
    assert (out / f"{scene}.preview.png").stat().st_size > 1000


def test_predict_the_demo_scene_with_its_config(landsat, tmp_path, capsys):
    model = save_model(
        tmp_path / "m",
        small_cnn(5, 7, seed=3),
        bands=5,
        classes=7,
        dtype="float32",
        mean=75.0,
        std=20.0,
        output_stride=2,
        nodata=-99999.0,
        class_names=DEMO_CLASSES,
        label_values={str(v): v - 1 for v in range(1, 8)},
    )
    image = landsat / "landsat_multiband.tif"
    out = tmp_path / "out"
    rc = main(
        [
            "predict",
            "--model",
            str(model),
            str(image),
            "--out",
            str(out),
            "--config",
            str(REPO / "examples" / "demo_landsat.yaml"),
            "--no-progress",
            "--tile-size",
            "128",
        ]
    )
    assert rc == 0
    _check_georeferenced_with_colours(image, out, "landsat_multiband", 7)
    metrics = json.loads((out / "landsat_multiband.metrics.json").read_text())
    assert metrics["class_names"] == list(DEMO_CLASSES) and metrics["pixels"] > 100_000
    printed = capsys.readouterr().out
    assert "landsat_multiband:" in printed and "mIoU" in printed and "water" in printed


def test_predict_the_sentinel2_scene_scored_against_parcel_polygons(shared_data, tmp_path, capsys):
    model = save_model(
        tmp_path / "m",
        small_cnn(3, 2, seed=6),
        bands=3,
        classes=2,
        mean=900.0,
        std=200.0,
        output_stride=2,
        class_names=("not_field", "field"),
    )
    folder = shared_data / "sentinel2_dk_fields"
    image, shp = folder / "RGB_small.tif", folder / "marker2016_small.shp"
    base = ["predict", "--model", str(model), str(image), "--no-progress", "--tta", "identity,flip"]
    assert (
        main(
            [
                *base,
                "--out",
                str(tmp_path / "a"),
                "--config",
                str(REPO / "examples" / "sentinel2_fields.yaml"),
            ]
        )
        == 0
    )
    _check_georeferenced_with_colours(image, tmp_path / "a", "RGB_small", 2)
    assert (
        main(
            [
                *base,
                "--out",
                str(tmp_path / "b"),
                "--labels",
                str(shp),
                "--burn-class",
                "1",
                "--background",
                "0",
                "--label-encoding",
                "latin-1",
            ]
        )
        == 0
    )
    a = json.loads((tmp_path / "a" / "RGB_small.metrics.json").read_text())
    b = json.loads((tmp_path / "b" / "RGB_small.metrics.json").read_text())
    assert a["confusion"] == b["confusion"] and a["pixels"] == 413 * 452
    with rasterio.open(tmp_path / "a" / "RGB_small.tif") as ds:
        cls = ds.read(1)
    cm = np.array(a["confusion"])
    assert cm.sum(0).tolist() == np.bincount(cls.ravel(), minlength=2).tolist()
    assert "field" in capsys.readouterr().out


def test_cli_errors_name_what_differs(cnn_dir, shared_data, tmp_path, capsys):
    png = shared_data / "potsdam" / "img_dir" / "2_10_0_0_512_512.png"
    rc = main(
        ["predict", "--model", str(cnn_dir), str(png), "--out", str(tmp_path), "--no-progress"]
    )
    assert rc == 3
    err = capsys.readouterr().err
    assert (
        "image has 3 bands but the model was trained on 4 bands" in err and "Traceback" not in err
    )
    rc = main(["predict", "--model", str(tmp_path / "none"), str(png), "--out", str(tmp_path)])
    assert rc == 5 and "model not found" in capsys.readouterr().err
    rc = main(
        ["predict", "--model", str(cnn_dir), str(png), "--out", str(tmp_path), "--overlap", "3"]
    )
    assert rc == 2 and "overlap must be even" in capsys.readouterr().err
    shp = shared_data / "sentinel2_dk_fields" / "marker2016_small.shp"
    four = write_raster(tmp_path.parent / f"{tmp_path.name}-four.tif", smooth_image(4, 40, 40))
    rc = main(
        [
            "predict",
            "--model",
            str(cnn_dir),
            str(four),
            "--out",
            str(tmp_path),
            "--labels",
            str(shp),
        ]
    )
    assert rc == 3 and "vector labels need to know" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
