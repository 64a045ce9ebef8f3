"""Whole-scene prediction: sliding window, blending, TTA, refinement, COG outputs, metrics.

Public API:

- `predict_scene(model, image, out_dir, cfg, labels=None, data=None) -> ScenePrediction`
- `predict(model, images, out_dir, cfg, labels=None, data=None) -> list[ScenePrediction]`

Models reach it through `reseg.inference.Backend` (`reseg.serving.load_backend` loads any
model path: a round's model, merged rounds or an exported SavedModel).

Modules: `sliding` (tile geometry and blending), `refine` (DenseCRF, SLIC), `reader` (image windows),
`labels` (reference labels), `outputs` (GeoTIFF/COG, preview), `scene` (the pipeline).
"""

from reseg.components.predictor.scene import ScenePrediction, predict, predict_scene, unique_ids

__all__ = ["ScenePrediction", "predict", "predict_scene", "unique_ids"]
