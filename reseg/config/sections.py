"""Sections of later pipeline steps, one module each; re-exported for `Config`."""

from reseg.config.export import ExportConfig
from reseg.config.model import ModelConfig
from reseg.config.predict import PredictConfig
from reseg.config.rounds import RoundsConfig
from reseg.config.tracking import TrackingConfig
from reseg.config.train import TrainConfig

__all__ = [
    "ExportConfig",
    "ModelConfig",
    "PredictConfig",
    "RoundsConfig",
    "TrackingConfig",
    "TrainConfig",
]
