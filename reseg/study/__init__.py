"""`reseg study`: the confidence rounds swept over x, direction, score, models, resolutions, folds.

`run_study(STUDY.yaml, root, profile=...)` plans the cells (`plan`), runs them in
parallel worker processes (`scheduler`, `worker`), and writes one report
(`report`, with `stats` for the paired bootstrap). See `reseg.study.plan` for the
study root's layout and `reseg.study.config` for the study file.
"""

from reseg.study.config import StudyConfig, load_study, parse_study
from reseg.study.runner import StudyResult, plan_study, run_study

__all__ = ["StudyConfig", "StudyResult", "load_study", "parse_study", "plan_study", "run_study"]
