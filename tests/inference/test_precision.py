"""Inference in bfloat16 / float16: the model copy, `auto`, and agreement with float32."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import rasterio

from reseg.cli import main
from reseg.components.predictor import predict_scene
from reseg.config import PredictConfig
from reseg.errors import ConfigError
from reseg.inference import KerasBackend, load_backend, precision
from reseg.models.precision import model_policy, with_precision
from tests.components.predictor.helpers import learnable_labels, small_cnn, smooth_image
from tests.rasters import write_raster


def test_with_precision_runs_the_layers_in_bfloat16_and_returns_float32():
    model = small_cnn(4, 3, seed=1)
    assert with_precision(model, "float32") is model
    bf = with_precision(model, "bfloat16")
    assert model_policy(bf) == "mixed_bfloat16" and model_policy(model) == "float32"
    assert bf.get_layer("softmax").dtype_policy.name == "float32"
    for a, b in zip(model.get_weights(), bf.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    x = np.random.default_rng(0).normal(size=(1, 16, 16, 4)).astype("float32")
    y, y16 = model(x), bf(x)
    assert np.asarray(y16).dtype == np.float32
    assert 0 < np.abs(np.asarray(y) - np.asarray(y16)).max() < 0.05
    back = with_precision(bf, "float32")
    assert model_policy(back) == "float32"
    np.testing.assert_array_equal(np.asarray(back(x)), np.asarray(y))
    with pytest.raises(ValueError, match="precision"):
        with_precision(model, "int8")


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor : 0\nflags : fpu sse avx512f avx512_bf16 amx_tile amx_bf16\n")
    assert precision.cpu_flags(str(info)) == ("amx_bf16", "amx_tile", "avx512_bf16", "avx512f")
    old = tmp_path / "cpuinfo_avx2"
    old.write_text("processor : 0\nflags : fpu sse avx2\n")
    assert precision.cpu_flags(str(old)) == ()
    assert precision.cpu_flags(str(tmp_path / "missing")) == ()


def test_auto_picks_bfloat16_exactly_where_the_hardware_has_it(caplog):
    precision._auto.cache_clear()
    with caplog.at_level(logging.INFO, logger="reseg.inference.precision"):
        chosen = precision.resolve("auto")
    native, where = precision.native_bfloat16()
    assert chosen == ("bfloat16" if native else "float32")
    assert f"precision auto: {chosen} ({where})" in caplog.text
    if not precision.gpus():
        has = {"amx_bf16", "avx512_bf16"} & set(precision.cpu_flags())
        assert native == bool(has)
    assert precision.resolve("float16") == "float16"
    with pytest.raises(ValueError, match="precision"):
        precision.resolve("half")


def test_bfloat16_keeps_xla_off_on_a_cpu(trained_dir):
    backend = KerasBackend(trained_dir, jit_compile=True, precision="bfloat16")
    assert backend.precision == "bfloat16" and backend.jit_compile
    assert backend._compiled == precision.xla_ok("bfloat16")
    fn = backend._fn
    backend.precision = "float32"
    assert backend._compiled  # XLA as asked
    backend.precision = "bfloat16"
    assert backend._fn is fn  # switching back reuses the traced function


def _scene(tmp_path, size=320, seed=7):
    img = smooth_image(4, size, size, seed=seed)
    image = write_raster(tmp_path / "scene.tif", img)
    labels = write_raster(tmp_path / "labels.tif", learnable_labels(img))
    return image, labels


def _classes(path):
    with rasterio.open(path) as ds:
        return ds.read(1)


def test_class_maps_and_miou_of_bfloat16_and_float16_agree_with_float32(trained_dir, tmp_path):
    image, labels = _scene(tmp_path)
    backend = load_backend(trained_dir)
    results = {}
    for p in ("float32", "bfloat16", "float16"):
        cfg = PredictConfig(precision=p, tile_size=128, progress=False, preview=False)
        results[p] = predict_scene(backend, image, tmp_path / p, cfg, labels)
        assert backend.precision == p
    ref = _classes(results["float32"].outputs["classes"])
    miou = results["float32"].metrics["mean_iou"]
    assert miou > 0.5  # a trained model: agreement is not decided by ties
    for p in ("bfloat16", "float16"):
        agree = (_classes(results[p].outputs["classes"]) == ref).mean()
        assert agree >= 0.995, (p, agree)
        assert abs(results[p].metrics["mean_iou"] - miou) <= 0.005, p
    with rasterio.open(results["bfloat16"].outputs["confidence"]) as ds:
        assert ds.dtypes[0] == "uint8"  # outputs as in float32


def test_predict_cli_takes_precision_and_config_rejects_unknown(trained_dir, tmp_path, capsys):
    image, labels = _scene(tmp_path, size=160, seed=9)
    base = ["predict", "--model", str(trained_dir), str(image), "--labels", str(labels)]
    base += ["--no-progress", "--no-preview"]
    for p in ("float32", "auto"):
        assert main([*base, "--out", str(tmp_path / p), "--precision", p]) == 0
    agree = (
        _classes(tmp_path / "auto" / "scene.tif") == _classes(tmp_path / "float32" / "scene.tif")
    ).mean()
    assert agree >= 0.995
    m = json.loads((tmp_path / "auto" / "scene.metrics.json").read_text())
    assert m["mean_iou"] > 0.5
    from reseg.config import parse_config

    raw = {"data": {"scenes": [{"image": "x.tif"}], "classes": [{"name": "a"}, {"name": "b"}]}}
    with pytest.raises(ConfigError, match="precision"):
        parse_config({**raw, "predict": {"precision": "int8"}})
