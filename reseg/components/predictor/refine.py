"""Refinement of tile probabilities: DenseCRF (pydensecrf2) and SLIC superpixels.

Both run per prediction tile, before blending: tiles overlap and the blending
weight falls to ~0 at tile edges, where a refinement lacks context, so the
refinement is windowed with overlap and memory stays bounded by one tile.

Units. Spatial parameters are lengths (`reseg.config.predict.Length`): `N m` on
the ground, converted with the scene's pixel size (`ground_pixel_size`), or
pixels. Colour parameters are in standard deviations of the bands (the model's
statistics), so a setting means the same for uint8 photographs and uint16
reflectances. Both methods see three of the model's bands (`rgb_indexes`)
standardised, z = (x - mean) / std; DenseCRF needs 8 bits, the picture
u = 255 (z + 2.5) / 5 clipped to 0..255 (mean +- 2.5 std), in which one band
std is 51 units (`UINT8_PER_STD`).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from reseg.artifacts import ModelInfo
from reseg.config.predict import CrfConfig, SlicConfig, parse_length
from reseg.errors import ConfigError

UINT8_PER_STD = 255.0 / 5.0
"""Units of the uint8 picture per band standard deviation (mean +- 2.5 std -> 0..255)."""
METRES_PER_DEGREE = 111_320.0
"""Length of one degree of latitude (and of longitude at the equator), metres (approximate)."""


def rgb_indexes(info: ModelInfo, rgb_bands: list[int] | None) -> tuple[int, int, int]:
    """0-based indexes into the model's bands of the three bands used for refinement and previews."""
    if rgb_bands is None:
        idx = [0, 1, 2] if info.bands >= 3 else [0, 0, 0]
    else:
        idx = [b - 1 for b in rgb_bands]
        if max(idx) >= info.bands:
            raise ValueError(
                f"rgb_bands {rgb_bands} name a band beyond the model's {info.bands} bands"
            )
    return idx[0], idx[1], idx[2]


@functools.lru_cache(maxsize=64)
def _crs(text: str) -> Any:
    from rasterio.crs import CRS

    return CRS.from_user_input(text)


def ground_pixel_size(crs: Any, transform: Any) -> float | None:
    """Metres per pixel of a raster, or None when it is not georeferenced.

    Projected CRS: sqrt(|det A|) x metres per CRS unit, A the 2 x 2 part of the affine
    transform (the side of a square pixel of the same area). Geographic CRS:
    sqrt(|a| cos(lat) |e|) x 111,320 m per degree at the transform's origin latitude
    (approximate). Args: `crs` a rasterio CRS, WKT or '' / None; `transform` an
    `affine.Affine` or GDAL's 6-tuple (c, a, b, f, d, e).
    """
    if crs is None or crs == "":
        return None
    from affine import Affine

    t = transform if isinstance(transform, Affine) else Affine.from_gdal(*transform)
    c = _crs(crs if isinstance(crs, str) else crs.to_wkt())
    det = abs(t.a * t.e - t.b * t.d)
    if det == 0:
        return None
    if c.is_geographic:
        return math.sqrt(det * max(math.cos(math.radians(t.f)), 1e-6)) * METRES_PER_DEGREE
    name, factor = c.linear_units_factor
    return math.sqrt(det) * float(factor)


def to_pixels(value: float | str, pixel_m: float | None, name: str) -> float:
    """A length (`N m`, `N px` or a number of pixels) in pixels of a scene of `pixel_m` m/px.

    Raises:
        ConfigError: a length in metres for a scene that is not georeferenced.
    """
    v, unit = parse_length(value)
    if unit == "px":
        return v
    if pixel_m is None:
        raise ConfigError(
            f"{name} = {value!r} is a length on the ground, but the scene is not "
            "georeferenced (no CRS): give it in pixels, e.g. '3 px'"
        )
    return v / pixel_m


def as_metres(pixels: float, pixel_m: float | None) -> float | str:
    """`pixels` as a `Length`: `N m` when the pixel size is known, else pixels."""
    if pixel_m is None:
        return float(pixels)
    return f"{pixels * pixel_m:.4g} m"


@dataclass(frozen=True)
class CrfParams:
    """`CrfConfig` for one scene: spatial stds in pixels, colour std in uint8 picture units."""

    iterations: int
    gaussian_sxy: float
    gaussian_compat: float
    bilateral_sxy: float
    bilateral_srgb: float
    bilateral_compat: float

    @classmethod
    def of(cls, cfg: CrfConfig, pixel_m: float | None) -> CrfParams:
        return cls(
            cfg.iterations,
            to_pixels(cfg.gaussian_sxy, pixel_m, "predict.crf.gaussian_sxy"),
            cfg.gaussian_compat,
            to_pixels(cfg.bilateral_sxy, pixel_m, "predict.crf.bilateral_sxy"),
            cfg.bilateral_sstd * UINT8_PER_STD,
            cfg.bilateral_compat,
        )


@dataclass(frozen=True)
class SlicParams:
    """`SlicConfig` for one scene: superpixel side and smoothing in pixels, compactness in band stds."""

    size: float
    compactness: float
    sigma: float

    @classmethod
    def of(cls, cfg: SlicConfig, pixel_m: float | None) -> SlicParams:
        return cls(
            to_pixels(cfg.size, pixel_m, "predict.slic.size"),
            cfg.compactness,
            to_pixels(cfg.sigma, pixel_m, "predict.slic.sigma"),
        )


def standardize(image: np.ndarray, info: ModelInfo, idx: tuple[int, int, int]) -> np.ndarray:
    """(..., bands) raw image -> (..., 3) float32 z = (x - mean) / std of the three bands."""
    x = image[..., list(idx)].astype(np.float32)
    mean = np.asarray(info.mean, np.float32)[list(idx)]
    std = np.maximum(np.asarray(info.std, np.float32)[list(idx)], 1e-12)
    return np.nan_to_num((x - mean) / std)


def to_uint8(image: np.ndarray, info: ModelInfo, idx: tuple[int, int, int]) -> np.ndarray:
    """(..., bands) raw image -> (..., 3) uint8 picture u = 255 (z + 2.5) / 5 (module docstring)."""
    z = standardize(image, info, idx)
    return np.clip(np.rint((z + 2.5) * UINT8_PER_STD), 0, 255).astype(np.uint8)


def crf(probs: np.ndarray, rgb: np.ndarray, p: CrfParams) -> np.ndarray:
    """Fully connected CRF over one tile; returns the mean-field marginals Q.

    Energy E(x) = sum_i psi_u(x_i) + sum_{i<j} psi_p(x_i, x_j) with the unary
    psi_u = -log p_i(x_i) from the probabilities and the pairwise term

        psi_p = [x_i != x_j] * ( w_g exp(-|p_i - p_j|^2 / (2 sxy_g^2))
                               + w_b exp(-|p_i - p_j|^2 / (2 sxy_b^2) - |I_i - I_j|^2 / (2 srgb^2)) )

    (Potts compatibility; w_g = gaussian_compat, w_b = bilateral_compat; p pixel
    positions in pixels, I the uint8 picture).

    Args:
        probs: (H, W, C) float32 probabilities.
        rgb: (H, W, 3) uint8 (`to_uint8`).
        p: the CRF parameters in pixels and picture units (`CrfParams.of`).

    Returns:
        (H, W, C) float32 marginals, summing to 1 over C.
    """
    import pydensecrf.densecrf as dcrf
    from pydensecrf.utils import unary_from_softmax

    h, w, c = probs.shape
    d = dcrf.DenseCRF2D(w, h, c)
    q0 = np.clip(np.moveaxis(probs, -1, 0), 1e-6, 1.0).astype(np.float32)
    d.setUnaryEnergy(np.ascontiguousarray(unary_from_softmax(q0)))
    d.addPairwiseGaussian(sxy=p.gaussian_sxy, compat=p.gaussian_compat)
    d.addPairwiseBilateral(
        sxy=p.bilateral_sxy,
        srgb=p.bilateral_srgb,
        rgbim=np.ascontiguousarray(rgb),
        compat=p.bilateral_compat,
    )
    q = np.asarray(d.inference(p.iterations), np.float32).reshape(c, h, w)
    return np.ascontiguousarray(np.moveaxis(q, 0, -1))


def slic_segments(z: np.ndarray, p: SlicParams) -> np.ndarray:
    """SLIC superpixels of one tile: (H, W) int labels 0..n-1.

    n_segments = max(2, round(H W / size^2)); the colour distance is Euclidean in the
    standardised bands (no Lab conversion), so `compactness` is in band stds.
    """
    from skimage.segmentation import slic as sk_slic

    h, w = z.shape[:2]
    return sk_slic(
        z,
        n_segments=max(2, round(h * w / p.size**2)),
        compactness=p.compactness,
        sigma=p.sigma,
        start_label=0,
        channel_axis=-1,
        convert2lab=False,
    )


def slic(probs: np.ndarray, z: np.ndarray, p: SlicParams) -> np.ndarray:
    """Probabilities averaged within SLIC superpixels of one tile.

    p'(x) = (1 / |S(x)|) sum_{y in S(x)} p(y), S(x) the superpixel of x.

    Args:
        probs: (H, W, C) float32.
        z: (H, W, 3) float32 standardised bands (`standardize`).
        p: SLIC parameters in pixels and band stds (`SlicParams.of`).

    Returns:
        (H, W, C) float32.
    """
    flat = slic_segments(z, p).ravel()
    n = int(flat.max()) + 1
    count = np.bincount(flat, minlength=n).astype(np.float32)
    c = probs.shape[-1]
    q = probs.reshape(-1, c)
    out = np.empty(q.shape, np.float32)
    for k in range(c):
        out[:, k] = (np.bincount(flat, weights=q[:, k], minlength=n) / count)[flat]
    return out.reshape(probs.shape)


METHODS = ("none", "crf", "slic")


@dataclass(frozen=True)
class Refiner:
    """A refinement with its parameters resolved for one scene (or one tile's scene).

    `Refiner.make(...)(probs, image)` refines one tile: probs (H, W, C) float32, image
    (H, W, bands) raw; returns (H, W, C) float32.
    """

    method: str
    info: ModelInfo
    idx: tuple[int, int, int]
    crf: CrfParams | None = None
    slic: SlicParams | None = None

    @classmethod
    def make(
        cls,
        method: str,
        info: ModelInfo,
        rgb_bands: list[int] | None,
        crf_cfg: CrfConfig,
        slic_cfg: SlicConfig,
        pixel_m: float | None,
    ) -> Refiner:
        if method not in METHODS:
            raise ValueError(
                f"Argument `method` must be one of {', '.join(METHODS)}. Received: method={method!r}"
            )
        if method == "none":
            return cls(method, info, (0, 0, 0))
        idx = rgb_indexes(info, rgb_bands)
        if method == "crf":
            return cls(method, info, idx, crf=CrfParams.of(crf_cfg, pixel_m))
        return cls(method, info, idx, slic=SlicParams.of(slic_cfg, pixel_m))

    def __call__(self, probs: np.ndarray, image: np.ndarray) -> np.ndarray:
        if self.crf is not None:
            return crf(probs, to_uint8(image, self.info, self.idx), self.crf)
        if self.slic is not None:
            return slic(probs, standardize(image, self.info, self.idx), self.slic)
        return probs
