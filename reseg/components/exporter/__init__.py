"""Exporter: a SavedModel for TF Serving, validated in a fresh process, registered in MLflow.

Public API:

- `export(cfg, root, source=None, fold=None, tracking=None) -> Path`: the published
  `<root>/export/<model_name>/<version>/` (see `component.py` for the steps)
- `export_info(version_dir) -> dict`: its manifest and ModelInfo

The serving contract (signatures, tensors) is `reseg.serving.contract`; TF Serving's
folder layout and warmup file are `reseg.serving.layout`.
"""

from reseg.components.exporter.component import export, export_info

__all__ = ["export", "export_info"]
