"""An export in bfloat16 (`export.precision`): recorded, validated against float32, agreeing."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from reseg import artifacts, layout
from reseg.components.exporter import export_info
from reseg.config import parse_config
from reseg.inference import load_backend as load_keras
from reseg.serving import load_backend
from tests.components.predictor.helpers import learnable_labels, smooth_image
from tests.components.roots import export

RAW = {
    "data": {"scenes": [{"image": "x.tif"}], "classes": [{"name": f"c{i}"} for i in range(4)]},
    "tracking": {"enabled": False},
}


@pytest.mark.slow  # two exports, each validated in a fresh process
def _published_model(trained_dir, root) -> None:
    """The trained model as round 0 of fold 0, with a manifest: sources are found by it."""
    d = layout.model_dir(root, 0, 0)
    shutil.copytree(trained_dir, d)
    artifacts.write_json(d / layout.MANIFEST, {"fingerprint": "trained", "step": "train"})


def test_bfloat16_export_records_its_precision_and_agrees_with_float32(trained_dir, tmp_path):
    root = tmp_path / "root"
    _published_model(trained_dir, root)
    cfg = parse_config({**RAW, "export": {"precision": "bfloat16", "source": "r0", "fold": 0}})
    v1 = export(cfg, root)
    info = export_info(v1)
    assert info["precision"] == "bfloat16"
    val = info["validation"]
    assert val["agreement"] >= 0.995 and val["max_abs_diff"] > 1e-5  # not float32 arithmetic
    sm = load_backend(v1)
    assert sm.exported_precision == "bfloat16"
    img = np.moveaxis(smooth_image(4, 256, 256, seed=11), 0, -1)[None]
    valid = np.ones(img.shape[:3], np.uint8)
    ref = load_keras(trained_dir)(img, valid)
    got = sm(img, valid)
    assert got.dtype == np.float32
    assert (got.argmax(-1) == ref.argmax(-1)).mean() >= 0.995
    y = learnable_labels(np.moveaxis(img[0], -1, 0))
    assert abs((got.argmax(-1)[0] == y).mean() - (ref.argmax(-1)[0] == y).mean()) <= 0.005
    # float32 is another export (the precision is part of its fingerprint)
    cfg32 = parse_config({**RAW, "export": {"precision": "float32", "source": "r0", "fold": 0}})
    v2 = export(cfg32, root)
    assert v2 != v1 and export_info(v2)["precision"] == "float32"
    assert export_info(v2)["validation"]["max_abs_diff"] <= 1e-5


def test_auto_export_that_fails_the_guard_is_float32_and_says_why(trained_dir, tmp_path):
    """auto's bfloat16 short of min_agreement on the warmup tiles exports float32 (no failed
    export); where auto is float32 there is nothing to guard."""
    from reseg.inference import guard, precision

    guard._verdicts.clear()
    root = tmp_path / "root"
    _published_model(trained_dir, root)
    export_cfg = {"source": "r0", "fold": 0, "validation": False, "min_agreement": 1.0}
    info = export_info(export(parse_config({**RAW, "export": export_cfg}), root))
    record = info["precision_guard"]
    assert info["precision"] == "float32"
    if precision.auto_choice()[0] == "bfloat16":
        assert record["requested"] == "auto" and record["resolved"] == "bfloat16"
        assert not record["passed"] and record["agreement"] < 1.0
    else:
        assert record is None
