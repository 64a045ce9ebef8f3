"""`reseg study`: the confidence rounds swept over x, direction, score, models, resolutions, folds.

`run_study(STUDY.yaml, root, profile=...)` plans the cells (`plan`), runs them in
parallel worker processes (`scheduler`, `worker`), and writes one report
(`report`, with `stats` for the comparisons over seeds and folds). See `reseg.study.plan`
for the study root's layout and `reseg.study.config` for the study file.

The names below are imported on first use, so `reseg.study.stats` (numpy and scipy only)
and `reseg.study.config` load without TensorFlow or Beam.
"""

from __future__ import annotations

import importlib

_NAMES = {
    "StudyConfig": "reseg.study.config",
    "load_study": "reseg.study.config",
    "parse_study": "reseg.study.config",
    "StudyResult": "reseg.study.runner",
    "plan_study": "reseg.study.runner",
    "run_study": "reseg.study.runner",
}

__all__ = sorted(_NAMES)


def __getattr__(name: str):
    if name in _NAMES:
        return getattr(importlib.import_module(_NAMES[name]), name)
    raise AttributeError(f"module 'reseg.study' has no attribute {name!r}")
