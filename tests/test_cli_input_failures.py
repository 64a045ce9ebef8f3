"""Issue 28's smaller failures through the CLI: one line, the exit code of its kind, and nothing
made by a run that fails on its inputs, also when the error is found inside a Beam job."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml

from reseg.cli import main
from tests.components.predictor.helpers import conv1x1, save_model
from tests.rasters import config_dict, scene, write_raster


def one_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [x for x in err.strip().splitlines() if " reseg." not in x]  # reseg's own records
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def config(tmp_path: Path, raw: dict) -> str:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    return str(cfg)


def test_one_fold_is_a_config_error(tmp_path, capsys):
    img, lab = scene(tmp_path, height=40, width=40)
    raw = config_dict(img, lab)
    raw["tiling"]["folds"] = 1
    root = tmp_path / "root"
    assert main(["run", config(tmp_path, raw), "--root", str(root)]) == 2
    line = one_line(capsys)
    assert "tiling.folds" in line and "greater than or equal to 2" in line
    assert not root.exists()


def test_a_folder_given_as_the_config_is_a_config_error(tmp_path, capsys):
    root = tmp_path / "root"
    assert main(["tile", str(tmp_path), "--root", str(root)]) == 2
    assert one_line(capsys).endswith(f"{tmp_path}: is a folder, expected a config file")
    assert not root.exists()


def _labels_outside_the_class_map(tmp_path: Path) -> dict:
    img, _ = scene(tmp_path, height=40, width=40)
    lab = np.zeros((40, 40), "uint8")
    lab[3, 3] = 7
    write_raster(tmp_path / "lab.tif", lab)
    return config_dict(img, tmp_path / "lab.tif")


def _all_nodata(tmp_path: Path) -> dict:
    write_raster(tmp_path / "img.tif", np.full((2, 30, 30), -1, "int16"), nodata=-1)
    write_raster(tmp_path / "lab.tif", np.ones((30, 30), "uint8"))
    return config_dict(tmp_path / "img.tif", tmp_path / "lab.tif")


def _truncated(tmp_path: Path) -> dict:
    img, lab = scene(tmp_path, height=200, width=200, bands=3)
    data = img.read_bytes()
    img.write_bytes(data[: len(data) // 2])
    return config_dict(img, lab)


@pytest.mark.parametrize(
    ("make", "needle"),
    [
        (_labels_outside_the_class_map, "outside the class map"),
        (_all_nodata, "every pixel is nodata"),
        (_truncated, "cannot read pixels"),
    ],
)
def test_an_input_error_found_inside_beam_leaves_no_root(tmp_path, capsys, make, needle):
    """The scenes' headers pass; the Beam job finds the error: no root, config.json, mlflow.db."""
    raw = make(tmp_path)
    raw["tracking"] = {"enabled": True}
    root = tmp_path / "root"
    assert main(["run", config(tmp_path, raw), "--root", str(root)]) == 3
    assert needle in one_line(capsys)
    assert not root.exists(), sorted(p.name for p in root.rglob("*"))


def test_an_input_error_in_an_existing_root_keeps_what_was_there(tmp_path, capsys):
    root = tmp_path / "root"
    root.mkdir()
    (root / "notes.txt").write_text("mine")
    raw = _all_nodata(tmp_path)
    assert main(["run", config(tmp_path, raw), "--root", str(root)]) == 3
    one_line(capsys)
    assert (root / "notes.txt").read_text() == "mine"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return save_model(tmp_path_factory.mktemp("model") / "m", conv1x1(3, 3), bands=3, classes=3)


def test_predict_on_a_truncated_scene_leaves_no_out(tmp_path, capsys, model_dir):
    img, _ = scene(tmp_path, height=200, width=200, bands=3)
    data = img.read_bytes()
    img.write_bytes(data[: len(data) // 2])
    out = tmp_path / "out"
    code = main(["predict", "--model", str(model_dir), str(img), "--out", str(out)])
    assert code == 3
    assert str(img) in one_line(capsys)
    assert not out.exists(), sorted(p.name for p in out.rglob("*"))


@pytest.mark.parametrize("damage", ["overwritten", "member"])
def test_a_corrupt_model_says_so(tmp_path, capsys, model_dir, damage):
    bad = tmp_path / "m"
    bad.mkdir()
    for f in model_dir.iterdir():
        (bad / f.name).write_bytes(f.read_bytes())
    keras_file = bad / "model.keras"
    if damage == "overwritten":
        keras_file.write_bytes(b"\x00" * keras_file.stat().st_size)
    else:  # a zip whose weights member is garbage
        with zipfile.ZipFile(model_dir / "model.keras") as src:
            members = {n: src.read(n) for n in src.namelist()}
        with zipfile.ZipFile(keras_file, "w") as dst:
            for n, data in members.items():
                dst.writestr(n, b"garbage" if n.endswith(".h5") else data)
    img, _ = scene(tmp_path, height=40, width=40, bands=3)
    out = tmp_path / "out"
    assert main(["predict", "--model", str(bad), str(img), "--out", str(out)]) == 5
    line = one_line(capsys)
    assert f"{keras_file}: corrupt model file" in line, line
    assert "File not found" not in line
    assert not out.exists()


KILLED_REPORT = """
import os, signal, sys
import reseg.report
from reseg.cli import main

def killed(*a, **k):  # kill -9 after report.md is written, before report.html
    os.kill(os.getpid(), signal.SIGKILL)

reseg.report.to_html = killed
main(["report", sys.argv[1]])
"""


def test_the_report_is_staged_so_a_killed_report_leaves_no_report_folder(tmp_path, demo_root):
    import shutil
    import signal
    import subprocess
    import sys

    from reseg import artifacts

    root = tmp_path / "root"
    shutil.copytree(demo_root, root)
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_REPORT, str(root)], capture_output=True, timeout=300
    )
    assert killed.returncode == -signal.SIGKILL
    assert not (root / "report").exists()
    (staging,) = root.glob("report.tmp-*")
    assert (staging / "report.md").exists()  # what the killed run wrote, never published
    assert main(["report", str(root)]) == 0
    assert artifacts.read_manifest(root / "report")["step"] == "report"
    assert (root / "report" / "report.html").exists()
    assert not list(root.glob("report.tmp-*"))


def test_polygons_in_a_projected_crs_without_their_crs_are_one_line(tmp_path):
    """GeoJSON without 'crs' is longitude/latitude: UTM coordinates in it make PROJ fail (fiona
    logs its 'Invalid latitude' errors, shown only with -v) and reseg say why, once."""
    import json
    import os
    import subprocess
    import sys

    img, _ = scene(tmp_path)  # EPSG:32632
    x0, y0 = 500_100, 6_199_100
    ring = [(x0, y0), (x0 + 500, y0), (x0 + 500, y0 + 500), (x0, y0 + 500), (x0, y0)]
    vec = tmp_path / "utm.geojson"
    feature = {"type": "Feature", "id": 0, "properties": {}}
    feature["geometry"] = {"type": "Polygon", "coordinates": [ring]}
    vec.write_text(json.dumps({"type": "FeatureCollection", "features": [feature]}))
    raw = config_dict(img, None, classes=2)
    raw["data"]["scenes"][0]["vector"] = {"path": str(vec), "burn_class": 1, "background": 0}
    cfg = config(tmp_path, raw)
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    out = subprocess.run(
        [sys.executable, "-m", "reseg", "tile", cfg, "--root", str(tmp_path / "r")],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert out.returncode == 3
    (line,) = out.stderr.strip().splitlines()
    assert line.startswith(f"reseg tile: error: {vec}: feature 0 cannot be transformed")
    assert "a shapefile without its .prj, GeoJSON without 'crs'" in line
    assert not (tmp_path / "r").exists()


def test_storage_and_gdal_library_records_stay_behind_verbose():
    import logging

    from reseg.quiet import OwnMessages

    def passes(name: str) -> bool:
        record = logging.LogRecord(name, logging.ERROR, __file__, 1, "m", None, None)
        return OwnMessages().filter(record)

    for name in ("fiona._env", "gcsfs", "gcsfs.retry", "aiohttp.client", "botocore", "asyncio"):
        assert not passes(name), name
    assert passes("tensorflow") and passes("reseg.x")
