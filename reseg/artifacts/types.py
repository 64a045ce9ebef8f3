"""Typed artifacts: what each step publishes, as frozen dataclasses with `load()`.

Every artifact is a published directory (see `store`); `load(path)` reads its
manifest (an `ArtifactError` naming the path when there is none, i.e. the step has
not run or did not finish) and the files later steps need. An artifact is also a
path-like: `os.fspath(a)` is its directory and `a / name` a file in it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from reseg import layout, storage
from reseg.artifacts.store import read_manifest, version, write_json
from reseg.errors import ArtifactError


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ArtifactError(f"{path}: missing from a published artifact") from None
    except json.JSONDecodeError as e:
        raise ArtifactError(f"{path}: corrupt JSON ({e})") from None


@dataclass(frozen=True)
class Artifact:
    """A published artifact directory and its manifest."""

    path: Path
    manifest: dict[str, Any] = field(repr=False, compare=False)

    @property
    def fingerprint(self) -> str:
        return self.manifest["fingerprint"]

    @property
    def version(self) -> str:
        """Its fingerprint and files (`store.version`): what later steps' fingerprints take."""
        return version(self.manifest)

    def __fspath__(self) -> str:
        return str(self.path)

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def __str__(self) -> str:
        return str(self.path)

    @classmethod
    def load(cls, path: str | Path):
        path = storage.path(path)
        return cls(path, read_manifest(path))


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

    @property
    def version(self) -> str:
        """Its fingerprint and files (`store.version`): what later steps' fingerprints take."""
        return version(self.manifest)

    @classmethod
    def load(cls, path: str | Path) -> TileSet:
        path = storage.path(path)
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
    version: str = ""

    @property
    def mean(self) -> np.ndarray:
        return np.array([b.mean for b in self.bands], np.float32)

    @property
    def std(self) -> np.ndarray:
        return np.array([max(b.std, 1e-6) for b in self.bands], np.float32)

    @classmethod
    def load(cls, path: str | Path) -> Stats:
        path = storage.path(path)
        m = read_manifest(path)
        s = _json(path / layout.STATS_JSON)
        return cls(
            path=path,
            bands=tuple(BandStats(**b) for b in s["bands"]),
            class_pixels=tuple(s["class_pixels"]),
            class_pixels_per_fold=tuple(tuple(r) for r in s["class_pixels_per_fold"]),
            valid_pixels=s["valid_pixels"],
            fingerprint=m["fingerprint"],
            version=version(m),
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
        write_json(storage.path(directory) / layout.MODEL_JSON, asdict(self))

    @classmethod
    def load(cls, directory: str | Path) -> ModelInfo:
        p = storage.path(directory) / layout.MODEL_JSON
        try:
            d = json.loads(p.read_text())
        except FileNotFoundError:
            raise ArtifactError(
                f"{directory}: no {layout.MODEL_JSON}; not a reseg model directory"
            ) from None
        known = {f.name for f in fields(cls)}
        return cls(
            **{k: tuple(v) if isinstance(v, list) else v for k, v in d.items() if k in known}
        )


@dataclass(frozen=True)
class Model(Artifact):
    """`rounds/r<r>/<fold>/model`: `model.keras`, `model.json` (`ModelInfo`), history, curves."""

    info: ModelInfo | None = None

    @property
    def keras_file(self) -> Path:
        return self.path / layout.MODEL_KERAS

    @classmethod
    def load(cls, path: str | Path) -> Model:
        path = storage.path(path)
        return cls(path, read_manifest(path), ModelInfo.load(path))


@dataclass(frozen=True)
class Scores(Artifact):
    """Tiles of schema v1 with `score/probs` of one round (or of the merged rounds)."""

    files: tuple[Path, ...] = ()

    @classmethod
    def load(cls, path: str | Path) -> Scores:
        path = storage.path(path)
        m = read_manifest(path)
        return cls(path, m, tuple(path / f for f in m["files"]))


@dataclass(frozen=True)
class Metrics(Artifact):
    """`eval/`: `metrics.json` (OA, per-class IoU/F1, mIoU, kappa, confusion), PNGs."""

    values: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def mean_iou(self) -> float | None:
        return self.values.get("mean_iou")

    @property
    def overall_accuracy(self) -> float | None:
        return self.values.get("overall_accuracy")

    @property
    def kappa(self) -> float | None:
        return self.values.get("kappa")

    @property
    def per_class(self) -> dict[str, dict[str, Any]]:
        return self.values.get("per_class", {})

    @classmethod
    def load(cls, path: str | Path) -> Metrics:
        path = storage.path(path)
        return cls(path, read_manifest(path), _json(path / layout.METRICS_JSON))


@dataclass(frozen=True)
class Selection(Artifact):
    """`selection/`: selection rasters per scene, weighted tiles, `selection.json`, histograms."""

    report: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    files: tuple[Path, ...] = ()

    @classmethod
    def load(cls, path: str | Path) -> Selection:
        path = storage.path(path)
        m = read_manifest(path)
        return cls(
            path, m, _json(path / layout.SELECTION_JSON), tuple(path / f for f in m["files"])
        )


@dataclass(frozen=True)
class PseudoLabels(Artifact):
    """`pseudo/`: pseudo-label rasters per scene, the next round's training tiles, `pseudo.json`."""

    report: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    files: tuple[Path, ...] = ()

    @classmethod
    def load(cls, path: str | Path) -> PseudoLabels:
        path = storage.path(path)
        m = read_manifest(path)
        return cls(path, m, _json(path / layout.PSEUDO_JSON), tuple(path / f for f in m["files"]))


@dataclass(frozen=True)
class Merged(Artifact):
    """`merged/<fold>/`: `merged.json` (method, member models, weights) and `scores/`."""

    spec: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    scores: Scores | None = None
    methods: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def load(cls, path: str | Path) -> Merged:
        path = storage.path(path)
        m = read_manifest(path)
        scores = Scores.load(path / layout.SCORES)
        return cls(
            path,
            m,
            _json(path / layout.MERGED_JSON),
            scores,
            _json(scores.path / layout.METHODS_JSON)["methods"],
        )


@dataclass(frozen=True)
class RefineTuning(Artifact):
    """`<root>/refine/<fold>`: CRF and SLIC tuned on a fold's validation pixels.

    `record` is `refine.json`: the settings tried with their validation metrics, the
    best setting of each method, whether it beat no refinement, and the held-out
    metrics of no refinement and of each best setting; `tiles.npz` holds the held-out
    per-tile confusions (`keys`, and `none`, `crf`, `slic`: (n, C, C)).
    """

    record: dict[str, Any] = field(repr=False, compare=False)

    def method(self, name: str) -> dict[str, Any] | None:
        """The tuning of `crf` or `slic`, or None when it was not tuned."""
        return self.record.get("methods", {}).get(name)

    @classmethod
    def load(cls, path: str | Path) -> RefineTuning:
        path = storage.path(path)
        return cls(path, read_manifest(path), _json(path / layout.REFINE_JSON))


@dataclass(frozen=True)
class Export(Artifact):
    """`export/<name>/<version>/`: a validated SavedModel in TF Serving's layout."""

    @property
    def version(self) -> int:
        return int(self.path.name)


@dataclass(frozen=True)
class Predictions(Artifact):
    """`predictions/`: per scene id, the class and confidence COGs, preview and metrics."""

    @property
    def scenes(self) -> list[dict[str, Any]]:
        return self.manifest["scenes"]

    def outputs(self, scene: str) -> dict[str, Path]:
        """The output files of scene `scene` by kind (classes, confidence, preview, ...)."""
        for e in self.scenes:
            if e["scene"] == scene:
                return {k: self.path / v for k, v in e["outputs"].items()}
        raise ArtifactError(
            f"{self.path}: no scene {scene!r} (have {[e['scene'] for e in self.scenes]})"
        )
