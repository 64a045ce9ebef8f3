"""Bad inputs through the CLI: one clear message naming the file or key, a non-zero exit,
no traceback, and no output directory left behind."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from reseg.cli import main
from tests.rasters import config_dict, scene, write_raster


def run_cli(tmp_path: Path, raw: dict | str, capsys) -> tuple[int, str, Path]:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(raw if isinstance(raw, str) else yaml.safe_dump(raw))
    root = tmp_path / "root"
    code = main(["tile", str(cfg), "--root", str(root)])
    err = capsys.readouterr().err
    return code, err, root


def assert_clean_failure(code: int, err: str, root: Path, *needles: str) -> None:
    assert code != 0
    assert "Traceback" not in err
    for n in needles:
        assert n in err, f"{n!r} not in {err!r}"
    leftovers = [p.name for p in root.glob("tiles*")] if root.exists() else []
    assert leftovers == [], leftovers


def test_missing_image(tmp_path, capsys):
    raw = config_dict(tmp_path / "nope.tif", None)
    code, err, root = run_cli(tmp_path, raw, capsys)
    assert_clean_failure(code, err, root, "nope.tif", "not found")


def test_corrupt_tiff(tmp_path, capsys):
    bad = tmp_path / "bad.tif"
    bad.write_bytes(
        b"II*\x00" + bytes(np.random.default_rng(0).integers(0, 255, 500, dtype=np.uint8))
    )
    code, err, root = run_cli(tmp_path, config_dict(bad, None), capsys)
    assert_clean_failure(code, err, root, "bad.tif", "cannot open image raster")


def test_truncated_tiff(tmp_path, capsys):
    img, lab = scene(tmp_path, height=200, width=200, bands=3)
    data = img.read_bytes()
    img.write_bytes(data[: len(data) // 2])
    code, err, root = run_cli(tmp_path, config_dict(img, lab), capsys)
    assert_clean_failure(code, err, root, str(img))
    assert "cannot" in err


def test_image_and_label_of_different_size_without_georeference(tmp_path, capsys):
    write_raster(tmp_path / "img.png", np.ones((3, 40, 40), "uint8"), crs=None, driver="PNG")
    write_raster(tmp_path / "lab.png", np.ones((30, 40), "uint8"), crs=None, driver="PNG")
    code, err, root = run_cli(
        tmp_path, config_dict(tmp_path / "img.png", tmp_path / "lab.png"), capsys
    )
    assert_clean_failure(code, err, root, "lab.png", "30x40", "40x40", "same size")


def test_label_grid_that_does_not_overlap_the_image(tmp_path, capsys):
    from rasterio.transform import from_origin

    write_raster(tmp_path / "img.tif", np.ones((2, 30, 30), "uint16"))
    write_raster(
        tmp_path / "lab.tif",
        np.ones((30, 30), "uint8"),
        transform=from_origin(900_000, 1_000_000, 10, 10),
    )
    code, err, root = run_cli(
        tmp_path, config_dict(tmp_path / "img.tif", tmp_path / "lab.tif"), capsys
    )
    assert_clean_failure(code, err, root, "lab.tif", "does not overlap")


def test_scenes_with_different_band_counts(tmp_path, capsys):
    a, la = scene(tmp_path, "a", bands=3)
    b, lb = scene(tmp_path, "b", bands=4)
    raw = config_dict(a, la)
    raw["data"]["scenes"].append({"image": str(b), "labels": str(lb)})
    code, err, root = run_cli(tmp_path, raw, capsys)
    assert_clean_failure(code, err, root, "b.tif", "4 bands", "a.tif", "3")


def test_label_values_outside_the_class_map_are_listed(tmp_path, capsys):
    img, _ = scene(tmp_path, height=40, width=40)
    lab = np.zeros((40, 40), "uint8")
    lab[3, 3], lab[30, 30] = 7, 9
    write_raster(tmp_path / "lab.tif", lab)
    code, err, root = run_cli(tmp_path, config_dict(img, tmp_path / "lab.tif"), capsys)
    assert_clean_failure(code, err, root, "lab.tif", "outside the class map", "7, 9")


def test_label_values_outside_the_class_map_can_be_ignored(tmp_path, capsys):
    img, _ = scene(tmp_path, height=40, width=40)
    lab = np.zeros((40, 40), "uint8")
    lab[3, 3] = 7
    write_raster(tmp_path / "lab.tif", lab)
    raw = config_dict(img, tmp_path / "lab.tif")
    raw["data"]["unknown_labels"] = "ignore"
    code, _, root = run_cli(tmp_path, raw, capsys)
    assert code == 0 and (root / "tiles" / "manifest.json").exists()


def test_all_nodata_scene(tmp_path, capsys):
    write_raster(tmp_path / "img.tif", np.full((2, 30, 30), -1, "int16"), nodata=-1)
    write_raster(tmp_path / "lab.tif", np.ones((30, 30), "uint8"))
    code, err, root = run_cli(
        tmp_path, config_dict(tmp_path / "img.tif", tmp_path / "lab.tif"), capsys
    )
    assert_clean_failure(code, err, root, "img.tif", "every pixel is nodata")


def test_nan_pixels_as_an_error_when_the_config_says_so(tmp_path, capsys):
    img = np.ones((2, 30, 30), "float32")
    img[1, 4, 4] = np.nan
    write_raster(tmp_path / "img.tif", img)
    write_raster(tmp_path / "lab.tif", np.ones((30, 30), "uint8"))
    raw = config_dict(tmp_path / "img.tif", tmp_path / "lab.tif")
    raw["data"]["nan"] = "error"
    code, err, root = run_cli(tmp_path, raw, capsys)
    assert_clean_failure(code, err, root, "img.tif", "1 pixels are NaN")


def test_empty_polygon_file(tmp_path, capsys):
    img, _ = scene(tmp_path)
    empty = tmp_path / "empty.geojson"
    empty.write_text(json.dumps({"type": "FeatureCollection", "features": []}))
    raw = config_dict(img, None)
    raw["data"]["scenes"][0]["vector"] = {"path": str(empty), "burn_class": 1}
    code, err, root = run_cli(tmp_path, raw, capsys)
    assert_clean_failure(code, err, root, "empty.geojson", "no features")


@pytest.mark.parametrize(
    "patch, needles",
    [
        (
            {"tiling": {"tile_size": 32, "overlap": 8, "folds": 3, "shard_rows": 2, "tiel": 3}},
            ["tiling.tiel", "unknown key"],
        ),
        ({"tiling": {"tile_size": "large"}}, ["tiling.tile_size", "integer", "'large'"]),
    ],
)
def test_bad_yaml(tmp_path, capsys, patch, needles):
    img, lab = scene(tmp_path)
    raw = config_dict(img, lab)
    raw.update(patch)
    code, err, root = run_cli(tmp_path, raw, capsys)
    assert_clean_failure(code, err, root, "config.yaml", *needles)
    assert code == 2


def test_unknown_pipeline_step(tmp_path, capsys):
    img, lab = scene(tmp_path)
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(config_dict(img, lab)))
    root = tmp_path / "root"
    code = main(["run", str(cfg), "--root", str(root), "--steps", "tile,train"])
    err = capsys.readouterr().err
    assert code == 2 and "--steps" in err and "'train'" in err and "rounds" in err
    assert not root.exists()


def test_run_with_steps_runs_only_those(tmp_path, capsys):
    img, lab = scene(tmp_path)
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(config_dict(img, lab)))
    root = tmp_path / "root"
    assert main(["run", str(cfg), "--root", str(root), "--steps", "stats,tile"]) == 0
    assert (root / "tiles" / "manifest.json").exists() and (root / "stats" / "stats.json").exists()
    assert not (root / "rounds").exists()


@pytest.mark.parametrize("command", ["run", "tile", "train", "score", "select", "merge", "export"])
def test_a_user_error_leaves_no_root_behind(tmp_path, capsys, command):
    """Inputs are checked before anything is created: no --root, mlflow.db or config.json."""
    raw = config_dict(tmp_path / "nope.tif", None)
    raw["tracking"] = {"enabled": True}
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    root = tmp_path / "root"
    code = main([command, str(cfg), "--root", str(root)])
    err = capsys.readouterr().err
    assert code != 0 and "Traceback" not in err
    assert ("nope.tif" in err) if command in ("run", "tile") else ("tiles" in err)
    assert not root.exists()


def test_a_root_that_is_a_file_is_one_clear_line(tmp_path, capsys):
    img, lab = scene(tmp_path, height=64, width=64, bands=2)
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(config_dict(img, lab)))
    root = tmp_path / "root"
    root.write_text("not a folder")
    code = main(["run", str(cfg), "--root", str(root)])
    err = capsys.readouterr().err
    assert code != 0 and "Traceback" not in err
    assert f"{root}: is a file, expected a folder" in err and code == 9
    assert root.read_text() == "not a folder"


def test_beam_options_after_the_config_reach_beam(tmp_path, capsys):
    """`reseg tile CONFIG --root R -- BEAM_OPTIONS` (the README's form) is accepted."""
    img, lab = scene(tmp_path, height=64, width=64, bands=2)
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(config_dict(img, lab)))
    root = tmp_path / "root"
    code = main(["tile", str(cfg), "--root", str(root), "--", "--direct_num_workers=1"])
    assert code == 0, capsys.readouterr().err
    assert (root / "tiles" / "manifest.json").exists()


def test_a_missing_study_file_leaves_no_root(tmp_path, capsys):
    root = tmp_path / "study-root"
    code = main(["study", str(tmp_path / "missing.yaml"), "--root", str(root)])
    err = capsys.readouterr().err
    assert code != 0 and "missing.yaml" in err and "Traceback" not in err
    assert not root.exists()


def test_unknown_steps_in_the_api_are_a_config_error_before_anything_is_made(tmp_path):
    from reseg.errors import ConfigError
    from reseg.pipeline import run_pipeline

    img, lab = scene(tmp_path, height=64, width=64, bands=2)
    from reseg.config import parse_config

    cfg = parse_config(config_dict(img, lab))
    with pytest.raises(ConfigError, match="unknown step"):
        run_pipeline(cfg, tmp_path / "root", steps=["tile", "stat"])
    assert not (tmp_path / "root").exists()


def test_serve_predict_without_scenes_or_out_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    base = ["serve-predict", "--url", "http://127.0.0.1:9", "--model", "m"]
    for args in ([*base, "--out", "out"], [*base, "scene.tif"]):
        assert main(args) != 0
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].endswith("give SCENE... --out DIR: the scenes to segment and where to write")
    assert list(tmp_path.iterdir()) == []
