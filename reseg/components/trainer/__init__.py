"""The trainer component: a model of the registry trained on the tiles of a fold.

`train(cfg, tiles, stats, out, fold=k, round=r)` trains on the tile set (normalised
with its statistics) with one custom loop under any tf.distribute strategy,
checkpoints every epoch (a rerun resumes), logs to MLflow through `reseg.tracking`,
and publishes the model directory `out` (the train step gives
`<root>/rounds/r<r>/fold<k>/model`). Modules: `data` (tf.data), `augment`,
`losses`, `distribute` (strategies), `loop` (training loop), `plots`,
`component` (`train`).
"""

from reseg.components.trainer.component import MODEL_FILE, train

__all__ = ["MODEL_FILE", "train"]
