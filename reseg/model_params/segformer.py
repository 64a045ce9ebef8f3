"""Parameters of SegFormer (`reseg.models.segformer`) and its MiT encoders (`reseg.models.mit`)."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field, StrictStr

from reseg.model_params.base import Count, Params, Rate

MiTVariant = Literal["mit_b0", "mit_b1", "mit_b2", "mit_b3", "mit_b4", "mit_b5"]
MIT_VARIANTS: tuple[str, ...] = MiTVariant.__args__

# variant: (blocks per stage, widths per stage), as in the SegFormer paper and keras-hub
MIT_SHAPES: dict[str, tuple[tuple[int, int, int, int], tuple[int, int, int, int]]] = {
    "mit_b0": ((2, 2, 2, 2), (32, 64, 160, 256)),
    "mit_b1": ((2, 2, 2, 2), (64, 128, 320, 512)),
    "mit_b2": ((3, 4, 6, 3), (64, 128, 320, 512)),
    "mit_b3": ((3, 4, 18, 3), (64, 128, 320, 512)),
    "mit_b4": ((3, 8, 27, 3), (64, 128, 320, 512)),
    "mit_b5": ((3, 6, 40, 3), (64, 128, 320, 512)),
}
MIT_HEADS = (1, 2, 5, 8)
MIT_SR_RATIOS = (8, 4, 2, 1)
MIT_PATCH_SIZES = (7, 3, 3, 3)
MIT_STRIDES = (4, 2, 2, 2)


class SegFormerParams(Params):
    """A Mix Transformer (MiT) encoder and SegFormer's all-MLP decoder (Xie et al., 2021)."""

    encoder: MiTVariant = Field(
        "mit_b0",
        description="MiT variant: 'mit_b0' (3.3 M parameters) to 'mit_b5' (SegFormer's sizes).",
    )
    encoder_weights: Annotated[StrictStr, Field(min_length=1)] | None = Field(
        None,
        description="None: random initialisation; a local keras-hub preset folder of a "
        "MiTBackbone (works offline); or a keras-hub preset name such as 'mit_b0_ade20k_512', "
        "which keras-hub downloads into its own cache when online (reseg never downloads). "
        "3-band weights on an N-band scene adapt the first convolution.",
    )
    decoder_dim: Count = Field(
        256, description="Channels of the decoder's per-stage projections (paper: 256 for B0/B1)."
    )
    dropout: Rate = Field(0.1, description="Dropout before the classifier (paper 0.1).")
    output_stride: ClassVar[int] = 32  # the deepest stage's stride


Params = SegFormerParams
