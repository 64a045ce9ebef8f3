"""Refinement of tile probabilities: DenseCRF (pydensecrf2) and SLIC superpixels.

Both run per prediction tile, before blending: tiles overlap and the blending
weight falls to ~0 at tile edges, where a refinement lacks context, so the
refinement is windowed with overlap and memory stays bounded by one tile.

Both need an 8-bit three-band picture of the tile. `to_uint8` makes it from
three of the model's bands: uint8 scenes as they are; other dtypes by the
model's statistics, u = 255 * (x - (mean - 2.5 std)) / (5 std), clipped to
0..255, which is the same mapping for every tile of every scene.
"""

from __future__ import annotations

import numpy as np

from reseg.artifacts import ModelInfo
from reseg.config.predict import CrfConfig, SlicConfig


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


def to_uint8(image: np.ndarray, info: ModelInfo, idx: tuple[int, int, int]) -> np.ndarray:
    """(..., bands) raw image -> (..., 3) uint8 picture (module docstring)."""
    x = image[..., list(idx)]
    if x.dtype == np.uint8:
        return np.ascontiguousarray(x)
    mean = np.asarray(info.mean, np.float32)[list(idx)]
    std = np.asarray(info.std, np.float32)[list(idx)]
    u = 255.0 * (x.astype(np.float32) - (mean - 2.5 * std)) / (5.0 * std)
    return np.clip(np.nan_to_num(u), 0, 255).astype(np.uint8)


def crf(probs: np.ndarray, rgb: np.ndarray, cfg: CrfConfig) -> np.ndarray:
    """Fully connected CRF over one tile; returns the mean-field marginals Q.

    Energy E(x) = sum_i psi_u(x_i) + sum_{i<j} psi_p(x_i, x_j) with the unary
    psi_u = -log p_i(x_i) from the probabilities and the pairwise term

        psi_p = [x_i != x_j] * ( w_g exp(-|p_i - p_j|^2 / (2 sxy_g^2))
                               + w_b exp(-|p_i - p_j|^2 / (2 sxy_b^2) - |I_i - I_j|^2 / (2 srgb^2)) )

    (Potts compatibility; w_g = gaussian_compat, w_b = bilateral_compat; p pixel
    positions, I the uint8 picture).

    Args:
        probs: (H, W, C) float32 probabilities.
        rgb: (H, W, 3) uint8.
        cfg: the CRF parameters.

    Returns:
        (H, W, C) float32 marginals, summing to 1 over C.
    """
    import pydensecrf.densecrf as dcrf
    from pydensecrf.utils import unary_from_softmax

    h, w, c = probs.shape
    d = dcrf.DenseCRF2D(w, h, c)
    p = np.clip(np.moveaxis(probs, -1, 0), 1e-6, 1.0).astype(np.float32)
    d.setUnaryEnergy(np.ascontiguousarray(unary_from_softmax(p)))
    d.addPairwiseGaussian(sxy=cfg.gaussian_sxy, compat=cfg.gaussian_compat)
    d.addPairwiseBilateral(
        sxy=cfg.bilateral_sxy,
        srgb=cfg.bilateral_srgb,
        rgbim=np.ascontiguousarray(rgb),
        compat=cfg.bilateral_compat,
    )
    q = np.asarray(d.inference(cfg.iterations), np.float32).reshape(c, h, w)
    return np.ascontiguousarray(np.moveaxis(q, 0, -1))


def slic(probs: np.ndarray, rgb: np.ndarray, cfg: SlicConfig) -> np.ndarray:
    """Probabilities averaged within SLIC superpixels of one tile.

    p'(x) = (1 / |S(x)|) sum_{y in S(x)} p(y), S(x) the superpixel of x.

    Args:
        probs: (H, W, C) float32.
        rgb: (H, W, 3) uint8.
        cfg: SLIC parameters (superpixels per tile, compactness, sigma).

    Returns:
        (H, W, C) float32.
    """
    from skimage.segmentation import slic as sk_slic

    seg = sk_slic(
        rgb,
        n_segments=cfg.n_segments,
        compactness=cfg.compactness,
        sigma=cfg.sigma,
        start_label=0,
        channel_axis=-1,
    )
    flat = seg.ravel()
    n = int(flat.max()) + 1
    count = np.bincount(flat, minlength=n).astype(np.float32)
    c = probs.shape[-1]
    p = probs.reshape(-1, c)
    out = np.empty_like(p)
    for k in range(c):
        out[:, k] = (np.bincount(flat, weights=p[:, k], minlength=n) / count)[flat]
    return out.reshape(probs.shape)


def refine_tile(
    method: str,
    probs: np.ndarray,
    image: np.ndarray,
    info: ModelInfo,
    idx: tuple[int, int, int],
    crf_cfg: CrfConfig,
    slic_cfg: SlicConfig,
) -> np.ndarray:
    """Apply refinement `method` ('none', 'crf' or 'slic') to one tile (H, W, C)."""
    if method == "none":
        return probs
    rgb = to_uint8(image, info, idx)
    if method == "crf":
        return crf(probs, rgb, crf_cfg)
    if method == "slic":
        return slic(probs, rgb, slic_cfg)
    raise ValueError(
        f"Argument `method` must be one of none, crf, slic. Received: method={method!r}"
    )
