"""The `predict` section: whole-scene prediction (sliding window, TTA, refinement, outputs)."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, StringConstraints, field_validator, model_validator

from reseg.config.base import Section

D4 = (
    "identity",
    "rot90",
    "rot180",
    "rot270",
    "flip",
    "flip_rot90",
    "flip_rot180",
    "flip_rot270",
)
"""Names of the eight D4 transforms (rotations counter-clockwise; flip = left-right mirror first)."""


LENGTH_PATTERN = r"^\s*[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?\s*(px|m)\s*$"
Length = Annotated[
    float | Annotated[str, StringConstraints(pattern=LENGTH_PATTERN)],
    Field(
        description=(
            "A length on the ground: `90 m` (metres, converted with the scene's pixel size; "
            "needs a georeferenced scene), `3 px` or a plain number (pixels)."
        )
    ),
]
"""A spatial parameter: a number or `N px` is pixels, `N m` is metres on the ground."""


def parse_length(value: float | str) -> tuple[float, str]:
    """A `Length` as (value, unit), unit `px` or `m`.

    >>> parse_length(3), parse_length("90 m"), parse_length("2.5px")
    ((3.0, 'px'), (90.0, 'm'), (2.5, 'px'))
    """
    if isinstance(value, int | float):
        return float(value), "px"
    m = re.match(LENGTH_PATTERN, value)
    if m is None:
        raise ValueError(f"a length is `N m`, `N px` or a number of pixels, received {value!r}")
    return float(value[: m.start(1)]), m.group(1)


def _positive(v: float | str) -> float | str:
    if parse_length(v)[0] <= 0:
        raise ValueError(f"a length must be positive, received {v!r}")
    return v


class CrfConfig(Section):
    """DenseCRF (pydensecrf2) parameters; the pairwise terms follow Krähenbühl and Koltun (2011).

    Spatial stds are lengths (`N m` on the ground, `N px` or a number of pixels); the
    colour std is in units of the bands' standard deviation (the model's statistics), so
    one setting means the same on uint8 photographs and uint16 reflectances.
    """

    iterations: int = Field(5, ge=1, le=50, description="Mean-field iterations.")
    gaussian_sxy: Length = Field(1.0, description="Smoothness kernel: spatial std (length).")
    gaussian_compat: float = Field(1.0, ge=0, description="Smoothness kernel: weight.")
    bilateral_sxy: Length = Field(10.0, description="Appearance kernel: spatial std (length).")
    bilateral_sstd: float = Field(
        0.5,
        gt=0,
        description="Appearance kernel: colour std, in standard deviations of the bands.",
    )
    bilateral_compat: float = Field(3.0, ge=0, description="Appearance kernel: weight.")

    _lengths = field_validator("gaussian_sxy", "bilateral_sxy")(_positive)


class SlicConfig(Section):
    """SLIC superpixels (scikit-image) on the three `rgb_bands` standardised by the model's
    statistics; probabilities averaged per superpixel."""

    size: Length = Field(
        10.0, description="Side of a superpixel (length): n_segments = tile area / size^2."
    )
    compactness: float = Field(
        0.5,
        gt=0,
        description=(
            "Colour vs. space trade-off, in standard deviations of the bands: a colour "
            "difference of `compactness` weighs as much as a distance of one `size` "
            "(higher = squarer)."
        ),
    )
    sigma: Length = Field(
        0.5, description="Gaussian smoothing before segmenting (length); 0 = none."
    )

    _size = field_validator("size")(_positive)

    @field_validator("sigma")
    @classmethod
    def _non_negative(cls, v: float | str) -> float | str:
        if parse_length(v)[0] < 0:
            raise ValueError(f"sigma must be >= 0, received {v!r}")
        return v


class CrfGrid(Section):
    """The CRF settings `reseg tune-refine` tries: every combination, the rest from `predict.crf`."""

    bilateral_sxy: list[Length] = Field(
        [3.0, 10.0, 30.0], min_length=1, description="Appearance kernel spatial stds (lengths)."
    )
    bilateral_sstd: list[float] = Field(
        [0.25, 1.0], min_length=1, description="Appearance kernel colour stds (band stds)."
    )
    bilateral_compat: list[float] = Field(
        [1.0, 4.0], min_length=1, description="Appearance kernel weights."
    )

    @field_validator("bilateral_sxy")
    @classmethod
    def _lengths(cls, v: list[float | str]) -> list[float | str]:
        return [_positive(x) for x in v]


class SlicGrid(Section):
    """The SLIC settings `reseg tune-refine` tries: every combination, the rest from `predict.slic`."""

    size: list[Length] = Field(
        [3.0, 6.0, 12.0], min_length=1, description="Superpixel sides (lengths)."
    )
    compactness: list[float] = Field(
        [0.1, 1.0], min_length=1, description="Compactness values (band stds)."
    )

    @field_validator("size")
    @classmethod
    def _lengths(cls, v: list[float | str]) -> list[float | str]:
        return [_positive(x) for x in v]


class TuneConfig(Section):
    """Tuning of the refinements on the validation pixels (`reseg tune-refine`)."""

    crf: CrfGrid = CrfGrid()
    slic: SlicGrid = SlicGrid()
    only_if_better: bool = Field(
        True,
        description=(
            "Prediction applies a tuned refinement only when its best setting beat no "
            "refinement (mIoU) on the validation pixels; otherwise it predicts without "
            "refinement and says so."
        ),
    )
    confidence: float = Field(
        0.9,
        ge=0.5,
        lt=1.0,
        description=(
            "A refinement beats no refinement when its validation mIoU is higher and the "
            "lower end of the one-sided interval at this level of the paired gain (bootstrap "
            "over validation tiles) is above 0, so a gain within the tiles' noise does not count."
        ),
    )
    bootstrap: int = Field(1000, ge=100, description="Bootstrap resamples of that interval.")


class PredictConfig(Section):
    """How whole scenes are predicted and written.

    The scene is cut into tiles of `tile_size` pixels overlapping by `overlap`
    pixels; the border is reflect-padded by overlap / 2. Tile probabilities are
    blended with a tapered-cosine weight (see `reseg.components.predictor.sliding`).
    """

    tile_size: int | None = Field(
        None,
        ge=16,
        le=8192,
        description=(
            "Prediction tile side, pixels (rounded up to the model's output stride). Default: "
            "max(1024, training tile size), or the training tile size for architectures with "
            "global pooling (PSPNet, DeepLab), whose context depends on the tile size. Big tiles "
            "keep the overlap's extra work small: (T / (T - overlap))^2 = 1.07 at 1024 / 32."
        ),
    )
    overlap: int = Field(32, ge=0, description="Pixels shared by neighbouring tiles (even).")
    shrink_tiles: bool = Field(
        True,
        description=(
            "Shrink the tiles to the smallest size (a multiple of the output stride) that covers "
            "the scene with as many tiles, instead of predicting mostly padding in the last one. "
            "Off: every tile has the full size, so the model's memory does not depend on the scene."
        ),
    )
    batch_size: int = Field(
        1,
        ge=1,
        le=1024,
        description=(
            "Tiles per model call, counted at the full tile size: tiles shrunk to fit a small "
            "scene are batched up to as many pixels, so the memory in flight does not depend on "
            "the scene."
        ),
    )
    tta: Literal["none", "d4"] | list[str] = Field(
        "none",
        description=f"Test-time augmentation: none, d4 (all eight) or a subset of {list(D4)}.",
    )
    refine: Literal["none", "crf", "slic"] = Field(
        "none", description="Refinement of probabilities."
    )
    crf: CrfConfig = CrfConfig()
    slic: SlicConfig = SlicConfig()
    tune: TuneConfig = Field(
        TuneConfig(),
        description=(
            "The grid `reseg tune-refine` searches on the validation pixels; prediction with "
            "`refine` uses the tuned setting of the model's fold when there is one."
        ),
    )
    rgb_bands: list[int] | None = Field(
        None,
        description=(
            "Three 1-based indexes into the model's input bands used for CRF, SLIC and the preview "
            "(default the first three; a 1- or 2-band model repeats its first band)."
        ),
    )
    confidence: Literal["uint8", "float32"] = Field(
        "uint8",
        description=(
            "Encoding of <scene>.confidence.tif: uint8 = round(255 * max probability), 0 = nodata, "
            "GDAL scale 1/255; float32 = max probability, -1 = nodata."
        ),
    )
    probabilities: bool = Field(
        False, description="Also write <scene>.probs.tif, one band per class."
    )
    preview: bool = Field(True, description="Write <scene>.preview.png (image with class overlay).")
    preview_size: int = Field(1024, ge=16, description="Longest side of the preview, pixels.")
    class_overviews: Literal["mode", "nearest"] = Field(
        "mode", description="Resampling of the class map's overviews."
    )
    compress: Literal["deflate", "lzw", "zstd"] = Field("deflate", description="COG compression.")
    nodata: float | None = Field(
        None, description="Image nodata; default the file's, then the model's."
    )
    prefetch: int = Field(
        1,
        ge=1,
        le=64,
        description=(
            "Batches queued between reader and model and between model and writer. One keeps "
            "the model busy when reading and writing a batch take less time than predicting it."
        ),
    )
    chunk_mb: int = Field(16, ge=1, description="Largest block of image pixels read at once, MiB.")
    gdal_cache_mb: int = Field(
        16, ge=1, description="GDAL block cache while predicting (process-wide while it runs), MiB."
    )
    beam: bool = Field(
        False,
        description=(
            "Run prediction as a Beam job (the `beam` section's options and the CLI's `-- "
            "BEAM_OPTIONS`): elements are scenes, scenes larger than `block_size` are split into "
            "blocks of whole tiles predicted on different workers and assembled into one COG; "
            "the outputs equal those of the sequential prediction."
        ),
    )
    block_size: int = Field(
        8192,
        ge=64,
        description=(
            "Beam prediction: a scene whose height or width exceeds this many pixels is split into "
            "blocks of about this side, made of whole tiles (floor(block_size / tile stride) tiles "
            "a side). A block below or right of another also predicts that block's last tile row "
            "or column (its blend needs them): at 8192 px and 1024-px tiles, at most 1.27x the "
            "model work of the sequential prediction."
        ),
    )
    jit_compile: bool | None = Field(
        None,
        description=(
            "XLA-compile the model. Default (null) off: for the U-Net on a CPU it was no faster "
            "than oneDNN here (bench/predict.py), and its buffers take 50-100 MB more memory."
        ),
    )
    precision: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto",
        description=(
            "Arithmetic of the model's layers. auto (default) = bfloat16 where the hardware runs "
            "it natively (AMX or AVX-512 BF16 CPU, GPU of compute capability >= 8.0), else "
            "float32; the choice and its reason are logged once. auto's bfloat16 is guarded: the "
            "first time a model predicts, a few tiles of the scene are predicted in both, and "
            "below min_agreement the model runs in float32 (one warning). bfloat16/float16 fold "
            "batch norm into the convolutions and keep the normalisation, softmax, blending and "
            "outputs float32. An export runs in its own precision (export.precision)."
        ),
    )
    min_agreement: float = Field(
        0.995,
        gt=0,
        le=1,
        description=(
            "Least share of the guard's sample pixels whose class in auto's bfloat16 equals "
            "float32's (prediction, and scoring with rounds.score_precision auto)."
        ),
    )
    progress: bool = Field(
        True,
        description="Progress bar over tiles, where stderr is a terminal (--progress or "
        "RESEG_PROGRESS=1: everywhere).",
    )

    @field_validator("tta")
    @classmethod
    def _known_transforms(cls, v: str | list[str]) -> str | list[str]:
        if isinstance(v, list):
            if not v:
                raise ValueError("tta list is empty; use `none` for no augmentation")
            bad = [t for t in v if t not in D4]
            if bad:
                raise ValueError(f"unknown tta transforms {bad}; choose from {list(D4)}")
            if len(set(v)) != len(v):
                raise ValueError(f"tta transforms repeat: {v}")
        return v

    @field_validator("rgb_bands")
    @classmethod
    def _three_bands(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and (len(v) != 3 or min(v) < 1):
            raise ValueError(f"rgb_bands are three 1-based band indexes, received {v}")
        return v

    @model_validator(mode="after")
    def _overlap_fits(self) -> PredictConfig:
        if self.overlap % 2:
            raise ValueError(f"overlap must be even, received overlap={self.overlap}")
        if self.tile_size is not None and 2 * self.overlap > self.tile_size:
            raise ValueError(
                f"overlap must be at most half the tile size, received overlap={self.overlap}, "
                f"tile_size={self.tile_size}"
            )
        return self

    @property
    def gdal_env(self) -> dict[str, int]:
        """GDAL options while predicting: the block cache in bytes (rasterio calls
        GDALSetCacheMax64, which takes bytes; the value is process-wide while it runs)."""
        return {"GDAL_CACHEMAX": self.gdal_cache_mb << 20}

    @property
    def transforms(self) -> tuple[str, ...]:
        """The TTA transforms as names of `D4`."""
        if self.tta == "none":
            return ("identity",)
        if self.tta == "d4":
            return D4
        return tuple(self.tta)
