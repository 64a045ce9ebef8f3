"""Parameters of FCN-32s, FCN-16s and FCN-8s (`reseg.models.fcn`); the three share them."""

from __future__ import annotations

from typing import Annotated, ClassVar

from pydantic import Field, StrictStr, model_validator

from reseg.model_params.base import Count, Flag, Params, Rate, invalid

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
    encoder_weights: Annotated[StrictStr, Field(min_length=1)] | None = Field(
        None,
        description="VGG-16 weights of the five convolution blocks: None (random), 'imagenet' "
        "(keras.applications.VGG16's, which Keras downloads once, online) or a local "
        ".weights.h5 of `keras.applications.VGG16(include_top=False)`; needs the paper's "
        "widths (base_filters 64) and no batch norm. fc6/fc7 start random.",
    )

    @model_validator(mode="after")
    def _weights_need_vgg16(self) -> FCNParams:
        if self.encoder_weights is not None and (self.base_filters != 64 or self.batch_norm):
            raise invalid(
                "weights_need_vgg16",
                "encoder_weights are VGG-16's: they need base_filters=64 and batch_norm=false, "
                f"received base_filters={self.base_filters}, batch_norm={self.batch_norm}",
            )
        return self


Params = FCNParams
