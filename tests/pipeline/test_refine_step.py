"""`reseg tune-refine`, the pipeline's refine step, and prediction with the tuned setting, on
the demo's tiny rounds."""

from __future__ import annotations

import logging

import pytest
import yaml

from reseg import artifacts, layout
from reseg.cli import main
from reseg.components.refine_tuning import find_tuning
from reseg.config import parse_config

pytestmark = pytest.mark.slow  # the demo's rounds (shared fixture)

TUNE = {
    "crf": {"bilateral_sxy": ["300 m", 3], "bilateral_sstd": [0.5], "bilateral_compat": [3]},
    "slic": {"size": ["150 m"], "compactness": [0.5]},
    "bootstrap": 200,
}


def _cli(*args) -> None:
    assert main([str(a) for a in args]) == 0, args


def test_tune_refine_then_predict_with_the_tuned_setting(demo_rounds, tmp_path, caplog, capsys):
    ref_root, cfg, _ = demo_rounds
    root = tmp_path / "root"
    root.mkdir()
    for name in ("tiles", "stats", "rounds", "merged"):
        (root / name).symlink_to(ref_root / name, target_is_directory=True)
    raw = cfg.model_dump(mode="json")
    raw["predict"].update(refine="slic", tune=TUNE, preview=False, progress=False)
    raw["tracking"]["enabled"] = False
    cfg_file = tmp_path / "refine.yaml"
    cfg_file.write_text(yaml.safe_dump(parse_config(raw).model_dump(mode="json")))

    _cli("tune-refine", cfg_file, "--root", root)
    out = capsys.readouterr().out
    assert "validation pixels of fold 1" in out and "held out (fold 0" in out
    tuning = artifacts.RefineTuning.load(layout.refine_dir(root, 0))
    rec = tuning.record
    assert rec["source"]["label"] == "merged" and len(rec["members"]) == cfg.rounds.count + 1
    assert [r["setting"]["bilateral_sxy"] for r in rec["methods"]["crf"]["tried"]] == ["300 m", 3]
    assert rec["pixel_size_m"] == pytest.approx(28.5, abs=0.01)
    assert rec["methods"]["crf"]["best"]["bilateral_sxy"] in ("300 m", "85.5 m")
    assert find_tuning(root / "merged" / "fold0") == layout.refine_dir(root, 0)
    assert find_tuning(ref_root / "merged" / "fold0") is None  # not tuned there
    assert find_tuning(root / "rounds" / "r0" / "fold0" / "model") is None  # tuned for merged

    # `reseg run --steps refine,predict`: the tuning is current, the prediction uses it
    before = tuning.manifest["seconds"], (tuning / layout.MANIFEST).stat().st_mtime_ns
    with caplog.at_level(logging.INFO):
        _cli("run", cfg_file, "--root", root, "--steps", "refine,predict")
    assert (
        artifacts.RefineTuning.load(layout.refine_dir(root, 0)) / layout.MANIFEST
    ).stat().st_mtime_ns == before[1]
    slic = rec["methods"]["slic"]
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("refine slic")]
    assert len(said) == 1
    preds = artifacts.Predictions.load(layout.predictions_dir(root))
    if slic["better"]:
        assert "tuned on the validation pixels of fold 1" in said[0]
    else:
        assert "NOT applied" in said[0]
    assert preds.manifest["model"]["source"] == "merged"

    # `reseg predict --model` finds the tuning of merged/fold0 by itself
    caplog.clear()
    with caplog.at_level(logging.INFO):
        _cli(
            "predict",
            "--model",
            root / "merged" / "fold0",
            cfg.data.scenes[0].image,
            "--out",
            tmp_path / "out",
            "--refine",
            "crf",
            "--no-preview",
            "--no-progress",
        )
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("refine crf")]
    assert len(said) == 1 and str(layout.refine_dir(root, 0)) in said[0]
    assert ("NOT applied" in said[0]) != rec["methods"]["crf"]["better"]


def test_refine_step_does_nothing_without_refine(demo_rounds, tmp_path, caplog):
    from reseg.pipeline import steps

    _, cfg, _ = demo_rounds
    with caplog.at_level(logging.INFO):
        assert steps.refine(steps.Context(cfg, tmp_path)) == []
    assert "no refinement to tune" in caplog.text
    assert not (tmp_path / "refine").exists()
