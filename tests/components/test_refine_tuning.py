"""Refinement tuned on the validation pixels: the grid, the "not applied when it does not beat
no refinement" rule, ground units in the record, and prediction with a tuning."""

from __future__ import annotations

import numpy as np
import pytest
from rasterio.crs import CRS

from reseg.artifacts import ModelInfo, RefineTuning
from reseg.components import refine_tuning
from reseg.components.refine_tuning import Member, apply_tuning, gain_lower_bound, grid, miou, tune
from reseg.config import PredictConfig
from reseg.errors import ConfigError
from reseg.metrics import scores
from reseg.tfrecords_schema import Tile
from tests.components.scores import write_scores

INFO = ModelInfo(
    bands=3,
    image_dtype="uint16",
    mean=(1000.0,) * 3,
    std=(300.0,) * 3,
    class_names=("a", "b"),
    class_colors=("#000000", "#ffffff"),
    output_stride=1,
    tile_size=32,
    architecture="x",
)
CLASSES = ["a", "b"]
UTM = CRS.from_epsg(32633).to_wkt()
T, N = 32, 12  # tile side, tiles per fold


def _tiles(kind: str, seed: int, crs: str = UTM) -> list[Tile]:
    """Tiles (core = whole tile, 10 m pixels) of folds 0, 1, 2 (N each).

    kind `blobs`: class b in squares of 8 px that the image shows (bright), probabilities
    right with p = 0.6 on 65% of the pixels and wrong on the rest: refinement along the
    image cleans them. kind `lines`: class b on 1-px lines the image does not show, right
    probabilities: any smoothing removes lines.
    """
    rng = np.random.default_rng(seed)
    out = []
    for i in range(3 * N):
        r, c = (i // 6) * T, (i % 6) * T
        if kind == "blobs":
            yy, xx = np.mgrid[:T, :T]
            truth = (((yy // 8) + (xx // 8) + rng.integers(0, 2)) % 2).astype(np.uint8)
            image = np.where(truth[..., None] == 1, 1600, 400) + rng.normal(0, 60, (T, T, 3))
            guess = np.where(rng.random(truth.shape) < 0.65, truth, 1 - truth)
        else:
            truth = np.zeros((T, T), np.uint8)
            truth[:, ::4] = 1
            image = 1000 + rng.normal(0, 300, (T, T, 3))
            guess = truth
        probs = np.where(guess[..., None] == np.arange(2), 0.6, 0.4).astype(np.float16)
        out.append(
            Tile(
                image=np.clip(image, 0, 65535).astype(np.uint16),
                label=truth,
                valid=np.ones((T, T), np.uint8),
                fold_map=np.full((T, T), i % 3, np.uint8),
                scene="s",
                row=r,
                col=c,
                core=(r, c, T, T),
                fold=i % 3,
                crs=crs,
                transform=(5e5 + 10 * c, 10.0, 0.0, 5e6 - 10 * r, 0.0, -10.0),
                probs=probs,
                score_round=0,
            )
        )
    return out


def _pcfg(**tune) -> PredictConfig:
    return PredictConfig.model_validate(
        {
            "tune": {
                "crf": {
                    "bilateral_sxy": ["30 m", 8],
                    "bilateral_sstd": [0.5],
                    "bilateral_compat": [4],
                },
                "slic": {"size": [6, "100 m"], "compactness": [0.5]},
                "bootstrap": 200,
                **tune,
            }
        }
    )


def _tune(tmp_path, kind, pcfg=None, crs=UTM) -> RefineTuning:
    sc = write_scores(_tiles(kind, 0, crs), tmp_path / kind / "scores", f"fp-{kind}-{crs[:4]}")
    return tune(
        [Member(sc)],
        "mean",
        INFO,
        0,
        3,
        pcfg or _pcfg(),
        tmp_path / kind / "refine",
        CLASSES,
        {"label": "r0", "fold": 0, "path": str(tmp_path)},
    )


def test_grid_is_every_combination_in_order():
    g = grid(_pcfg(), "crf")
    assert g == [
        {"bilateral_sxy": "30 m", "bilateral_sstd": 0.5, "bilateral_compat": 4.0},
        {"bilateral_sxy": 8.0, "bilateral_sstd": 0.5, "bilateral_compat": 4.0},
    ]
    assert len(grid(PredictConfig(), "crf")) == 12 and len(grid(PredictConfig(), "slic")) == 6


def test_refinement_that_helps_on_validation_is_applied_with_its_setting_in_metres(tmp_path):
    t = _tune(tmp_path, "blobs")
    rec = t.record
    assert (rec["fold"], rec["validation_fold"], rec["pixel_size_m"]) == (0, 1, 10.0)
    assert rec["validation_tiles"] == N and rec["evaluation_tiles"] == N
    for m in ("crf", "slic"):
        tm = t.method(m)
        assert tm["better"] and tm["gain"] > 0.2 and tm["gain_lower"] > 0, (m, tm)
        assert len(tm["tried"]) == 2
        # the held-out fold gains too
        assert tm["evaluation"]["mean_iou"] > rec["none"]["evaluation"]["mean_iou"] + 0.2
    # lengths tried in pixels are recorded in metres (10 m pixels)
    crf_best = t.method("crf")["best"]
    assert crf_best["bilateral_sxy"] in ("30 m", "80 m")
    slic_best = t.method("slic")["best"]
    assert slic_best["size"] in ("60 m", "100 m") and slic_best["sigma"] == "5 m"
    pcfg, said = apply_tuning(PredictConfig(refine="crf"), t)
    assert pcfg.refine == "crf" and pcfg.crf.bilateral_sxy == crf_best["bilateral_sxy"]
    assert "tuned on the validation pixels of fold 1" in said
    # per-tile held-out confusions sum to the held-out metrics
    with np.load(t / "tiles.npz") as z:
        assert len(z["keys"]) == N
        assert scores(z["crf"].sum(0), CLASSES)["mean_iou"] == pytest.approx(
            t.method("crf")["evaluation"]["mean_iou"]
        )


def test_refinement_that_does_not_beat_none_on_validation_is_not_applied(tmp_path):
    t = _tune(tmp_path, "lines")
    for m in ("crf", "slic"):
        assert not t.method(m)["better"] and t.method(m)["gain"] < 0
    for m in ("crf", "slic"):
        pcfg, said = apply_tuning(PredictConfig(refine=m), t)
        assert pcfg.refine == "none"
        assert said.startswith(f"refine {m} NOT applied") and "only_if_better" in said
    forced, said = apply_tuning(
        PredictConfig.model_validate({"refine": "slic", "tune": {"only_if_better": False}}), t
    )
    assert forced.refine == "slic" and forced.slic.size == t.method("slic")["best"]["size"]
    # no refinement asked: nothing to say
    assert apply_tuning(PredictConfig(), t) == (PredictConfig(), "")
    # no tuning: as configured, said so
    same, said = apply_tuning(PredictConfig(refine="crf"), None)
    assert same == PredictConfig(refine="crf") and "no tuning" in said


def test_a_gain_within_the_tiles_noise_does_not_count():
    """Per-tile confusions where the refinement wins on one tile and loses on most."""
    rng = np.random.default_rng(0)
    base = rng.integers(0, 50, (20, 2, 2))
    other = base.copy()
    other[0] += np.array([[400, 0], [0, 400]])  # one tile much better
    other[1:, 0, 0] -= np.minimum(other[1:, 0, 0], 3)  # the others a little worse
    gain = miou(other.sum(0)) - miou(base.sum(0))
    assert gain > 0 and gain_lower_bound(base, other, 0.9, 500) < 0
    assert gain_lower_bound(base, base + np.eye(2, dtype=int) * 30, 0.9, 500) > 0
    np.testing.assert_allclose(miou(base.sum(0)), scores(base.sum(0))["mean_iou"])


def test_metres_on_tiles_without_crs_are_an_error(tmp_path):
    with pytest.raises(ConfigError, match="bilateral_sxy = '30 m'.*not georeferenced"):
        _tune(tmp_path, "blobs", crs="")
    assert not (tmp_path / "blobs" / "refine").exists()


def test_tuning_is_skipped_when_current(tmp_path, monkeypatch):
    first = _tune(tmp_path, "lines")
    monkeypatch.setattr(refine_tuning, "_tiles", None)  # would fail if it read tiles again
    again = _tune(tmp_path, "lines")
    assert again.fingerprint == first.fingerprint


def test_no_validation_fold_with_two_folds(tmp_path):
    sc = write_scores(_tiles("lines", 0), tmp_path / "scores", "fp")
    with pytest.raises(ConfigError, match="at least 3"):
        tune([Member(sc)], "mean", INFO, 0, 2, _pcfg(), tmp_path / "r", CLASSES, {})
