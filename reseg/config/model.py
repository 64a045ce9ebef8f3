"""The `model` section: which architecture of the registry, with which parameters.

`name` is checked against `MODEL_NAMES` (a static copy of
`reseg.models.names()`, kept in sync by a test) so that loading a config does
not import Keras. `params` is checked with `reseg.models.validate_params`
(unknown keys, bad values) without building the model; that check imports the
model zoo, and only runs when `params` is not empty (defaults are valid).
"""

from typing import Any

from pydantic import Field, field_validator, model_validator

from reseg.config.base import Section

MODEL_NAMES = (
    "cnn",
    "alexnet_fcn",
    "fcn32s",
    "fcn16s",
    "fcn8s",
    "unet",
    "segnet",
    "pspnet",
    "deeplabv3plus",
)


class ModelConfig(Section):
    """The architecture and its keyword arguments (see `reseg.models.registry`)."""

    name: str = Field("unet", description=f"Registry name, one of {list(MODEL_NAMES)}.")
    params: dict[str, Any] = Field(
        default_factory=dict,
        description="Keyword arguments of the model's `build` (e.g. depth, base_filters).",
    )

    @field_validator("name")
    @classmethod
    def _known_name(cls, v: str) -> str:
        if v not in MODEL_NAMES:
            raise ValueError(f"unknown model {v!r}; available: {list(MODEL_NAMES)}")
        return v

    @model_validator(mode="after")
    def _valid_params(self) -> "ModelConfig":
        if self.params:
            from reseg.models.registry import validate_params

            try:
                validate_params(self.name, dict(self.params))
            except TypeError as e:  # pydantic reports ValueError, not TypeError
                raise ValueError(str(e)) from None
        return self
