"""Exporter: a SavedModel for TF Serving, validated in a fresh process, registered in MLflow.

Public API:

- `export(cfg.export, source, tiles, base, registry=..., tracking=...) -> Export`: the
  published `<base>/<version>/` of a loaded `sources.Source` (see `component.py` for the
  steps; the export step resolves the source and `base` in the root)
- `export_info(version_dir) -> dict`: its manifest and ModelInfo

The serving contract (signatures, tensors) is `reseg.serving.contract`; TF Serving's
folder layout and warmup file are `reseg.serving.layout`.
"""

from reseg.components.exporter.component import export, export_info

__all__ = ["export", "export_info"]
