"""Prediction is quiet: traced once per model, and `reseg predict` prints only reseg's own lines."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import rasterio

from tests.components.predictor.helpers import smooth_image
from tests.conftest import REPO
from tests.rasters import write_raster

OWN_LINE = re.compile(
    r"^(\d\d:\d\d:\d\d (DEBUG|INFO|WARNING|ERROR) reseg[.:]"  # reseg's log records
    r"|reseg "  # a command's one-line error
    r"|scene: )"  # predict's summary of what it wrote for the scene `scene`
)


def _merged(tmp_path, member_dir, members: int):
    merged = tmp_path / "merged"
    merged.mkdir()
    spec = {"method": "mean", "members": [{"model": str(member_dir)}] * members}
    (merged / "merged.json").write_text(json.dumps(spec))
    return merged


def test_merged_rounds_are_traced_once_per_member_whatever_the_tile_shapes(
    cnn_dir, tmp_path, caplog
):
    from reseg.config.predict import D4
    from reseg.inference.tta import predict_tta
    from reseg.serving import load_backend

    backend = load_backend(_merged(tmp_path, cnn_dir, members=5))
    rng = np.random.default_rng(0)
    with caplog.at_level(logging.WARNING, logger="tensorflow"):
        for b, h, w in [(4, 32, 48), (3, 32, 48), (1, 64, 16), (2, 16, 16)]:
            raw = rng.integers(1, 4000, (b, h, w, 4)).astype(np.uint16)
            valid = np.ones((b, h, w), np.uint8)
            probs = predict_tta(backend, raw, valid, D4)
            assert probs.shape == (b, h, w, 3)
    counts = [m._fn.experimental_get_tracing_count() for m in backend.members]
    assert counts == [1] * 5
    assert not [r for r in caplog.records if "retracing" in r.getMessage()]


def _predict(args, model, scene, out, verbose=False):
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    cmd = [sys.executable, "-m", "reseg", *(["-v"] if verbose else [])]
    cmd += ["predict", "--model", str(model), str(scene), "--out", str(out), *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.slow  # two real `reseg predict` processes, each importing TensorFlow
def test_predict_prints_only_resegs_own_lines_unless_verbose(cnn_dir, tmp_path):
    scene = write_raster(tmp_path / "scene.tif", smooth_image(4, 90, 150, seed=4))
    model = _merged(tmp_path, cnn_dir, members=5)  # used to log retracing warnings
    args = ["--tta", "d4", "--tile-size", "64", "--no-progress"]
    quiet = _predict(args, model, scene, tmp_path / "quiet")
    assert quiet.returncode == 0, quiet.stderr
    lines = [s for s in re.split(r"[\r\n]+", quiet.stderr) if s.strip()]
    assert lines and all(OWN_LINE.match(s) for s in lines), quiet.stderr
    assert f"scene: {tmp_path / 'quiet' / 'scene.tif'}" in quiet.stderr

    loud = _predict(args, model, scene, tmp_path / "loud", verbose=True)
    assert loud.returncode == 0, loud.stderr
    foreign = [s for s in loud.stderr.splitlines() if s.strip() and not OWN_LINE.match(s)]
    assert foreign, "with -v TensorFlow's own start-up lines are expected"
    with rasterio.open(tmp_path / "quiet" / "scene.tif") as a:
        with rasterio.open(tmp_path / "loud" / "scene.tif") as b:
            assert (a.read() == b.read()).all()
