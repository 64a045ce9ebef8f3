"""Whole-scene prediction: outputs, georeference, colours, blending, bad input, metrics."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rio_cogeo.cogeo import cog_validate

from reseg.components.predictor import predict_scene
from reseg.components.predictor.outputs import colormap
from reseg.config import PredictConfig
from reseg.errors import InputError
from reseg.metrics import confusion
from reseg.serving import load_backend
from tests.components.predictor.helpers import smooth_image
from tests.rasters import TRANSFORM, write_raster

CFG = PredictConfig(tile_size=64, overlap=16, batch_size=3, progress=False)


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> tuple[Path, Path, np.ndarray]:
    """150 x 170 x 4 uint16, nodata 0 in a corner; labels 10/20/30 (0 = unlabelled)."""
    tmp = tmp_path_factory.mktemp("scene")
    img = smooth_image(4, 150, 170, seed=5)
    img[:, :20, :25] = 0
    lab = np.kron(np.random.default_rng(1).choice([10, 20, 30], (16, 18)), np.ones((10, 10)))[
        :150, :170
    ]
    lab[140:] = 0
    return (
        write_raster(tmp / "field.tif", img, nodata=0),
        write_raster(tmp / "field_labels.tif", lab.astype("uint8")),
        img,
    )


@pytest.fixture(scope="module")
def predicted(_cnn_backend, scene, tmp_path_factory):
    cnn = _cnn_backend  # module-scoped: the shared backend as it is
    image, labels, _ = scene
    out = tmp_path_factory.mktemp("out")
    cfg = CFG.model_copy(update={"probabilities": True})
    return predict_scene(cnn, image, out, cfg, labels=labels), out


def test_outputs_are_valid_cogs_on_the_input_grid_with_colours_and_names(predicted, scene, cnn):
    result, out = predicted
    names = {p.name for p in out.iterdir()}
    assert names == {
        "field.tif",
        "field.confidence.tif",
        "field.probs.tif",
        "field.qml",
        "field.preview.png",
        "field.metrics.json",
    }, "outputs side by side, nothing temporary left"
    for key in ("classes", "confidence", "probabilities"):
        valid, errors, _ = cog_validate(result.outputs[key], quiet=True)
        assert valid, (key, errors)
    with rasterio.open(scene[0]) as src, rasterio.open(result.outputs["classes"]) as ds:
        assert ds.crs == src.crs and ds.transform == src.transform == TRANSFORM
        assert (ds.height, ds.width, ds.dtypes[0], ds.nodata) == (150, 170, "uint8", 255)
        assert (
            ds.block_shapes[0] == (512, 512)
            or ds.block_shapes[0] == (ds.height, ds.width)
            or ds.is_tiled
        )
        assert ds.overviews(1) == [] or ds.tags()["OVERVIEW_RESAMPLING"] == "MODE"
        cmap = ds.colormap(1)
        for k, rgba in colormap(cnn.info).items():
            assert cmap[k] == rgba
        assert cmap[0] == (0xE3, 0x1A, 0x1C, 255) and cmap[255][3] == 0
        assert ds.tags(1) == {f"CLASS_{i}": f"class{i}" for i in range(3)}
        assert json.loads(ds.tags()["CLASS_NAMES"]) == ["class0", "class1", "class2"]
        assert ds.descriptions == ("class",)
    qml = (out / "field.qml").read_text()
    assert 'label="class2"' in qml and 'color="#1f78b4"' in qml


def test_large_class_map_has_mode_overviews(px_dir, tmp_path):
    img = smooth_image(4, 1100, 1300, seed=2)
    img[:, :300, :300] = 0
    image = write_raster(tmp_path / "big.tif", img, nodata=0)
    cfg = CFG.model_copy(update={"tile_size": 512, "batch_size": 2, "preview_size": 200})
    result = predict_scene(load_backend(px_dir), image, tmp_path / "out", cfg)
    assert cog_validate(result.outputs["classes"], quiet=True)[0]
    with rasterio.open(result.outputs["classes"]) as ds:
        assert ds.block_shapes[0] == (512, 512) and ds.overviews(1) == [2, 4]
        assert ds.tags()["OVERVIEW_RESAMPLING"] == "MODE"
        small = ds.read(1, out_shape=(550, 650))
    assert set(np.unique(small)) <= {0, 1, 2, 255} and (small[:150, :150] == 255).all()
    from PIL import Image

    assert Image.open(result.outputs["preview"]).size == (200, 169)


def test_nodata_and_confidence_encoding(predicted):
    result, out = predicted
    with rasterio.open(result.outputs["classes"]) as ds:
        cls = ds.read(1)
    with rasterio.open(result.outputs["confidence"]) as ds:
        conf = ds.read(1)
        assert ds.nodata == 0 and ds.scales == (pytest.approx(1 / 255),)
        assert "value / 255" in ds.tags()["CONFIDENCE_ENCODING"]
    with rasterio.open(result.outputs["probabilities"]) as ds:
        probs = np.moveaxis(ds.read(), 0, -1)
        assert (
            ds.count == 3 and ds.descriptions == ("class0", "class1", "class2") and ds.nodata == -1
        )
    nod = np.zeros(cls.shape, bool)
    nod[:20, :25] = True
    assert (cls[nod] == 255).all() and (conf[nod] == 0).all() and (probs[nod] == -1).all()
    assert (cls[~nod] < 3).all() and (conf[~nod] >= 85).all()
    np.testing.assert_allclose(probs[~nod].sum(-1), 1, atol=1e-5)
    np.testing.assert_array_equal(conf[~nod], np.rint(255 * probs[~nod].max(-1)).astype(np.uint8))
    top2 = np.sort(probs[~nod], -1)
    clear = top2[:, -1] - top2[:, -2] > 1e-5
    np.testing.assert_array_equal(cls[~nod][clear], probs[~nod].argmax(-1)[clear])


def _whole_image(backend, img: np.ndarray, pad: int, stride: int) -> np.ndarray:
    """Prediction of the whole reflect-padded image in one call (no tiles), cropped back."""
    h, w = img.shape[1:]
    x = np.moveaxis(img, 0, -1)
    valid = (x != 0).all(-1).astype(np.uint8)
    ph, pw = -(h + 2 * pad) % stride, -(w + 2 * pad) % stride
    xp = np.pad(x, ((pad, pad + ph), (pad, pad + pw), (0, 0)), mode="reflect")
    vp = np.pad(valid, ((pad, pad + ph), (pad, pad + pw)), mode="reflect")
    return backend(xp[None], vp[None])[0, pad : pad + h, pad : pad + w]


def test_sliding_window_of_a_per_pixel_model_equals_whole_image_prediction(px_dir, scene, tmp_path):
    px = load_backend(px_dir)
    cfg = CFG.model_copy(update={"probabilities": True, "preview": False})
    result = predict_scene(px, scene[0], tmp_path, cfg)
    with rasterio.open(result.outputs["probabilities"]) as ds:
        probs = np.moveaxis(ds.read(), 0, -1)
    whole = _whole_image(px, scene[2], 8, 1)
    ok = (scene[2] != 0).all(0)
    np.testing.assert_allclose(probs[ok], whole[ok], atol=2e-6)


def test_blended_tiles_agree_with_whole_image_prediction(predicted, cnn, scene):
    result, _ = predicted
    with rasterio.open(result.outputs["probabilities"]) as ds:
        probs = np.moveaxis(ds.read(), 0, -1)
    whole = _whole_image(cnn, scene[2], 8, 2)
    ok = probs[..., 0] >= 0
    # tile edges differ (zero padding inside the model); blending discounts them
    assert np.abs(probs - whole)[ok].max() < 0.06
    assert (probs.argmax(-1) == whole.argmax(-1))[ok].mean() >= 0.99


def test_whole_scene_metrics_equal_the_confusion_of_the_full_rasters(predicted, scene):
    result, out = predicted
    with rasterio.open(result.outputs["classes"]) as ds:
        cls = ds.read(1)
    with rasterio.open(scene[1]) as ds:
        raw = ds.read(1)
    truth = np.select([raw == 10, raw == 20, raw == 30], [0, 1, 2], 255).astype(np.uint8)
    cm = confusion(truth, cls, 3, mask=cls != 255)
    saved = json.loads((out / "field.metrics.json").read_text())
    assert saved["confusion"] == cm.tolist() == result.metrics["confusion"]
    assert saved["pixels"] == int(((truth != 255) & (cls != 255)).sum()) > 20000
    assert saved["overall_accuracy"] == pytest.approx(np.trace(cm) / cm.sum())


def test_bad_band_count_or_dtype_is_a_clear_error_and_writes_nothing(cnn, tmp_path):
    three = write_raster(tmp_path / "three.tif", smooth_image(3, 40, 40))
    with pytest.raises(InputError, match="image has 3 bands but the model was trained on 4 bands"):
        predict_scene(cnn, three, tmp_path / "out", CFG)
    bytes8 = write_raster(tmp_path / "bytes.tif", smooth_image(4, 40, 40, dtype="uint8"))
    with pytest.raises(
        InputError, match="image dtype is uint8 but the model was trained on uint16"
    ):
        predict_scene(cnn, bytes8, tmp_path / "out", CFG)
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


class _FailingBackend:
    """A real backend that breaks on its third batch (a crash half-way through a scene)."""

    def __init__(self, inner):
        self.inner, self.info, self.calls = inner, inner.info, 0

    def __call__(self, tiles, valid):
        self.calls += 1
        if self.calls == 3:
            raise RuntimeError("device lost")
        return self.inner(tiles, valid)


def test_a_failure_half_way_leaves_no_partial_output(cnn, scene, tmp_path):
    failing = _FailingBackend(cnn)
    with pytest.raises(RuntimeError, match="device lost"):
        predict_scene(failing, scene[0], tmp_path, CFG.model_copy(update={"batch_size": 1}))
    assert failing.calls == 3
    assert list(tmp_path.iterdir()) == []


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_non_georeferenced_png_with_labels(shared_data, tmp_path, caplog):
    from tests.components.predictor.helpers import save_model, small_cnn

    model = save_model(
        tmp_path / "m",
        small_cnn(3, 6, seed=4),
        bands=3,
        classes=6,
        dtype="uint8",
        mean=100.0,
        std=50.0,
        output_stride=2,
        label_values={"0": 255, **{str(v): v - 1 for v in range(1, 7)}},
    )
    image = shared_data / "potsdam" / "img_dir" / "2_10_0_0_512_512.png"
    labels = shared_data / "potsdam" / "ann_dir" / "2_10_0_0_512_512.png"
    with caplog.at_level(logging.WARNING):
        result = predict_scene(
            model, image, tmp_path / "out", CFG.model_copy(update={"tile_size": 128}), labels=labels
        )
    assert "not georeferenced" in caplog.text
    with rasterio.open(result.outputs["classes"]) as ds:
        assert ds.crs is None and ds.transform.is_identity and ds.shape == (512, 512)
        cls = ds.read(1)
        assert ds.colormap(1)[1] == (0x33, 0xA0, 0x2C, 255)
    assert cog_validate(result.outputs["classes"], quiet=True)[0]
    with rasterio.open(labels) as ds:
        raw = ds.read(1)
    truth = np.where(raw == 0, 255, raw.astype(np.int64) - 1).astype(np.uint8)
    assert result.metrics["confusion"] == confusion(truth, cls, 6).tolist()


def test_preview_is_sampled_block_by_block():
    from reseg.components.predictor.preview import PreviewCanvas
    from reseg.windows import Window

    rng = np.random.default_rng(0)
    img = rng.integers(0, 4000, (100, 130, 4)).astype(np.uint16)
    cls = rng.integers(0, 3, (100, 130)).astype(np.uint8)
    cls[:10] = 255
    canvas = PreviewCanvas(100, 130, 40, (2, 1, 0))
    assert canvas.shape == (31, 40)
    for r0, r1 in ((0, 37), (37, 100)):
        for c0, c1 in ((0, 50), (50, 51), (51, 130)):
            canvas.add(Window(r0, c0, r1 - r0, c1 - c0), img[r0:r1, c0:c1], cls[r0:r1, c0:c1])
    rows = ((np.arange(31) + 0.5) * 100 / 31).astype(int)
    cols = ((np.arange(40) + 0.5) * 130 / 40).astype(int)
    np.testing.assert_array_equal(canvas.image, img[rows][:, cols][..., [2, 1, 0]])
    np.testing.assert_array_equal(canvas.classes, cls[rows][:, cols])
    out = canvas.render(("#ff0000", "#00ff00", "#0000ff"))
    assert out.shape == (31, 40, 3) and out.dtype == np.uint8
    # no overlay where there is no class: the stretched picture only
    assert out[0].std() > 0 and (out[-1][canvas.classes[-1] == 0][:, 0] >= int(0.45 * 255)).all()


def test_batches_are_counted_in_pixels_of_the_full_tile_size():
    import dataclasses

    from reseg.components.predictor.scene import batch_tiles
    from reseg.components.predictor.sliding import SlidingPlan

    def plan(size, shrink=True):
        return dataclasses.replace(SlidingPlan.make(size, size, 1024, 32, 1, shrink), nominal=1024)

    small, big = plan(2000), plan(32000)
    assert small.tile_shape == (699, 699) and big.tile_shape == (1002, 1002)
    one, two = PredictConfig(batch_size=1), PredictConfig(batch_size=2)
    # 1024^2 / 699^2 = 2.15 tiles of the small scene hold the pixels of one full tile
    assert (batch_tiles(small, one), batch_tiles(small, two)) == (2, 4)
    assert (batch_tiles(big, one), batch_tiles(big, two)) == (1, 2)
    assert batch_tiles(plan(2000, shrink=False), two) == 2
    for p, cfg in ((small, one), (small, two), (big, one), (big, two)):
        px = batch_tiles(p, cfg) * p.rows.tile * p.cols.tile
        assert px <= cfg.batch_size * 1024**2 < px + p.rows.tile * p.cols.tile
