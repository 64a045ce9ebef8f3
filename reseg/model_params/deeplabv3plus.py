"""Parameters of DeepLabV3+ (`reseg.models.deeplabv3plus`)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from reseg.model_params.base import Count, Flag, Rate
from reseg.model_params.encoders import EncoderParams


class DeepLabV3PlusParams(EncoderParams):
    """A dilated encoder, atrous spatial pyramid pooling and a stride-4 decoder."""

    output_stride: Literal[8, 16] = Field(
        16, description="Input size / feature size (16 or 8); the stages past it are dilated."
    )
    atrous_rates: Annotated[tuple[Count, ...], Field(min_length=1)] | None = Field(
        None,
        description="Rates of the ASPP 3 x 3 branches; None = (6, 12, 18) * 16 / output_stride.",
    )
    image_pooling: Flag = Field(True, description="Include the ASPP image pooling branch.")
    aspp_filters: Count = Field(
        256, description="Filters of every ASPP branch and of the projection."
    )
    low_level_filters: Count = Field(
        48, description="Filters of the 1 x 1 reduction of the c2 feature (paper 48)."
    )
    decoder_filters: Count = Field(
        256, description="Filters of the two 3 x 3 decoder convolutions."
    )
    dropout: Rate = Field(0.1, description="Dropout after the ASPP projection.")

    @property
    def rates(self) -> tuple[int, ...]:
        """The ASPP rates: `atrous_rates`, or (6, 12, 18) scaled by 16 / output_stride."""
        if self.atrous_rates is not None:
            return self.atrous_rates
        return tuple(r * 16 // self.output_stride for r in (6, 12, 18))


Params = DeepLabV3PlusParams
