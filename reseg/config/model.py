"""The `model` section: which architecture of the registry, with which parameters."""

from typing import Any

from pydantic import Field

from reseg.config.base import Section


class ModelConfig(Section):
    name: str = Field("unet", description="Registry name (reseg.models.registry).")
    params: dict[str, Any] = Field(
        default_factory=dict, description="Keyword arguments of the model's `build`."
    )
