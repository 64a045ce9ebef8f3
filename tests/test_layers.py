"""The layers of DESIGN.md hold: `lint-imports` checks the contracts in pyproject.toml."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_imports_point_down_the_layers():
    exe = Path(sys.executable).with_name("lint-imports")
    out = subprocess.run(
        [str(exe), "--no-cache"], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "3 kept, 0 broken" in out.stdout


def test_the_statistics_and_the_config_import_without_tensorflow_or_beam():
    """`reseg.study.stats` (a statistician's entry point) and `reseg.config` load in a fresh
    interpreter without pulling in TensorFlow, Keras, Beam, MLflow or rasterio."""
    heavy = ("tensorflow", "keras", "apache_beam", "mlflow", "rasterio")
    code = (
        "import sys; import reseg.study.stats, reseg.config, reseg.study.config; "
        f"print(','.join(m for m in {heavy!r} if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "", f"loaded: {out.stdout.strip()}"
