"""Parameters of the plain CNN baseline (`reseg.models.cnn`)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, field_validator

from reseg.model_params.base import Count, Flag, Params, Rate, invalid


class CNNParams(Params):
    """`depth` same-resolution convolution blocks and a 1 x 1 classifier."""

    output_stride: ClassVar[int] = 1
    """No downsampling: any height and width."""

    filters: Count = Field(64, description="Filters of every convolution.")
    depth: Count = Field(6, description="Number of convolution blocks.")
    kernel_size: Count = Field(
        3,
        description="Odd kernel side of every convolution; the receptive field is "
        "1 + depth * (kernel_size - 1) pixels.",
    )
    batch_norm: Flag = Field(True, description="Batch normalisation after every convolution.")
    dropout: Rate = Field(0.0, description="Dropout rate before the classifier (0 = none).")

    @field_validator("kernel_size")
    @classmethod
    def _odd(cls, v: int) -> int:
        if v % 2 == 0:
            raise invalid("odd", "must be odd")
        return v


Params = CNNParams
