"""TF Serving's model layout: `<base>/<version>/` folders and the warmup file.

TF Serving watches a model's base path (`export/<model_name>/`) and serves the
numeric subfolders, each a SavedModel; the highest is the newest. Other names
(our hidden staging folders) are ignored. Each version may carry
`assets.extra/tf_serving_warmup_requests`, a TFRecord file of `PredictionLog`
protos that TF Serving replays before it marks the version AVAILABLE. We also put
the export's `model.json` in `assets.extra/` for in-process readers.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reseg import storage
from reseg.errors import ArtifactError

log = logging.getLogger(__name__)

ASSETS_EXTRA = "assets.extra"
WARMUP_FILE = "tf_serving_warmup_requests"
SAVED_MODEL = "saved_model.pb"
MAX_WARMUP_RECORDS = 1000  # TF Serving reads at most this many


def versions(base: str | Path) -> list[int]:
    """The published version numbers under a model base path, ascending."""
    base = storage.path(base)
    if not base.is_dir():
        return []
    return sorted(
        int(p.name) for p in base.iterdir() if p.name.isdigit() and (p / SAVED_MODEL).exists()
    )


def used_versions(base: str | Path) -> list[int]:
    """Every numeric folder name, published or not (a number once used is not reused)."""
    base = storage.path(base)
    return sorted(int(p.name) for p in base.iterdir() if p.name.isdigit()) if base.is_dir() else []


def version_dir(base: str | Path, version: int) -> Path:
    if version < 1:
        raise ValueError(f"Argument `version` must be >= 1. Received: version={version}")
    return storage.path(base) / str(version)


def publish_version(staged: str | Path, base: str | Path, version: int) -> tuple[Path, int]:
    """Rename a staged SavedModel to `<base>/<version>`, or the next free number.

    The rename is atomic and never replaces a published version: when another
    export took `version` meanwhile, the next number is tried.

    On object storage (no rename) the local staged folder is uploaded to the first unused
    number, `saved_model.pb` after the variables and assets (TF Serving loads a version
    once it sees that file) and `manifest.json` last (reseg's readers trust a version only
    with it); two exports racing for a number are not told apart there.

    Returns:
        The published folder and its version number.
    """
    if storage.is_remote(base):
        return _upload_version(Path(staged), storage.path(base), version)
    staged, base = Path(staged), Path(base)
    while True:
        final = version_dir(base, version)
        try:
            final.mkdir()  # claims the number; rename() onto an empty folder replaces it
        except FileExistsError:
            version += 1
            continue
        try:
            os.rename(staged, final)
        except OSError as e:
            final.rmdir()
            if e.errno in (errno.ENOTEMPTY, errno.EEXIST):
                version += 1
                continue
            raise
        log.info("published %s", final)
        return final, version


def _upload_version(staged: Path, base, version: int) -> tuple[Path, int]:
    used = used_versions(base)
    version = max(version, used[-1] + 1 if used else 1)
    final = version_dir(base, version)
    files = sorted(p for p in staged.rglob("*") if p.is_file())
    last = {SAVED_MODEL: 1, "manifest.json": 2}
    for f in sorted(files, key=lambda p: (last.get(str(p.relative_to(staged)), 0), str(p))):
        storage.upload(f, final / f.relative_to(staged).as_posix())
    shutil.rmtree(staged, ignore_errors=True)
    log.info("published %s", final)
    return final, version


def warmup_path(version: str | Path) -> Path:
    return Path(version) / ASSETS_EXTRA / WARMUP_FILE


@dataclass(frozen=True)
class WarmupRequest:
    """One recorded predict request: a signature and its named input arrays."""

    signature: str
    inputs: Mapping[str, np.ndarray]


def write_warmup(version: str | Path, model_name: str, requests: Sequence[WarmupRequest]) -> Path:
    """Write `assets.extra/tf_serving_warmup_requests` as PredictionLog records."""
    import tensorflow as tf
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    if not 0 < len(requests) <= MAX_WARMUP_RECORDS:
        raise ValueError(
            f"Argument `requests` must hold 1..{MAX_WARMUP_RECORDS} requests. "
            f"Received: {len(requests)}"
        )
    path = warmup_path(version)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for r in requests:
            req = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(name=model_name, signature_name=r.signature)
            )
            for key, value in r.inputs.items():
                req.inputs[key].CopyFrom(tf.make_tensor_proto(np.asarray(value)))
            log_ = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=req)
            )
            writer.write(log_.SerializeToString())
    return path


def read_warmup(version: str | Path) -> Iterator[tuple[str, str, dict[str, np.ndarray]]]:
    """(model name, signature, inputs) of every warmup record of a version folder."""
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    path = warmup_path(version)
    if not path.exists():
        raise ArtifactError(f"{version}: no {ASSETS_EXTRA}/{WARMUP_FILE}")
    for raw in tf.data.TFRecordDataset(str(path)).as_numpy_iterator():
        rec = prediction_log_pb2.PredictionLog.FromString(raw)
        if rec.WhichOneof("log_type") != "predict_log":
            raise ArtifactError(f"{path}: a record is a {rec.WhichOneof('log_type')}, not predict")
        req = rec.predict_log.request
        inputs = {k: tf.make_ndarray(v) for k, v in req.inputs.items()}
        yield req.model_spec.name, req.model_spec.signature_name or "serving_default", inputs
