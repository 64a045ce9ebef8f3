"""Inference: one model interface for every consumer (scorer, merger, predictor, exporter checks).

- `Backend`: `info` (`ModelInfo`) and `__call__(tiles_raw, valid) -> probs` (see `backends`)
- `KerasBackend`: a round's model directory; `EnsembleBackend`: merged rounds (`ensemble`)
- `load_backend(path)`: either of those from a path (exports: `reseg.serving.load_backend`)
- `combine(probs_list, weights, method)`: merging members' probabilities
- `predict_tta(backend, tiles, valid, transforms)`: D4 test-time augmentation (`tta`)
- `precision`: `auto` resolved from the hardware (AMX / AVX-512 BF16, GPU compute capability);
  Keras backends run in float32, bfloat16 or float16 (`KerasBackend.precision`)
- `normalise`, `check_batch`: the raw-tile contract every backend keeps
"""

from reseg.inference.backends import Backend, KerasBackend, check_batch, normalise
from reseg.inference.ensemble import METHODS, EnsembleBackend, combine
from reseg.inference.load import load_backend
from reseg.inference.tta import predict_tta

__all__ = [
    "METHODS",
    "Backend",
    "EnsembleBackend",
    "KerasBackend",
    "check_batch",
    "combine",
    "load_backend",
    "normalise",
    "predict_tta",
]
