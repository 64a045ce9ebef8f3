"""Parameters of U-Net (`reseg.models.unet`)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StrictStr, model_validator

from reseg.model_params.base import Count, Flag, Params, Rate, invalid

UNetEncoder = Literal["none", "resnet18", "resnet34", "resnet50", "resnet50_torchvision"]
UNET_ENCODERS: tuple[str, ...] = UNetEncoder.__args__


class UNetParams(Params):
    """`depth` levels of two 3 x 3 convolutions and 2 x 2 pooling, mirrored by the decoder;
    or, with `encoder`, the same decoder on a pretrained backbone's feature pyramid
    (segmentation_models' U-Net)."""

    depth: Count = Field(
        4,
        le=8,
        description="Number of 2 x 2 poolings of the plain U-Net; output stride 2**depth "
        "(with an encoder, see encoder_depth).",
    )
    base_filters: Count = Field(
        32,
        description="Filters of the first level; level l has base_filters * 2**l (with an "
        "encoder: the decoder's widths; 16 gives segmentation_models' 256, 128, 64, 32, 16).",
    )
    batch_norm: Flag = Field(True, description="Batch normalisation after every 3 x 3 convolution.")
    dropout: Rate = Field(0.0, description="Dropout rate on the bottleneck output (0 = none).")
    encoder: UNetEncoder = Field(
        "none",
        description="Backbone of the contracting path: 'none' (the plain U-Net), torchvision's "
        "ResNets 'resnet18', 'resnet34', 'resnet50_torchvision' (targets of `reseg weights "
        "convert`), or keras.applications' 'resnet50'.",
    )
    encoder_weights: Annotated[StrictStr, Field(min_length=1)] | None = Field(
        None,
        description="None: random initialisation; 'imagenet' (resnet50 only): Keras downloads "
        "its ImageNet weights once, online; or a local .weights.h5 of the backbone (3 bands: "
        "the first convolution is adapted to the band count).",
    )
    encoder_bands: tuple[Annotated[StrictStr, Field(min_length=1)], ...] | None = Field(
        None,
        description="Names of the scene's bands in input order (after data.bands), e.g. "
        "[B04, B03, B02, B08]: the first convolution takes each band's channel of the weights "
        "by name (the band order `reseg weights convert --band-order` records; 'imagenet' is "
        "red, green, blue), the mean of the channels for a band the weights lack. None: adapt "
        "by position (repeat and rescale).",
    )
    encoder_depth: Count = Field(
        5,
        le=5,
        description="With an encoder: backbone stages decoded (strides 2 .. 2**encoder_depth); "
        "output stride 2**encoder_depth.",
    )

    @model_validator(mode="after")
    def _weights_need_an_encoder(self) -> UNetParams:
        if self.encoder == "none" and self.encoder_weights is not None:
            raise invalid(
                "weights_need_encoder",
                f"encoder_weights needs an encoder {list(UNET_ENCODERS[1:])}, not encoder='none'",
            )
        if self.encoder_bands is not None and self.encoder_weights is None:
            raise invalid(
                "bands_need_weights",
                "encoder_bands maps the bands of encoder_weights: set encoder_weights too",
            )
        if self.encoder_weights == "imagenet" and self.encoder != "resnet50":
            raise invalid(
                "no_imagenet_weights",
                f"encoder_weights='imagenet' is Keras' ResNet-50 only (encoder='resnet50'); for "
                f"encoder={self.encoder!r} convert torchvision's weights with `reseg weights "
                "convert` and give the file",
            )
        return self

    @property
    def levels(self) -> int:
        """Levels of the decoder: `depth`, or `encoder_depth` with an encoder."""
        return self.depth if self.encoder == "none" else self.encoder_depth

    @property
    def output_stride(self) -> int:
        """`2**levels`: one 2 x 2 pooling (or backbone stride) per level."""
        return 2**self.levels


Params = UNetParams
