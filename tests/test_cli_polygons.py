"""Label polygons through the CLI: none on the image is an error, a thin cover a warning
with its share, and self-intersecting polygons are repaired (and said so)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from reseg import layout
from reseg.artifacts import TileSet
from reseg.cli import main
from tests.rasters import config_dict, scene

# tests.rasters' scene: EPSG:32632, 10 m pixels, x 500,000..501,200, y 6,199,000..6,200,000


def polygons(path: Path, rings: list[list[tuple[float, float]]], crs: str = "EPSG:32632") -> Path:
    fc = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "id": i,
                "properties": {},
                "geometry": {"type": "Polygon", "coordinates": [ring]},
            }
            for i, ring in enumerate(rings)
        ],
    }
    fc["crs"] = {"type": "name", "properties": {"name": crs}}
    path.write_text(json.dumps(fc))
    return path


def tile_with(tmp_path: Path, vector: Path, capsys) -> tuple[int, str, Path]:
    img, _ = scene(tmp_path)
    raw = config_dict(img, None, classes=2)
    raw["data"]["scenes"][0]["vector"] = {"path": str(vector), "burn_class": 1, "background": 0}
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    root = tmp_path / "root"
    code = main(["tile", str(cfg), "--root", str(root)])
    return code, capsys.readouterr().err, root


def square(x0: float, y0: float, side: float) -> list[tuple[float, float]]:
    return [(x0, y0), (x0 + side, y0), (x0 + side, y0 + side), (x0, y0 + side), (x0, y0)]


def test_polygons_that_miss_the_image_are_an_error(tmp_path, capsys):
    far = polygons(tmp_path / "far.geojson", [square(100.0, 10.0, 1.0)], crs="EPSG:4326")
    code, err, root = tile_with(tmp_path, far, capsys)
    assert code == 3 and "Traceback" not in err
    (line,) = [ln for ln in err.splitlines() if ln.startswith("reseg tile: error: ")]
    assert line.startswith(
        f"reseg tile: error: {far}: no polygon overlaps image {tmp_path / 'scene.tif'}"
    )
    assert "image bounds (500000.0, 6199000.0, 501200.0, 6200000.0)" in line
    assert not list(root.glob("tiles*"))


def test_polygons_covering_little_of_the_image_are_a_warning_with_the_share(
    tmp_path, capsys, caplog
):
    small = polygons(tmp_path / "small.geojson", [square(500_100.0, 6_199_100.0, 100.0)])
    code, err, root = tile_with(tmp_path, small, capsys)
    assert code == 0
    logs = err + caplog.text  # the CLI's handler writes to stderr, or pytest's took it
    share = "polygons cover 0.83% of image"
    assert f"{small}: {share} {tmp_path / 'scene.tif'}, less than min_coverage 1.00%" in logs
    counts = TileSet.load(layout.tiles_dir(root)).manifest["counts"]["class_pixels_per_fold"]
    assert sum(f[1] for f in counts) == 100  # 10 x 10 pixels burnt


def test_a_self_intersecting_polygon_is_repaired_and_reported(tmp_path, capsys, caplog):
    # a bow tie: two triangles of 400 pixels each, meeting at (500300, 6199700)
    bowtie = [(500_100.0, 6_199_900.0), (500_500.0, 6_199_500.0), (500_500.0, 6_199_900.0),
              (500_100.0, 6_199_500.0), (500_100.0, 6_199_900.0)]  # fmt: skip
    ok = square(500_700.0, 6_199_100.0, 200.0)
    vec = polygons(tmp_path / "bowtie.geojson", [ok, bowtie])
    code, err, root = tile_with(tmp_path, vec, capsys)
    assert code == 0
    assert (
        f"{vec}: 1 invalid (self-intersecting) polygon(s) repaired with shapely.make_valid "
        "before rasterising: feature(s) 1" in err + caplog.text
    )
    counts = TileSet.load(layout.tiles_dir(root)).manifest["counts"]["class_pixels_per_fold"]
    burnt = sum(f[1] for f in counts)
    assert abs(burnt - (400 + 800)) <= 40  # the square and both triangles, up to edge pixels
