"""The pipeline: the only place that wires components together.

- `steps`: one function per step (tile, stats, train/score/evaluate/select of round r
  of fold k, merge, export, predict, report) and `rounds`, the loop of one fold;
- `run`: `STEPS`, the order of `reseg run`, and `run_pipeline`.
"""

from reseg.pipeline.run import PARENT_RUN_ENV, STEPS, parent_tags, run_pipeline
from reseg.pipeline.steps import Context

__all__ = ["PARENT_RUN_ENV", "STEPS", "Context", "parent_tags", "run_pipeline"]
