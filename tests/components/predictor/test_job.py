"""Prediction as a Beam job: blocks on worker processes equal the sequential prediction.

A 4-band scene of 330 x 290 pixels, tiles of 64 (overlap 16, stride 48) and blocks
of 128 pixels (2 x 2 tiles): 4 x 3 blocks, predicted by the DirectRunner's worker
processes, assembled into one COG per output, and compared array for array with
`predict_scene` on the same scene.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from PIL import Image
from rio_cogeo.cogeo import cog_validate

from reseg.cli import main
from reseg.components.predictor import job, predict_scene
from reseg.components.predictor.blocks import (
    BLOCK_JSON,
    block_name,
    plan_blocks,
    predict_block,
    staging_dir,
)
from reseg.components.predictor.job import predict_beam
from reseg.components.predictor.reader import open_scene
from reseg.components.predictor.scene import plan_scene
from reseg.config import PredictConfig
from reseg.errors import InputError
from tests.components.predictor.helpers import smooth_image
from tests.rasters import write_raster

CFG = PredictConfig(
    tile_size=64, overlap=16, batch_size=2, block_size=128, probabilities=True, progress=False
)
IN_MEMORY = ["--runner=DirectRunner", "--direct_running_mode=in_memory"]
MULTI = ["--direct_num_workers=2", "--direct_running_mode=multi_processing"]
RASTERS = ("classes", "confidence", "probabilities")


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> tuple[Path, Path, Path]:
    """(big scene with nodata in a corner, its labels 10/20/30, a small scene of one block)."""
    tmp = tmp_path_factory.mktemp("job_scenes")
    img = smooth_image(4, 330, 290, seed=7)
    img[:, :30, :40] = 0
    lab = np.kron(np.random.default_rng(2).choice([10, 20, 30], (33, 29)), np.ones((10, 10)))
    return (
        write_raster(tmp / "big.tif", img, nodata=0),
        write_raster(tmp / "big_labels.tif", lab.astype("uint8")),
        write_raster(tmp / "small.tif", smooth_image(4, 100, 90, seed=8)),
    )


@pytest.fixture(scope="module")
def sequential(_cnn_backend, scenes, tmp_path_factory):
    cnn = _cnn_backend  # module-scoped: the shared backend as it is
    out = tmp_path_factory.mktemp("sequential")
    big, labels, small = scenes
    return (
        predict_scene(cnn, big, out, CFG, labels=labels),
        predict_scene(cnn, small, out, CFG),
    )


def _read(path: Path) -> tuple[np.ndarray, dict]:
    with rasterio.open(path) as ds:
        return ds.read(), {"crs": ds.crs, "transform": ds.transform, "nodata": ds.nodata}


def _assert_same_outputs(a, b) -> None:
    for key in RASTERS:
        (x, mx), (y, my) = _read(a.outputs[key]), _read(b.outputs[key])
        assert mx == my, key
        np.testing.assert_array_equal(x, y, err_msg=key)
    with Image.open(a.outputs["preview"]) as pa, Image.open(b.outputs["preview"]) as pb:
        np.testing.assert_array_equal(np.asarray(pa), np.asarray(pb))


def test_blocks_on_worker_processes_equal_the_sequential_prediction(
    cnn, cnn_dir, scenes, sequential, tmp_path, monkeypatch
):
    big, labels, small = scenes
    scene = open_scene(big, cnn.info)
    blocks = plan_blocks(cnn.info, scene, CFG)
    assert len(blocks) == 12 and len({b.i0 for b in blocks}) == 4, "several blocks each way"
    out = tmp_path / "beam"
    loads = []
    real = job.load_backend
    monkeypatch.setattr(job, "load_backend", lambda path: loads.append(path) or real(path))
    results = predict_beam(cnn_dir, [big, small], out, CFG, labels=[labels, None], beam_args=MULTI)
    assert len(loads) == 1, "the launcher loads the model once; the workers are other processes"
    assert [r.scene for r in results] == ["big", "small"]
    for got, want in zip(results, sequential, strict=True):
        _assert_same_outputs(got, want)
        for key in RASTERS:
            assert cog_validate(got.outputs[key], quiet=True)[0], key
    assert results[0].metrics == sequential[0].metrics
    assert json.loads(results[0].outputs["metrics"].read_text())["mean_iou"] == pytest.approx(
        sequential[0].metrics["mean_iou"]
    )
    assert results[1].metrics is None
    assert sorted(p.name for p in out.iterdir()) == sorted(
        p.name for r in results for p in r.outputs.values()
    ), "nothing staged is left"


def test_a_rerun_trusts_complete_blocks_and_redoes_partial_ones(
    cnn, cnn_dir, scenes, sequential, tmp_path, monkeypatch
):
    big, _, _ = scenes
    out = tmp_path / "rerun"
    scene = open_scene(big, cnn.info)
    blocks = plan_blocks(cnn.info, scene, CFG)
    staging = staging_dir(out, scene, cnn_dir, CFG.model_copy(update={"progress": False}))
    # a killed run: block 0 complete, block 1 written but without its block.json
    for b in blocks[:2]:
        predict_block(cnn, scene, CFG, b, staging)
    (staging / block_name(blocks[1]) / BLOCK_JSON).unlink()
    for b in blocks[:2]:
        with rasterio.open(staging / block_name(b) / "classes.tif", "r+") as ds:
            ds.write(np.full((1, ds.height, ds.width), 2, np.uint8))
    (out / ".big.blocks-0123456789ab").mkdir()  # staged by another model or config
    (res,) = predict_beam(cnn_dir, [big], out, CFG, beam_args=IN_MEMORY)
    got, want = _read(res.outputs["classes"])[0][0], _read(sequential[0].outputs["classes"])[0][0]
    w0 = blocks[0].window(plan_scene(cnn.info, scene, CFG))
    inside = (slice(w0.row_off, w0.row_end), slice(w0.col_off, w0.col_end))
    valid = want[inside] != 255
    assert (got[inside][valid] == 2).all(), "the complete staged block was reused"
    rest = np.ones_like(got, bool)
    rest[inside] = False
    np.testing.assert_array_equal(got[rest], want[rest], err_msg="partial block predicted again")
    assert not any(p.name.startswith(".") for p in out.iterdir()), "staging removed"


def test_bad_input_fails_before_the_job_and_writes_nothing(cnn_dir, tmp_path):
    bad = write_raster(tmp_path / "three.tif", smooth_image(3, 50, 50))
    out = tmp_path / "out"
    with pytest.raises(InputError, match="3 bands"):
        predict_beam(cnn_dir, [bad], out, CFG, beam_args=IN_MEMORY)
    assert not out.exists()


def test_reseg_predict_beam_takes_beam_options_after_the_scenes(
    cnn_dir, scenes, sequential, tmp_path, capsys
):
    big, _, _ = scenes
    out = tmp_path / "cli"
    opts = ["--tile-size", "64", "--overlap", "16", "--batch-size", "2", "--probabilities"]
    argv = ["predict", "--model", str(cnn_dir), str(big), "--out", str(out), *opts]
    assert main([*argv, "--", "--direct_running_mode=in_memory"]) == 2
    assert "need --beam" in capsys.readouterr().err and not out.exists()
    argv += ["--block-size", "128", "--no-progress", "--beam"]
    assert main([*argv, "--", "--direct_running_mode=in_memory", "--direct_num_workers=1"]) == 0
    for key in RASTERS:
        got = _read(out / sequential[0].outputs[key].name)[0]
        np.testing.assert_array_equal(got, _read(sequential[0].outputs[key])[0], err_msg=key)
