"""The layers of DESIGN.md hold: `lint-imports` checks the contracts in pyproject.toml."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_imports_point_down_the_layers():
    exe = Path(sys.executable).with_name("lint-imports")
    out = subprocess.run(
        [str(exe), "--no-cache"], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "4 kept, 0 broken" in out.stdout


def _documented_layers() -> list[set[str]]:
    """The layer diagram of docs/architecture.md: its first code block, one layer per line
    that starts in the first column (`name/ | name   description`; indented lines continue
    the description)."""
    text = (REPO / "docs" / "architecture.md").read_text()
    block = re.search(r"```\n(cli .*?)```", text, re.S).group(1)
    layers = []
    for line in block.splitlines():
        if not line or line[0] == " ":
            continue
        names = re.split(r"\s{2,}", line.strip(), maxsplit=1)[0]
        layers.append({"reseg." + n.strip().rstrip("/") for n in names.split("|")})
    return layers


def test_the_layer_order_is_the_documented_one():
    contracts = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]
    (layered,) = [c for c in contracts["contracts"] if c["type"] == "layers"]
    configured = [{n.strip() for n in layer.split("|")} for layer in layered["layers"]]
    assert _documented_layers() == configured
    packages = {
        p.stem
        for p in (REPO / "reseg").iterdir()
        if p.suffix == ".py" or (p / "__init__.py").exists()  # not data folders (stac_schemas)
    }
    packages -= {"__init__", "__main__", "__pycache__"}
    assert {n.split(".")[1] for layer in configured for n in layer} == packages  # every module


def test_commands_studies_and_the_api_import_no_component():
    contracts = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]
    forbidden = {
        m: c["forbidden_modules"]
        for c in contracts["contracts"]
        if c["type"] == "forbidden"
        for m in c["source_modules"]
    }
    for source in ("reseg.commands", "reseg.study", "reseg.api"):
        assert "reseg.components" in forbidden[source], source


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
