"""`auto` precision by default, and its agreement guard (`reseg.inference.guard`).

The expectations follow what `reseg.inference.precision` finds on this machine: bfloat16
where the processor (AMX / AVX-512 BF16) or GPU runs it natively, float32 elsewhere, so
the tests hold on both kinds of machine.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
import rasterio

from reseg.components.predictor import predict_scene
from reseg.config import PredictConfig, parse_config
from reseg.inference import guard, load_backend, precision
from tests.components.predictor.helpers import learnable_labels, smooth_image
from tests.rasters import write_raster


@pytest.fixture(autouse=True)
def _fresh_verdicts():
    """Each test is a fresh process as far as `auto` and the guard are concerned."""
    precision._auto.cache_clear()
    guard._verdicts.clear()
    guard._warned.clear()
    yield
    guard._verdicts.clear()
    guard._warned.clear()


def _scene(tmp_path, name="scene", size=192, seed=7):
    img = smooth_image(4, size, size, seed=seed)
    return write_raster(tmp_path / f"{name}.tif", img), learnable_labels(img)


def _classes(path):
    with rasterio.open(path) as ds:
        return ds.read(1)


def test_a_config_without_precision_keys_predicts_in_auto_and_says_so_once(
    trained_dir, tmp_path, caplog
):
    raw = {"data": {"scenes": [{"image": "x.tif"}], "classes": [{"name": "a"}, {"name": "b"}]}}
    cfg = parse_config(raw)
    assert (cfg.predict.precision, cfg.rounds.score_precision, cfg.export.precision) == (
        "auto",
        "auto",
        "auto",
    )
    choice, why = precision.auto_choice()
    pcfg = cfg.predict.model_copy(update={"tile_size": 128, "progress": False, "preview": False})
    image, _ = _scene(tmp_path)
    backend = load_backend(trained_dir)
    with caplog.at_level(logging.INFO, logger="reseg"):
        first = predict_scene(backend, image, tmp_path / "a", pcfg)
        second = predict_scene(backend, image, tmp_path / "b", pcfg)
    said = [r.getMessage() for r in caplog.records if "precision auto" in r.getMessage()]
    assert said == [f"precision auto: {choice} ({why})"]  # one line, with the reason
    assert first.stats["precision"] == second.stats["precision"] == choice
    assert backend.precision == choice
    checks = [r for r in caplog.records if r.name == "reseg.inference.guard"]
    if choice == "bfloat16":  # the guard ran once, on the first prediction, and passed
        assert len(checks) == 1 and "agrees with float32" in checks[0].getMessage()
    else:
        assert checks == []
    explicit = PredictConfig(precision="float32", tile_size=128, progress=False, preview=False)
    ref = predict_scene(backend, image, tmp_path / "f32", explicit)
    agree = (_classes(first.outputs["classes"]) == _classes(ref.outputs["classes"])).mean()
    assert agree >= 0.995


def test_guard_falls_back_to_float32_with_one_warning(cnn_dir, tmp_path, caplog):
    """An untrained network in bfloat16 flips the class of near-ties; with min_agreement 1
    that is below the bar wherever auto picks bfloat16."""
    choice, _ = precision.auto_choice()
    cfg = PredictConfig(min_agreement=1.0, tile_size=64, progress=False, preview=False)
    backend = load_backend(cnn_dir)
    a, _ = _scene(tmp_path, "a", seed=3)
    b, _ = _scene(tmp_path, "b", seed=4)
    with caplog.at_level(logging.INFO, logger="reseg"):
        got = [predict_scene(backend, img, tmp_path / "out", cfg) for img in (a, b)]
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    ref_cfg = cfg.model_copy(update={"precision": "float32"})
    ref = predict_scene(backend, a, tmp_path / "ref", ref_cfg)
    assert np.array_equal(_classes(got[0].outputs["classes"]), _classes(ref.outputs["classes"]))
    assert [g.stats["precision"] for g in got] == ["float32", "float32"]
    if choice == "bfloat16":
        assert len(warnings) == 1, [w.getMessage() for w in warnings]
        assert "running it in float32" in warnings[0].getMessage()
        verdicts = [v for v in guard._verdicts.values() if v[1] is not None]
        assert verdicts and all(not r["passed"] and r["agreement"] < 1.0 for _, r in verdicts)
    else:  # auto is float32 here: nothing to guard, nothing to say
        assert warnings == [] and guard._verdicts == {}


def test_fingerprint_dumps_pin_auto_so_float32_roots_stay_current():
    """`auto` resolving to float32 fingerprints like an explicit float32 from before `auto`
    was the default (no `min_agreement` key, which that root never had)."""
    choice, _ = precision.auto_choice()
    old_default = PredictConfig(precision="float32").model_dump(mode="json")
    old_default.pop("min_agreement")  # the field is newer than those roots
    pinned = precision.pinned_section(
        PredictConfig().model_dump(mode="json"), guard_key="min_agreement"
    )
    explicit = precision.pinned_section(
        PredictConfig(precision="float32").model_dump(mode="json"), guard_key="min_agreement"
    )
    assert explicit == old_default  # float32 users: unchanged
    if choice == "float32":
        assert pinned == old_default
    else:
        assert pinned["precision"] == "bfloat16" and pinned["min_agreement"] == 0.995
    full = precision.pinned_config(
        {"predict": PredictConfig().model_dump(mode="json"), "rounds": {"score_precision": "auto"}}
    )
    assert full["rounds"]["score_precision"] == choice and full["predict"] == pinned


def test_beam_prediction_runs_every_block_in_the_launchers_verdict(cnn_dir, tmp_path):
    """The launcher decides each scene's precision once (guarded); the blocks follow it, so the
    outputs equal a float32 prediction where the guard falls back."""
    from reseg.components.predictor.job import predict_beam

    choice, _ = precision.auto_choice()
    cfg = PredictConfig(
        min_agreement=1.0, tile_size=64, overlap=16, block_size=128, progress=False, preview=False
    )
    image, _ = _scene(tmp_path, "big", size=300, seed=5)
    beam = ["--runner=DirectRunner", "--direct_running_mode=in_memory"]
    (res,) = predict_beam(cnn_dir, [image], tmp_path / "beam", cfg, beam_args=beam)
    assert res.stats["precision"] == "float32"  # auto is float32 here, or its guard failed
    if choice == "bfloat16":
        assert any(not r["passed"] for _, r in guard._verdicts.values() if r is not None)
    ref = predict_scene(
        load_backend(cnn_dir),
        image,
        tmp_path / "ref",
        cfg.model_copy(update={"precision": "float32"}),
    )
    assert np.array_equal(_classes(res.outputs["classes"]), _classes(ref.outputs["classes"]))
