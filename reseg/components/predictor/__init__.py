"""Whole-scene prediction: sliding window, blending, TTA, refinement, COG outputs, metrics.

Public API:

- `predict_scene(model, image, out_dir, cfg, labels=None, data=None) -> ScenePrediction`
- `predict(model, images, out_dir, cfg, labels=None, data=None) -> list[ScenePrediction]`
- `load_backend(path) -> Backend`: a round's model, merged rounds or an exported SavedModel
- `Backend`: the one model interface (`info`, `__call__(tiles_raw, valid) -> probs`)
- `combine(probs_list, weights, method)`: merging members' probabilities (merged rounds)

Modules: `backends` (model kinds), `ensemble` (merging), `sliding` (tile geometry and
blending), `tta` (D4 augmentation), `refine` (DenseCRF, SLIC), `reader` (image windows),
`labels` (reference labels), `outputs` (GeoTIFF/COG, preview), `scene` (the pipeline).
"""

from reseg.components.predictor.backends import (
    Backend,
    EnsembleBackend,
    KerasBackend,
    SavedModelBackend,
    load_backend,
)
from reseg.components.predictor.ensemble import combine
from reseg.components.predictor.scene import ScenePrediction, predict, predict_scene

__all__ = [
    "Backend",
    "EnsembleBackend",
    "KerasBackend",
    "SavedModelBackend",
    "ScenePrediction",
    "combine",
    "load_backend",
    "predict",
    "predict_scene",
]
