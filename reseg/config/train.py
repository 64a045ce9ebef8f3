"""The `train` section."""

from pydantic import Field

from reseg.config.base import Section


class TrainConfig(Section):
    batch_size: int = Field(8, ge=1)
    epochs: int = Field(10, ge=1)
    learning_rate: float = Field(1e-3, gt=0)
    seed: int = 0
