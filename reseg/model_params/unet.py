"""Parameters of U-Net (`reseg.models.unet`)."""

from __future__ import annotations

from pydantic import Field

from reseg.model_params.base import Count, Flag, Params, Rate


class UNetParams(Params):
    """`depth` levels of two 3 x 3 convolutions and 2 x 2 pooling, mirrored by the decoder."""

    depth: Count = Field(4, le=8, description="Number of 2 x 2 poolings; output stride 2**depth.")
    base_filters: Count = Field(
        32, description="Filters of the first level; level l has base_filters * 2**l."
    )
    batch_norm: Flag = Field(True, description="Batch normalisation after every 3 x 3 convolution.")
    dropout: Rate = Field(0.0, description="Dropout rate on the bottleneck output (0 = none).")

    @property
    def output_stride(self) -> int:
        """`2**depth`: one 2 x 2 pooling per level."""
        return 2**self.depth


Params = UNetParams
