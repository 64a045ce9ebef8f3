"""The `predict` section."""

from pydantic import Field

from reseg.config.base import Section


class PredictConfig(Section):
    overlap: int = Field(32, ge=0)
