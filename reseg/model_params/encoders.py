"""Parameters of the encoders of PSPNet and DeepLabV3+ (`reseg.models.encoders`).

The stage arithmetic is here too, because checking `hdc` needs it: with
`output_stride` 8 or 16 the stages past it keep their resolution and dilate
their convolutions instead, the rate doubling for each stride-2 step removed
(OS 16: c5 rate 2; OS 8: c4 rate 2, c5 rate 4). `hdc` (Wang et al., 2018)
replaces the constant rate of a dilated stage by a cycle of rates; a list of
lists gives one cycle per dilated stage (c4 then c5 at OS 8).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, StrictStr, ValidationInfo, field_validator

from reseg.model_params.base import Count, Params, invalid

Encoder = Literal["small", "resnet50", "mobilenetv2", "efficientnetb0"]
ENCODERS: tuple[str, ...] = Encoder.__args__
APPLICATION_ENCODERS = ENCODERS[1:]

Hdc = tuple[Count, ...] | tuple[tuple[Count, ...], ...]


def stage_rates(output_stride: int) -> dict[int, int]:
    """Nominal dilation rate of each stage c2..c5 for an output stride (8, 16 or 32).

    Stage c2 is at stride 4; each later stage halves the resolution while the
    stride stays <= `output_stride`, and doubles the rate instead past it.
    """
    rates, stride, rate = {}, 4, 1
    for stage in (2, 3, 4, 5):
        if stage > 2:
            if stride * 2 > output_stride:
                rate *= 2
            else:
                stride *= 2
        rates[stage] = rate
    return rates


def dilated_stages(output_stride: int) -> list[int]:
    """The stages whose rate is > 1 at `output_stride` (OS 16: [5]; OS 8: [4, 5])."""
    return [s for s, r in stage_rates(output_stride).items() if r > 1]


def hdc_patterns(hdc: Hdc | None, output_stride: int) -> dict[int, tuple[int, ...]]:
    """Rate cycle per dilated stage, from a checked `hdc` (None: no cycles)."""
    if hdc is None:
        return {}
    stages = dilated_stages(output_stride)
    if hdc and isinstance(hdc[0], tuple):
        return dict(zip(stages, hdc, strict=True))
    return {s: hdc for s in stages}


def _int_list(value: Any) -> tuple[int, ...] | None:
    """`value` as a tuple of ints >= 1, or None if it is not a non-empty list of them."""
    if not isinstance(value, list | tuple) or not value:
        return None
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value):
        return None
    return tuple(value)


class EncoderParams(Params):
    """The encoder arguments that PSPNet and DeepLabV3+ share."""

    encoder: Encoder = Field(
        "small",
        description="Feature pyramid: 'small' (built-in, ResNet-18 style) or a keras.applications "
        "network (never downloaded).",
    )
    encoder_weights: Annotated[StrictStr, Field(min_length=1)] | None = Field(
        None,
        description="Local weights file of the 3-band keras.applications encoder (None: random "
        "initialisation); the first convolution is adapted to the band count.",
    )
    encoder_widths: tuple[Count, ...] = Field(
        (32, 64, 128, 256),
        min_length=4,
        max_length=4,
        description="Stage widths c2..c5 of the 'small' encoder.",
    )
    encoder_blocks: tuple[Count, ...] = Field(
        (2, 2, 2, 2),
        min_length=4,
        max_length=4,
        description="Basic blocks per stage c2..c5 of the 'small' encoder.",
    )
    output_stride: Literal[8, 16] = Field(
        16, description="Input size / feature size; the stages past it are dilated."
    )
    hdc: Hdc | None = Field(
        None,
        description="Hybrid dilated convolution rates of the dilated stages: a list (every "
        "dilated stage), or one list per dilated stage (c4, c5 at output stride 8); None = "
        "the nominal rates.",
    )

    @field_validator("encoder_weights")
    @classmethod
    def _weights_need_an_application(cls, v: str | None, info: ValidationInfo) -> str | None:
        if v is not None and info.data.get("encoder") == "small":
            raise invalid(
                "weights_need_application",
                f"needs a keras.applications encoder {list(APPLICATION_ENCODERS)}, "
                "not encoder='small'",
            )
        return v

    @field_validator("hdc", mode="before")
    @classmethod
    def _one_pattern_per_dilated_stage(cls, v: Any, info: ValidationInfo) -> Any:
        if v is None:
            return None
        if isinstance(v, list | tuple) and v and all(isinstance(p, list | tuple) for p in v):
            patterns = [_int_list(p) for p in v]
            if None in patterns:
                raise invalid("hdc", "must hold non-empty lists of ints >= 1")
            stride = info.data.get("output_stride")
            if stride is not None and len(patterns) != len(dilated_stages(stride)):
                raise invalid(
                    "hdc",
                    f"gives {len(patterns)} patterns but output_stride={stride} has "
                    f"{len(dilated_stages(stride))} dilated stage(s)",
                )
            return tuple(patterns)
        pattern = _int_list(v)
        if pattern is None:
            raise invalid("hdc", "must be a non-empty list of ints >= 1, or one per dilated stage")
        return pattern
