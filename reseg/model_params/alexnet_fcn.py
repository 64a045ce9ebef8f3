"""Parameters of FCN-AlexNet (`reseg.models.alexnet_fcn`)."""

from __future__ import annotations

from typing import Annotated, ClassVar

from pydantic import Field, StrictFloat

from reseg.model_params.base import Count, Flag, Params, Rate


class AlexNetFCNParams(Params):
    """AlexNet's five convolutions, fc6/fc7 as convolutions, 32x bilinear upsampling."""

    output_stride: ClassVar[int] = 32
    """The stride-4 conv1 and three stride-2 poolings."""

    width: Annotated[StrictFloat, Field(gt=0.0)] = Field(
        0.5, description="Multiplier of AlexNet's convolution widths (1.0 = paper)."
    )
    fc_filters: Count = Field(1024, description="Filters of fc6 and fc7 (paper 4096).")
    batch_norm: Flag = Field(True, description="Batch normalisation after every convolution.")
    dropout: Rate = Field(0.5, description="Dropout after fc6 and fc7 (paper 0.5).")


Params = AlexNetFCNParams
