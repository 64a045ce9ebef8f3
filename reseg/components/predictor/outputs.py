"""The files a scene prediction writes, side by side in the output folder.

- `<scene>.tif`: class ids, uint8, nodata 255 where the input is nodata; a
  Cloud-Optimized GeoTIFF (512-pixel internal tiles, overviews by `mode` or
  `nearest`, deflate) with the class colour table (entry 255 transparent).
  Class names are stored as band tags: `CLASS_<id>=<name>` on band 1, and the
  dataset tag `CLASS_NAMES` holds them as a JSON list. A QGIS style
  `<scene>.qml` (paletted renderer with the class names) is written beside it,
  which QGIS loads automatically.
- `<scene>.confidence.tif`: the maximum class probability. uint8 (default):
  v = round(255 * p), 0 = nodata, GDAL scale 1/255 (so readers that apply the
  scale get p); float32: p itself, nodata -1. COG, overviews `average`.
- `<scene>.probs.tif` (optional): one float32 band per class (band k = class
  k - 1, described by its name), nodata -1. COG.
- `<scene>.preview.png`: the image (three bands, 2-98 % stretch) with the
  class colours laid over at 45 % opacity, longest side `preview_size`.

On object storage (`out_dir` an s3:// or gs:// URI) the same files are made in a local
folder of the cache (`storage.local_stage`, one scene at a time) and uploaded when the
scene is complete, the class map `<scene>.tif` last (`SceneOutputs._upload`).

Everything is first written in a hidden staging folder `.<scene>.tmp-<fingerprint>`
(a plain tiled GeoTIFF window by window, then `cog_translate`; the fingerprint is
that of the image, the model and the predict section), and moved to its final
name only when all of it is complete. A scene is always predicted whole, so a
staging folder a killed run left behind holds nothing to reuse: the next
prediction of that scene into the same folder removes every `.<scene>.tmp-*`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path
from xml.sax.saxutils import quoteattr

import numpy as np
import rasterio
from rasterio.errors import NotGeoreferencedWarning
from rasterio.windows import Window as RioWindow

from reseg import storage
from reseg.artifacts import ModelInfo, fingerprint, write_json
from reseg.components.predictor.preview import PreviewCanvas, hex_rgb
from reseg.components.predictor.reader import SceneImage
from reseg.components.predictor.refine import rgb_indexes
from reseg.config.predict import PredictConfig
from reseg.errors import DiskFullError
from reseg.windows import Window

log = logging.getLogger(__name__)

CLASS_NODATA = 255
PROB_NODATA = -1.0


def colormap(info: ModelInfo) -> dict[int, tuple[int, int, int, int]]:
    """GDAL colour table of the class map: class id -> RGBA; 255 (nodata) transparent."""
    cmap = {i: (*hex_rgb(c), 255) for i, c in enumerate(info.class_colors)}
    cmap[CLASS_NODATA] = (0, 0, 0, 0)
    return cmap


def qml(info: ModelInfo) -> str:
    """A QGIS layer style: paletted renderer with class colours and names."""
    entries = "\n".join(
        f'        <paletteEntry value="{i}" color="{c}" alpha="255" label={quoteattr(n)}/>'
        for i, (n, c) in enumerate(zip(info.class_names, info.class_colors, strict=False))
    )
    return (
        "<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n"
        '<qgis version="3.28" styleCategories="Symbology">\n'
        "  <pipe>\n"
        '    <rasterrenderer type="paletted" band="1" opacity="1" nodataColor="">\n'
        "      <colorPalette>\n"
        f"{entries}\n"
        "      </colorPalette>\n"
        "    </rasterrenderer>\n"
        "  </pipe>\n"
        "</qgis>\n"
    )


def encode(probs: np.ndarray, valid: np.ndarray, cfg: PredictConfig) -> dict[str, np.ndarray]:
    """The pixel values of the outputs of blended probabilities (h, w, C) float32.

    Returns `classes` (h, w) uint8, `confidence` (h, w) in `cfg.confidence`'s encoding and,
    with `cfg.probabilities`, `probabilities` (h, w, C) float32 (module docstring).
    """
    ok = valid.astype(bool)
    out = {"classes": np.where(ok, probs.argmax(axis=-1), CLASS_NODATA).astype(np.uint8)}
    conf = probs.max(axis=-1)
    if cfg.confidence == "uint8":
        out["confidence"] = np.where(ok, np.clip(np.rint(conf * 255), 1, 255), 0).astype(np.uint8)
    else:
        out["confidence"] = np.where(ok, conf, PROB_NODATA).astype(np.float32)
    if cfg.probabilities:
        out["probabilities"] = np.where(ok[..., None], probs, PROB_NODATA).astype(np.float32)
    return out


def output_spec(cfg: PredictConfig, num_classes: int) -> dict[str, tuple[str, int, float]]:
    """Output key -> (dtype, bands, nodata) of the rasters `cfg` asks for."""
    conf_f32 = cfg.confidence == "float32"
    spec = {
        "classes": ("uint8", 1, CLASS_NODATA),
        "confidence": ("float32" if conf_f32 else "uint8", 1, PROB_NODATA if conf_f32 else 0),
    }
    if cfg.probabilities:
        spec["probabilities"] = ("float32", num_classes, PROB_NODATA)
    return spec


class SceneOutputs:
    """Writes one scene's outputs block by block, then publishes them together."""

    def __init__(self, scene: SceneImage, out_dir: str | Path, info: ModelInfo, cfg: PredictConfig):
        self.scene, self.info, self.cfg = scene, info, cfg
        fp = fingerprint(scene.path, info.architecture, info.class_names, cfg.model_dump())
        self.final_dir = storage.path(out_dir)
        if storage.is_remote(self.final_dir):  # written here, uploaded by `finish`
            self.out_dir = storage.local_stage(self.final_dir / scene.id, fp)
        else:
            self.out_dir = self.final_dir
            self.out_dir.mkdir(parents=True, exist_ok=True)
        self.names = {
            "classes": f"{scene.id}.tif",
            "confidence": f"{scene.id}.confidence.tif",
        }
        if cfg.probabilities:
            self.names["probabilities"] = f"{scene.id}.probs.tif"
        self._spec = output_spec(cfg, len(info.class_names))
        for stale in self.out_dir.glob(f".{scene.id}.tmp-*"):
            log.info("%s: removing %s, left by a run that did not finish", scene.id, stale)
            shutil.rmtree(stale, ignore_errors=True)
        self._check_space()
        self.tmp = self.out_dir / f".{scene.id}.tmp-{fp[:12]}"
        self.tmp.mkdir()
        self._raw: dict[str, rasterio.io.DatasetWriter] = {}
        for key in self.names:
            dtype, count, nodata = self._spec[key]
            self._raw[key] = self._open_raw(self.tmp / f"raw.{key}.tif", dtype, count, nodata)
        self._describe(list(info.class_names))
        self.preview = None
        if cfg.preview:
            idx = rgb_indexes(info, cfg.rgb_bands)
            self.preview = PreviewCanvas(scene.height, scene.width, cfg.preview_size, idx)

    def _check_space(self) -> None:
        """Fail before writing when the raw files alone cannot fit on the output's disk.

        The raw files are uncompressed tiled GeoTIFFs of exactly
        sum(bytes per pixel) x (H and W rounded up to whole 256-pixel blocks) bytes; GDAL
        reports a write error there only on stderr, long after the write, so it is checked
        here. The COGs are written after them (compressed, smaller).
        """
        blocks = math.ceil(self.scene.height / 256) * math.ceil(self.scene.width / 256)
        per_pixel = sum(np.dtype(self._spec[k][0]).itemsize * self._spec[k][1] for k in self.names)
        need = per_pixel * blocks * 256 * 256
        free = shutil.disk_usage(self.out_dir).free
        if free < need:
            raise DiskFullError(
                f"{self.out_dir}: no space left on the device for scene {self.scene.id}: its raw "
                f"outputs need {need / 2**20:.1f} MB, {free / 2**20:.1f} MB free"
            )

    def _open_raw(self, path: Path, dtype: str, count: int, nodata: float):
        s = self.scene
        profile = dict(
            driver="GTiff",
            width=s.width,
            height=s.height,
            count=count,
            dtype=dtype,
            nodata=nodata,
            tiled=True,
            blockxsize=256,
            blockysize=256,
            BIGTIFF="IF_SAFER",
        )
        if s.georeferenced:
            profile.update(crs=s.crs, transform=s.transform)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            return rasterio.open(path, "w", **profile)

    def write(self, window: Window, probs: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """Write a finished block; returns its class ids (h, w) uint8. (The preview's image
        samples come from the reader: `self.preview.add_image`.)

        Args:
            window: the block in scene pixels.
            probs: (h, w, C) float32 blended probabilities.
            valid: (h, w) uint8, 0 where the input is nodata.
        """
        encoded = encode(probs, valid, self.cfg)
        self.write_encoded(window, encoded)
        if self.preview is not None:
            self.preview.add_classes(window, encoded["classes"])
        return encoded["classes"]

    def write_encoded(self, window: Window, encoded: dict[str, np.ndarray]) -> None:
        """Write the arrays of `encode` (band-last) at `window` of the scene."""
        rio_win = RioWindow(window.col_off, window.row_off, window.width, window.height)
        for key, ds in self._raw.items():
            a = encoded[key]
            ds.write(a[None] if a.ndim == 2 else np.moveaxis(a, -1, 0), window=rio_win)

    def finish(self, metrics: dict | None = None) -> dict[str, Path]:
        """Close the raw files, make the COGs, preview and sidecars; move all into place."""
        from rio_cogeo.cogeo import cog_translate
        from rio_cogeo.profiles import cog_profiles

        info = self.info
        for ds in self._raw.values():
            ds.close()
        profile = cog_profiles.get(self.cfg.compress)
        profile.update(blockxsize=512, blockysize=512)
        names = list(info.class_names)
        common = {"RESEG_MODEL": info.architecture, "CLASS_NAMES": json.dumps(names)}
        done: dict[str, Path] = {}
        for key, name in self.names.items():
            resampling = self.cfg.class_overviews if key == "classes" else "average"
            extra = dict(common)
            if key == "confidence":
                extra["CONFIDENCE_ENCODING"] = (
                    "p = value / 255 (maximum class probability); 0 = nodata"
                    if self.cfg.confidence == "uint8"
                    else "p = value (maximum class probability); -1 = nodata"
                )
            raw = self.tmp / f"raw.{key}.tif"
            with warnings.catch_warnings(), self._disk_full_as_error(raw):
                warnings.simplefilter("ignore")
                cog_translate(
                    str(raw),
                    str(self.tmp / name),
                    dict(profile),
                    overview_resampling=resampling,
                    forward_band_tags=True,
                    quiet=True,
                    colormap=colormap(info) if key == "classes" else None,
                    additional_cog_metadata=extra,
                    in_memory=False,
                    config=self.cfg.gdal_env,
                )
            raw.unlink()
            done[key] = self.tmp / name
        (self.tmp / f"{self.scene.id}.qml").write_text(qml(info))
        done["style"] = self.tmp / f"{self.scene.id}.qml"
        if self.preview is not None:
            done["preview"] = self.preview.save(
                self.tmp / f"{self.scene.id}.preview.png", info.class_colors
            )
        if metrics is not None:
            write_json(self.tmp / f"{self.scene.id}.metrics.json", metrics)
            done["metrics"] = self.tmp / f"{self.scene.id}.metrics.json"
        final = {}
        for key, path in done.items():
            target = self.out_dir / path.name
            os.replace(path, target)
            final[key] = target
        shutil.rmtree(self.tmp, ignore_errors=True)
        if storage.is_remote(self.final_dir):
            return self._upload(final)
        return final

    def _upload(self, files: dict[str, Path]) -> dict[str, Path]:
        """Upload the finished outputs to the object-store folder, the class map last.

        The class map `<scene>.tif` is the file a reader trusts: an older one is deleted
        first, and the new one is put only after every other output, so a crash leaves
        no class map beside a partial set. The local folder is removed after.
        """
        order = [k for k in files if k != "classes"] + ["classes"]
        storage.rmtree(self.final_dir / files["classes"].name)
        out = {}
        for key in order:
            out[key] = self.final_dir / files[key].name
            storage.upload(files[key], out[key])
        shutil.rmtree(self.out_dir, ignore_errors=True)
        return {k: out[k] for k in files}

    @contextlib.contextmanager
    def _disk_full_as_error(self, raw: Path) -> Iterator[None]:
        """A failed COG write with less space left than the raw file it copies is a full disk.

        GDAL prints libtiff's "No space left on device" on stderr and raises only
        "Write failed"; the COG of `raw` (compressed, with overviews) needs at most about
        4/3 of its size, so less free space than that explains the failure.
        """
        try:
            yield
        except Exception:  # RasterioIOError or GDAL's CPLE_* errors: a failed write either way
            need = raw.stat().st_size * 4 // 3
            free = shutil.disk_usage(self.tmp).free
            if free >= need:
                raise
            raise DiskFullError(
                f"{self.out_dir}: no space left on the device for scene {self.scene.id}: its "
                f"Cloud-Optimized GeoTIFF needs up to {need / 2**20:.1f} MB, "
                f"{free / 2**20:.1f} MB free"
            ) from None

    def _describe(self, names: list[str]) -> None:
        """Band descriptions, class-name tags and the confidence scale (forwarded into the COGs)."""
        cls = self._raw["classes"]
        cls.set_band_description(1, "class")
        cls.update_tags(1, **{f"CLASS_{i}": n for i, n in enumerate(names)})
        conf = self._raw["confidence"]
        conf.set_band_description(1, "confidence")
        if self.cfg.confidence == "uint8":
            conf.scales = (1 / 255,)
        if "probabilities" in self._raw:
            for i, n in enumerate(names):
                self._raw["probabilities"].set_band_description(i + 1, n)

    def abort(self) -> None:
        """Drop everything written so far (after an error)."""
        for ds in self._raw.values():
            try:
                ds.close()
            except Exception:  # already closed or broken; it is being thrown away
                pass
        shutil.rmtree(self.tmp, ignore_errors=True)
        if storage.is_remote(self.final_dir):
            shutil.rmtree(self.out_dir, ignore_errors=True)
