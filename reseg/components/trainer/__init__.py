"""The trainer component: a model of the registry trained on the tiles of a fold.

`train(cfg, root, fold=k, round=r)` reads `<root>/tiles` (and `<root>/stats`),
trains with one custom loop under any tf.distribute strategy, checkpoints every
epoch (a rerun resumes), logs to MLflow through `reseg.tracking`, and publishes
`<root>/rounds/r<r>/fold<k>/model`. Modules: `data` (tf.data), `augment`,
`losses`, `distribute` (strategies), `loop` (training loop), `plots`,
`component` (`train`).
"""

from reseg.components.trainer.component import MODEL_FILE, train

__all__ = ["MODEL_FILE", "train"]
