"""Parameters of PSPNet (`reseg.models.pspnet`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from reseg.model_params.base import Count, Rate
from reseg.model_params.encoders import EncoderParams


class PSPNetParams(EncoderParams):
    """A dilated encoder, the pyramid pooling module, a 3 x 3 head; output stride 8 or 16."""

    output_stride: Literal[8, 16] = Field(
        8, description="Input size / feature size (paper 8); the stages past it are dilated."
    )
    bins: tuple[Count, ...] = Field(
        (1, 2, 3, 6), min_length=1, description="Grid sizes of the pyramid pooling module."
    )
    head_filters: Count = Field(
        256, description="Filters of the 3 x 3 convolution after the pyramid."
    )
    dropout: Rate = Field(0.1, description="Dropout before the classifier (paper 0.1).")


Params = PSPNetParams
