"""Tiling: decoded tiles equal the source windows, folds are leakage-free, runs resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
import yaml

from reseg import layout
from reseg.artifacts import TileSet
from reseg.config import load_config, parse_config
from reseg.folds import held_folds
from reseg.tfrecords_schema import read_tiles
from tests.components.roots import tile
from tests.rasters import config_dict, scene, write_raster

REPO = Path(__file__).resolve().parents[2]


def read_all(path: str, bands=None) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with rasterio.open(path) as src:
            a = src.read(bands)
    a = np.moveaxis(a, 0, -1)
    return a[..., 0] if a.shape[-1] == 1 else a


def check_tiles_equal_source(
    ts: TileSet, image: np.ndarray, labels: np.ndarray, scene_id: str
) -> int:
    """Every tile of `scene_id` equals the scene window (padding outside); return the core pixel count."""
    h, w = labels.shape
    owner = np.zeros((h, w), np.int32)
    n = 0
    for t in read_tiles(list(ts.files)):
        if t.scene != scene_id:
            continue
        n += 1
        th, tw = t.label.shape
        r1, c1 = min(h, t.row + th), min(w, t.col + tw)
        np.testing.assert_array_equal(
            t.image[: r1 - t.row, : c1 - t.col], image[t.row : r1, t.col : c1]
        )
        np.testing.assert_array_equal(
            t.label[: r1 - t.row, : c1 - t.col], labels[t.row : r1, t.col : c1]
        )
        assert (t.label[r1 - t.row :, :] == 255).all() and (t.label[:, c1 - t.col :] == 255).all()
        assert (t.image[r1 - t.row :, :] == 0).all() and (t.valid[:, c1 - t.col :] == 0).all()
        r, c, ch, cw = t.core
        owner[r : r + ch, c : c + cw] += 1
    assert n > 0
    return int((owner == 1).sum())


def test_demo_tiles_equal_the_source_windows(demo_root, landsat):
    ts = TileSet.load(layout.tiles_dir(demo_root))
    img = read_all(str(landsat / "landsat_multiband.tif"))
    raw = read_all(str(landsat / "strata.tif"))
    nodata = -99999.0
    valid = ~(img == nodata).any(-1)
    labels = np.where(valid & (raw >= 1) & (raw <= 7), raw - 1, 255).astype("uint8")
    check_tiles_equal_source(ts, img, labels, "landsat")
    m = ts.manifest
    assert m["image_dtype"] == "float32" and m["bands"] == 5 and m["num_classes"] == 7
    # class counts of the manifest count each labelled scene pixel once (cores)
    counts = np.array(m["counts"]["class_pixels_per_fold"]).sum(0)
    np.testing.assert_array_equal(counts, np.bincount(labels[labels != 255], minlength=7))
    assert (ts.path / "config.json").exists()


@pytest.mark.parametrize(
    "example, image, labels, values",
    [
        (
            "potsdam.yaml",
            "potsdam/img_dir/2_10_0_0_512_512.png",
            "potsdam/ann_dir/2_10_0_0_512_512.png",
            6,
        ),
        (
            "vaihingen.yaml",
            "vaihingen/img_dir/area1_0_0_512_512.png",
            "vaihingen/ann_dir/area1_0_0_512_512.png",
            6,
        ),
        ("loveda.yaml", "loveda/img_dir/1.png", "loveda/ann_dir/1.png", 7),
    ],
)
def test_samples_tile_to_their_source_windows(
    tmp_path, shared_data, example, image, labels, values
):
    cfg = load_config(REPO / "examples" / example)
    cfg = cfg.model_copy(
        update={"beam": cfg.beam.model_validate({"args": ["--direct_num_workers=1"]})}
    )
    if example == "loveda.yaml":  # one of the three crops keeps the test fast
        cfg = cfg.model_copy(
            update={"data": cfg.data.model_copy(update={"scenes": cfg.data.scenes[1:2]})}
        )
    ts = tile(cfg, tmp_path)
    img = read_all(str(shared_data / image))
    raw = read_all(str(shared_data / labels))
    lab = np.where((raw >= 1) & (raw <= values), raw - 1, 255).astype("uint8")
    covered = check_tiles_equal_source(ts, img, lab, cfg.data.scenes[0].scene_id)
    assert covered == lab.size  # cores partition the scene
    assert ts.manifest["scenes"][0]["georeferenced"] is False


def test_sentinel2_polygons_are_rasterised_on_the_image_grid(tmp_path, shared_data):
    import fiona
    from rasterio.features import rasterize

    cfg = load_config(REPO / "examples" / "sentinel2_fields.yaml")
    ts = tile(cfg, tmp_path)
    tif = shared_data / "sentinel2_dk_fields" / "RGB_small.tif"
    with rasterio.open(tif) as src:
        transform, shape = src.transform, src.shape
    with fiona.open(
        shared_data / "sentinel2_dk_fields" / "marker2016_small.shp", encoding="latin-1"
    ) as c:
        expected = rasterize(
            ((f.geometry, 1) for f in c),
            out_shape=shape,
            transform=transform,
            fill=0,
            dtype="uint8",
        )
    check_tiles_equal_source(ts, read_all(str(tif)), expected, "dk_fields")
    fields = expected.mean()
    assert 0.2 < fields < 0.95  # parcels cover part, not all, of the crop
    t = next(read_tiles(ts.files[0]))
    with rasterio.open(tif) as src:
        assert rasterio.crs.CRS.from_wkt(t.crs) == src.crs
        x, y = src.transform * (t.col, t.row)
    assert t.transform[0] == pytest.approx(x) and t.transform[3] == pytest.approx(y)


def test_training_pixels_never_lie_in_the_validation_fold(demo_root, landsat):
    """The leakage rule on the real scene: for each evaluation fold k and its validation fold v
    (`reseg.folds`), training tiles (fold not k or v) with labels masked where fold_map is k or
    v keep no labelled pixel whose scene position belongs to a fold-k or fold-v core; checked
    pixel by pixel in scene coordinates."""
    ts = TileSet.load(layout.tiles_dir(demo_root))
    tiles = list(read_tiles(list(ts.files)))
    h = max(t.core[0] + t.core[2] for t in tiles)
    w = max(t.core[1] + t.core[3] for t in tiles)
    scene_fold = np.full((h, w), 255, np.uint8)  # the fold of the core owning each pixel
    for t in tiles:
        r, c, ch, cw = t.core
        scene_fold[r : r + ch, c : c + cw] = t.fold
    leaked_if_unmasked = 0
    for k in range(ts.folds):
        held = held_folds(k, ts.folds)
        assert len(held) == 2  # K = 5: evaluation and validation
        for t in tiles:
            if t.fold in held:
                continue
            train_label = np.where(np.isin(t.fold_map, held), 255, t.label)
            rows, cols = np.nonzero(train_label != 255)
            sr, sc = rows + t.row, cols + t.col
            assert not np.isin(scene_fold[sr, sc], held).any(), f"tile {t.key} leaks {held}"
            rows, cols = np.nonzero(t.label != 255)
            leaked_if_unmasked += int(np.isin(scene_fold[rows + t.row, cols + t.col], held).sum())
    assert leaked_if_unmasked > 0  # the overlap does reach into other folds: the mask matters


def test_rerun_skips_and_changed_input_reruns(tmp_path):
    img, lab = scene(tmp_path, height=70, width=50)
    cfg = parse_config(config_dict(img, lab))
    first = tile(cfg, tmp_path / "root")
    stamp = first.manifest["published_at"]
    assert tile(cfg, tmp_path / "root").manifest["published_at"] == stamp
    with rasterio.open(lab, "r+") as dst:
        a = dst.read(1)
        a[0, 0] = (a[0, 0] + 1) % 3
        dst.write(a, 1)
    again = tile(cfg, tmp_path / "root")
    assert again.fingerprint != first.fingerprint
    assert not list((tmp_path / "root").glob("tiles.tmp-*"))


def test_multi_process_beam_gives_the_same_tiles(tmp_path):
    img, lab = scene(tmp_path, height=90, width=70, dtype="int16")
    raw = config_dict(img, lab)
    one = tile(parse_config(raw), tmp_path / "one")
    raw["beam"] = {"args": ["--direct_num_workers=2", "--direct_running_mode=multi_processing"]}
    two = tile(parse_config(raw), tmp_path / "two")
    for a, b in zip(one.files, two.files, strict=True):
        assert a.read_bytes() == b.read_bytes()


def test_kill_during_tiling_then_rerun_gives_identical_tiles(tmp_path):
    img, lab = scene(tmp_path, height=600, width=400, bands=4)
    raw = config_dict(img, lab, tile_size=32, overlap=8, shard_rows=1)
    ref = tile(parse_config(raw), tmp_path / "ref")
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text(yaml.safe_dump(raw))
    root = tmp_path / "root"
    proc = subprocess.Popen(
        [sys.executable, "-m", "reseg", "tile", str(cfg_file), "--root", str(root)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    staged: list[Path] = []
    while time.time() < deadline and proc.poll() is None:
        staged = [p for p in root.glob("tiles.tmp-*/part-*.json")] if root.exists() else []
        if len(staged) >= 3:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "tiling finished before it could be killed; make the scene larger"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not layout.tiles_dir(root).exists()  # nothing published by a killed run
    done_before = len(list(root.glob("tiles.tmp-*/part-*.json")))
    assert 3 <= done_before < len(ref.files)
    out = subprocess.run(
        [sys.executable, "-m", "reseg", "tile", str(cfg_file), "--root", str(root)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert "resuming" in out.stderr
    again = TileSet.load(layout.tiles_dir(root))
    assert [f.name for f in again.files] == [f.name for f in ref.files]
    for a, b in zip(ref.files, again.files, strict=True):
        assert a.read_bytes() == b.read_bytes()


def test_label_raster_on_another_grid_is_resampled_nearest(tmp_path, caplog):
    from rasterio.transform import from_origin

    rng = np.random.default_rng(3)
    img = rng.integers(1, 100, (2, 40, 40)).astype("uint8")
    write_raster(
        tmp_path / "img.tif", img, crs="EPSG:32632", transform=from_origin(500000, 6200000, 10, 10)
    )
    coarse = rng.integers(0, 3, (20, 20)).astype("uint8")  # 20 m cells over the same extent
    write_raster(
        tmp_path / "lab.tif",
        coarse,
        crs="EPSG:32632",
        transform=from_origin(500000, 6200000, 20, 20),
    )
    raw = config_dict(tmp_path / "img.tif", tmp_path / "lab.tif", tile_size=16, overlap=4)
    with caplog.at_level("WARNING"):
        ts = tile(parse_config(raw), tmp_path / "root")
    assert "resampling labels onto the image grid with nearest neighbour" in caplog.text
    expected = np.kron(coarse, np.ones((2, 2), "uint8"))
    check_tiles_equal_source(ts, np.moveaxis(img, 0, -1), expected, "img")


def test_nan_and_nodata_pixels_are_invalid_and_unlabelled(tmp_path, caplog):
    img = np.random.default_rng(0).normal(size=(2, 30, 30)).astype("float32")
    img[:, :5, :] = -9999
    img[0, 10, 10] = np.nan
    write_raster(tmp_path / "img.tif", img, nodata=-9999)
    write_raster(tmp_path / "lab.tif", np.ones((30, 30), "uint8"))
    with caplog.at_level("WARNING"):
        ts = tile(
            parse_config(config_dict(tmp_path / "img.tif", tmp_path / "lab.tif", classes=2)),
            tmp_path / "r",
        )
    assert "1 NaN pixels treated as nodata" in caplog.text
    labelled = np.zeros((30, 30), bool)
    for t in read_tiles(list(ts.files)):
        r, c, ch, cw = t.core
        rs, cs = t.core_slice()
        labelled[r : r + ch, c : c + cw] = t.label[rs, cs] != 255
        assert ((t.valid == 0) == (t.label == 255)).all()
    assert not labelled[:5].any() and not labelled[10, 10] and labelled.sum() == 30 * 25 - 1
    assert sum(ts.manifest["counts"]["class_pixels_per_fold"][k][1] for k in range(3)) == 749
    assert json.loads((ts.path / "manifest.json").read_text())["scenes"][0]["nan_pixels"] == 1
