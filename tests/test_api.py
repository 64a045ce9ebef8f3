"""The Python API page's example (docs/api.md) runs as written (on the tiny demo pipeline)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

import reseg

REPO = Path(__file__).resolve().parents[1]


def _readme_example() -> str:
    section = (REPO / "docs" / "api.md").read_text()
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_readme_api_example_runs(demo_rounds, tmp_path, capsys):
    ref_root, cfg, _ = demo_rounds
    root = tmp_path / "root"
    root.mkdir()
    for name in ("tiles", "stats", "rounds", "merged", "export", "predictions"):
        (root / name).symlink_to(ref_root / name, target_is_directory=True)
    cfg_file = tmp_path / "tiny.yaml"
    cfg_file.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    code = _readme_example()
    assert '"examples/demo_landsat.yaml"' in code and '"runs/demo"' in code
    code = code.replace('"examples/demo_landsat.yaml"', repr(str(cfg_file)))
    code = code.replace('"runs/demo"', repr(str(root)))
    scope: dict = {}
    exec(compile(code, "docs/api.md", "exec"), scope)
    out = capsys.readouterr().out
    m = scope["m"]
    assert f"round 0: mIoU {m.mean_iou:.3f}" in out
    table = scope["table"]
    assert {"r0", "r1", "merged mean"} <= set(table["round"])
    assert table.loc[table["round"] == "r0", "mean_iou"].item() == m.mean_iou
    pred = scope["pred"]
    h, w = pred.classes.shape
    assert pred.probabilities.shape == (h, w, len(cfg.data.classes))
    assert (
        pred.probabilities.argmax(-1)[pred.classes != 255] == pred.classes[pred.classes != 255]
    ).mean() > 0.99
    assert isinstance(scope["p"], reseg.Pipeline)
