"""Parameters of SegNet (`reseg.models.segnet`)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from reseg.model_params.base import Count, Flag, Params, Rate


class SegNetParams(Params):
    """VGG-16 encoder whose max-pooling indices the decoder unpools with."""

    output_stride: ClassVar[int] = 32
    """Five 2 x 2 poolings."""

    base_filters: Count = Field(32, description="Filters of the first block (paper 64).")
    batch_norm: Flag = Field(
        True, description="Batch normalisation after every convolution but the last."
    )
    dropout: Rate = Field(
        0.0,
        description="Dropout after the three deepest encoder and decoder blocks (Bayesian "
        "SegNet's placement; 0 = none, the paper's SegNet).",
    )


Params = SegNetParams
