"""Artifact directories: staged in `<dir>.tmp-<fingerprint>`, published by rename.

Every component writes one directory. It works in a staging directory next to
the final one, named after the fingerprint of its inputs and parameters, so a
rerun after a crash finds the same staging directory and can keep what is
complete there. `publish` writes `manifest.json` (and the resolved config) and
renames the staging directory into place: readers never see a partial artifact.
A step is skipped when the published manifest has the same fingerprint.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from reseg.errors import ArtifactError

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
CONFIG = "config.json"


def fingerprint(*parts: Any) -> str:
    """Stable short hash of JSON-able values."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def read_manifest(path: str | Path) -> dict[str, Any]:
    """The manifest of a published artifact directory."""
    p = Path(path) / MANIFEST
    try:
        return json.loads(p.read_text())
    except FileNotFoundError:
        raise ArtifactError(f"{path}: no {MANIFEST}; run the step that makes it first") from None
    except json.JSONDecodeError as e:
        raise ArtifactError(f"{p}: corrupt manifest ({e})") from None


def is_current(path: str | Path, fp: str) -> bool:
    """True when `path` is a published artifact with fingerprint `fp`."""
    try:
        return read_manifest(path).get("fingerprint") == fp
    except ArtifactError:
        return False


def staging_dir(final: str | Path, fp: str) -> Path:
    """The staging directory of `final` for fingerprint `fp` (created; kept if it exists)."""
    final = Path(final)
    tmp = final.with_name(f"{final.name}.tmp-{fp[:12]}")
    tmp.mkdir(parents=True, exist_ok=True)
    return tmp


def discard(tmp: str | Path) -> None:
    """Remove a staging directory (after a user error: nothing half-written stays)."""
    shutil.rmtree(tmp, ignore_errors=True)


def publish(
    tmp: str | Path, final: str | Path, manifest: dict[str, Any], config_json: str | None = None
) -> Path:
    """Write the manifest into `tmp` and move it to `final`, replacing an older version."""
    tmp, final = Path(tmp), Path(final)
    if config_json is not None:
        (tmp / CONFIG).write_text(config_json)
    manifest = {"published_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **manifest}
    write_json(tmp / MANIFEST, manifest)
    old = None
    if final.exists():
        old = final.with_name(f"{final.name}.old-{os.getpid()}")
        os.replace(final, old)
    os.replace(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    # stale staging directories of other fingerprints are leftovers of changed inputs
    for stale in final.parent.glob(f"{final.name}.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    log.info("published %s", final)
    return final


def write_json(path: str | Path, obj: Any) -> None:
    """Write JSON atomically (temporary file, then rename)."""
    path = Path(path)
    part = path.with_name(path.name + ".partial")
    part.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_json_default))
    os.replace(part, path)


def _json_default(o: Any) -> Any:
    if isinstance(o, np.bool_):
        return bool(o)
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


# --- typed views of the artifacts later steps read -------------------------------------


@dataclass(frozen=True)
class TileSet:
    """`<root>/tiles`: gzip TFRecord shards of schema version 1 and their manifest."""

    path: Path
    files: tuple[Path, ...]
    image_dtype: str
    bands: int
    num_classes: int
    class_names: tuple[str, ...]
    class_colors: tuple[str, ...]
    folds: int
    tile_size: int
    overlap: int
    fingerprint: str
    manifest: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def load(cls, path: str | Path) -> TileSet:
        path = Path(path)
        m = read_manifest(path)
        return cls(
            path=path,
            files=tuple(path / f for f in m["files"]),
            image_dtype=m["image_dtype"],
            bands=m["bands"],
            num_classes=m["num_classes"],
            class_names=tuple(m["class_names"]),
            class_colors=tuple(m["class_colors"]),
            folds=m["folds"],
            tile_size=m["tile_size"],
            overlap=m["overlap"],
            fingerprint=m["fingerprint"],
            manifest=m,
        )


@dataclass(frozen=True)
class BandStats:
    mean: float
    std: float
    min: float
    max: float
    p2: float
    p98: float


@dataclass(frozen=True)
class Stats:
    """`<root>/stats/stats.json`: per-band statistics over valid core pixels, class counts."""

    path: Path
    bands: tuple[BandStats, ...]
    class_pixels: tuple[int, ...]
    class_pixels_per_fold: tuple[tuple[int, ...], ...]
    valid_pixels: int
    fingerprint: str

    @property
    def mean(self) -> np.ndarray:
        return np.array([b.mean for b in self.bands], np.float32)

    @property
    def std(self) -> np.ndarray:
        return np.array([max(b.std, 1e-6) for b in self.bands], np.float32)

    @classmethod
    def load(cls, path: str | Path) -> Stats:
        path = Path(path)
        m = read_manifest(path)
        s = json.loads((path / "stats.json").read_text())
        return cls(
            path=path,
            bands=tuple(BandStats(**b) for b in s["bands"]),
            class_pixels=tuple(s["class_pixels"]),
            class_pixels_per_fold=tuple(tuple(r) for r in s["class_pixels_per_fold"]),
            valid_pixels=s["valid_pixels"],
            fingerprint=m["fingerprint"],
        )


@dataclass(frozen=True)
class ModelInfo:
    """`model.json` beside a saved model: what prediction needs to feed it scenes.

    `mean`/`std` normalise raw band values: x' = (x - mean) / std, invalid pixels set to 0.
    """

    bands: int
    image_dtype: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    class_names: tuple[str, ...]
    class_colors: tuple[str, ...]
    output_stride: int
    tile_size: int
    architecture: str
    nodata: float | None = None
    band_indexes: tuple[int, ...] | None = None
    label_values: dict[str, int] | None = None
    """Label raster value (as text) to class id (255 = ignore), for evaluating against label rasters."""

    def save(self, directory: str | Path) -> None:
        write_json(Path(directory) / "model.json", asdict(self))

    @classmethod
    def load(cls, directory: str | Path) -> ModelInfo:
        p = Path(directory) / "model.json"
        try:
            d = json.loads(p.read_text())
        except FileNotFoundError:
            raise ArtifactError(
                f"{directory}: no model.json; not a reseg model directory"
            ) from None
        known = {f.name for f in fields(cls)}
        return cls(
            **{k: tuple(v) if isinstance(v, list) else v for k, v in d.items() if k in known}
        )
