"""The serving contract of a reseg export: signature names, tensor keys, dtypes.

An export (`reseg.components.exporter`) has three signatures; the REST client
(`reseg.serving.client`) and the in-process `SavedModelBackend` rely on them:

| signature | inputs | outputs |
|---|---|---|
| `serving_default` | `images` (B, H, W, bands), scene dtype | `probabilities` (B, H, W, C) float32, `classes` (B, H, W) uint8 |
| `predict_masked` | `images` as above, `valid` (B, H, W) uint8 | `probabilities` |
| `model_info` | `request` (n,) int32, ignored | `model_info`: scalar string, the `ModelInfo` as JSON |

H and W are any multiples of the model's output stride. Normalisation runs in the
graph with the statistics baked in: x' = (x - mean) / std per band, 0 where a pixel
is not valid. `serving_default` decides validity itself (not NaN, and no band equal
to the model's nodata value, when it has one); `predict_masked` takes the validity
from the caller, which is how the sliding window marks its reflect-padded border,
so a remote prediction equals a local one.

`model_info` exists because TF Serving serves no `assets.extra` files: the class
names and colours, bands, dtype, tile size, output stride and nodata reach a REST
client through this signature. Its dummy input is there because a TF Serving predict
request must carry at least one input tensor.
"""

from __future__ import annotations

import json
from dataclasses import asdict, fields

import numpy as np

from reseg.artifacts import ModelInfo
from reseg.errors import ArtifactError

DEFAULT_SIGNATURE = "serving_default"
MASKED_SIGNATURE = "predict_masked"
INFO_SIGNATURE = "model_info"

IMAGES = "images"
VALID = "valid"
PROBABILITIES = "probabilities"
CLASSES = "classes"
INFO_REQUEST = "request"
INFO_OUTPUT = "model_info"

# TensorFlow DataType enum names (as in SignatureDef JSON) of the image dtypes reseg reads
DT_NAMES: dict[str, str] = {
    "uint8": "DT_UINT8",
    "uint16": "DT_UINT16",
    "int16": "DT_INT16",
    "int32": "DT_INT32",
    "float32": "DT_FLOAT",
    "float64": "DT_DOUBLE",
}
NUMPY_OF_DT: dict[str, str] = {v: k for k, v in DT_NAMES.items()}


def numpy_dtype(dt_name: str) -> np.dtype:
    """numpy dtype of a TensorFlow DataType name such as `DT_UINT16`."""
    try:
        return np.dtype(NUMPY_OF_DT[dt_name])
    except KeyError:
        raise ArtifactError(
            f"the served model takes {dt_name} images; reseg reads {sorted(NUMPY_OF_DT)}"
        ) from None


def info_to_json(info: ModelInfo) -> str:
    """The `ModelInfo` as compact JSON (what the `model_info` signature returns)."""
    return json.dumps(asdict(info), sort_keys=True, separators=(",", ":"))


def info_from_json(text: str | bytes, source: str = "model_info") -> ModelInfo:
    """Parse `info_to_json` output; unknown keys are ignored (newer exporters add some)."""
    try:
        d = json.loads(text)
        known = {f.name for f in fields(ModelInfo)}
        return ModelInfo(
            **{k: tuple(v) if isinstance(v, list) else v for k, v in d.items() if k in known}
        )
    except (ValueError, TypeError) as e:
        raise ArtifactError(f"{source}: not a reseg ModelInfo ({type(e).__name__}: {e})") from None
