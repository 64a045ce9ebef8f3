"""Parameters of FCN-32s, FCN-16s and FCN-8s (`reseg.models.fcn`); the three share them."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from reseg.model_params.base import Count, Flag, Params, Rate

VARIANTS = ("fcn32s", "fcn16s", "fcn8s")


class FCNParams(Params):
    """VGG-16 encoder, fc6/fc7 as convolutions, score fusion of the variant."""

    output_stride: ClassVar[int] = 32
    """Five 2 x 2 poolings."""

    base_filters: Count = Field(
        32,
        description="Filters of the first VGG block; blocks have (1, 2, 4, 8, 8) times as many "
        "(paper 64).",
    )
    fc_filters: Count = Field(1024, description="Filters of fc6 and fc7 (paper 4096).")
    fc_kernel: Count = Field(7, description="Kernel side of fc6 (paper 7).")
    batch_norm: Flag = Field(True, description="Batch normalisation after every convolution.")
    dropout: Rate = Field(0.5, description="Dropout after fc6 and fc7 (paper 0.5).")


Params = FCNParams
