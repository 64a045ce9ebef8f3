"""Runs reproduce by default: the same config run twice, in two processes, from the tiling on,
gives the same metrics and the same class and confidence maps, bit for bit.

The second run leaves `train.deterministic` unset (the default) and tiles with two Beam
worker processes, so neither the setting nor the workers' scheduling can make a difference.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import rasterio
import yaml

from reseg import artifacts, layout
from reseg.config import parse_config


def test_the_same_config_run_twice_gives_identical_metrics_and_maps(demo_rounds, tmp_path):
    ref_root, cfg, _ = demo_rounds
    raw = cfg.model_dump(mode="json", exclude_unset=False)
    del raw["train"]["deterministic"]
    raw["beam"] = {
        "args": [
            "--runner=DirectRunner",
            "--direct_num_workers=2",
            "--direct_running_mode=multi_processing",
        ]
    }
    assert parse_config(raw).train.deterministic  # the default
    cfg_file = tmp_path / "again.yaml"
    cfg_file.write_text(yaml.safe_dump(raw))
    root = tmp_path / "root"
    cmd = [sys.executable, "-m", "reseg", "run", str(cfg_file), "--root", str(root)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]

    evals = [layout.eval_dir(r, k, 0) for r in (root,) for k in range(cfg.rounds.count + 1)]
    evals.append(layout.merged_eval_dir(root, 0))
    for d in evals:
        got = json.loads((d / "metrics.json").read_text())["confusion"]
        ref_dir = ref_root / d.relative_to(root)
        want = json.loads((ref_dir / "metrics.json").read_text())["confusion"]
        assert got == want, d

    mine = artifacts.Predictions.load(layout.predictions_dir(root))
    ref = artifacts.Predictions.load(layout.predictions_dir(ref_root))
    (scene,) = [e["scene"] for e in ref.scenes]
    compared = 0
    for kind, path in ref.outputs(scene).items():
        if not str(path).endswith(".tif"):
            continue
        with rasterio.open(path) as a, rasterio.open(mine.outputs(scene)[kind]) as b:
            assert np.array_equal(a.read(), b.read()), kind
        compared += 1
    assert compared >= 2  # at least the class map and the confidence
