"""One path through the pipeline: the step commands write what `reseg run` writes."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
import yaml

from reseg import artifacts, layout
from reseg.cli import main
from reseg.components.predictor import unique_ids
from reseg.config import parse_config
from reseg.errors import ConfigError
from reseg.folds import parse_folds

pytestmark = pytest.mark.slow  # a whole tiny pipeline, step by step


def _manifests(root: Path) -> dict[str, dict]:
    """Every published manifest under a root, by path relative to it (links followed)."""
    out = {}
    for d, _dirs, files in os.walk(root, followlinks=True):
        rel = Path(d).relative_to(root)
        if layout.MANIFEST not in files or any(
            ".tmp-" in part or part.startswith(".") or part.startswith("ml") for part in rel.parts
        ):  # staging, hidden, and MLflow's copies of artifacts (mlartifacts/)
            continue
        m = Path(d) / layout.MANIFEST
        out[str(rel)] = {**json.loads(m.read_text()), "_mtime_ns": m.stat().st_mtime_ns}
    return out


def _cli(*args) -> None:
    assert main([str(a) for a in args]) == 0, args


def test_the_steps_one_by_one_write_what_reseg_run_writes(demo_rounds, tmp_path):
    ref_root, cfg, _ = demo_rounds
    cfg_file = tmp_path / "tiny.yaml"
    cfg_file.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    root = tmp_path / "root"
    conf = (cfg_file, "--root", root)

    _cli("tile", *conf)
    _cli("stats", *conf)
    for r in range(cfg.rounds.count + 1):
        _cli("train", *conf, "--round", r)
        _cli("score", *conf, "--round", r)
        _cli("evaluate", *conf, "--round", r)
        _cli("select", *conf, "--round", r)
    _cli("merge", *conf)
    _cli("export", *conf)
    _cli("predict", "--config", cfg_file, "--root", root)
    _cli("report", root)

    mine, ref = _manifests(root), _manifests(ref_root)
    steps = {m.get("step") for m in ref.values()}
    assert {"tile", "stats", "train", "score", "evaluate", "select", "merge", "export"} <= steps
    assert set(mine) == set(ref)
    for rel, m in ref.items():
        assert mine[rel]["fingerprint"] == m["fingerprint"], rel
    for d in (layout.eval_dir, layout.merged_eval_dir):  # deterministic training: same metrics
        args = (0, 0) if d is layout.eval_dir else (0,)
        got = artifacts.Metrics.load(d(root, *args)).values
        want = artifacts.Metrics.load(d(ref_root, *args)).values
        assert got["confusion"] == want["confusion"]
    assert (
        artifacts.Metrics.load(layout.eval_dir(root, 1, 0)).values["confusion"]
        == artifacts.Metrics.load(layout.eval_dir(ref_root, 1, 0)).values["confusion"]
    )

    # a `reseg run` afterwards skips every step: nothing is published again
    _cli("run", *conf)
    again = _manifests(root)
    # ... but the report, which every call writes anew from what the root holds (its
    # fingerprint names no inputs: `reseg.report.REPORT_VERSION`)
    assert again.pop("report")["fingerprint"] == mine.pop("report")["fingerprint"]
    assert again == mine


def test_prediction_outputs_are_named_by_scene_id(demo_rounds, landsat, tmp_path):
    """Two scenes whose images share a file name (a/image.tif, b/image.tif) keep their outputs."""
    ref_root, cfg, _ = demo_rounds
    src = cfg.data.scenes[0]
    scenes = []
    for sid, flip in (("a", False), ("b", True)):
        d = tmp_path / sid
        d.mkdir()
        with rasterio.open(src.image) as ds:
            profile, data = ds.profile, ds.read()
        with rasterio.open(d / "image.tif", "w", **profile) as out:
            out.write(data[:, :, ::-1] if flip else data)
        shutil.copy(src.labels, d / "labels.tif")
        scenes.append({"id": sid, "image": str(d / "image.tif"), "labels": str(d / "labels.tif")})
    raw = cfg.model_dump(mode="json")
    raw["data"]["scenes"] = scenes
    two = parse_config(raw)
    root = tmp_path / "root"
    root.mkdir()
    for name in ("tiles", "stats", "rounds", "merged"):
        (root / name).symlink_to(ref_root / name, target_is_directory=True)
    cfg_file = tmp_path / "two.yaml"
    cfg_file.write_text(yaml.safe_dump(two.model_dump(mode="json")))
    _cli("predict", "--config", cfg_file, "--root", root, "--no-preview")
    preds = artifacts.Predictions.load(layout.predictions_dir(root))
    assert [e["scene"] for e in preds.scenes] == ["a", "b"]
    with (
        rasterio.open(preds.outputs("a")["classes"]) as a,
        rasterio.open(preds.outputs("b")["classes"]) as b,
    ):
        ca, cb = a.read(1), b.read(1)
    assert preds.outputs("a")["classes"].name == "a.tif"
    assert not np.array_equal(ca, cb)  # b is a's mirror image: its own outputs, not a's

    # `reseg predict --model` with bare image paths: the parent folder tells them apart
    out = tmp_path / "out"
    model = layout.merged_dir(ref_root, 0)
    _cli("predict", "--model", model, scenes[0]["image"], scenes[1]["image"], "--out", out)
    assert {p.name for p in out.glob("*.tif")} >= {"a_image.tif", "b_image.tif"}
    assert not (out / "image.tif").exists()


def test_the_predict_step_as_a_beam_job_publishes_what_the_sequential_step_does(
    demo_rounds, tmp_path
):
    """`reseg predict --config --root --beam`: the demo scene in blocks of 2 x 2 tiles of
    128 px, on the DirectRunner; same fingerprint, same rasters as without --beam."""
    ref_root, cfg, _ = demo_rounds
    cfg_file = tmp_path / "tiny.yaml"
    cfg_file.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    opts = ["--tile-size", "128", "--no-preview"]
    published = {}
    for name, extra in (
        ("seq", []),
        ("beam", ["--beam", "--block-size", "200", "--", "--direct_running_mode=in_memory"]),
    ):
        root = tmp_path / name
        root.mkdir()
        for d in ("tiles", "stats", "rounds", "merged"):
            (root / d).symlink_to(ref_root / d, target_is_directory=True)
        _cli("predict", "--config", cfg_file, "--root", root, *opts, *extra)
        published[name] = artifacts.Predictions.load(layout.predictions_dir(root))
    seq, beam = published["seq"], published["beam"]
    assert seq.fingerprint == beam.fingerprint
    assert [e["scene"] for e in beam.scenes] == [e["scene"] for e in seq.scenes]
    for e in seq.scenes:
        for key in ("classes", "confidence"):
            with (
                rasterio.open(seq.outputs(e["scene"])[key]) as a,
                rasterio.open(beam.outputs(e["scene"])[key]) as b,
            ):
                assert a.width > 400, "several blocks of 200 px"
                np.testing.assert_array_equal(a.read(), b.read())
        m = json.loads((beam.path / e["outputs"]["metrics"]).read_text())
        assert m["mean_iou"] == e["mean_iou"]
    assert not [p.name for p in beam.path.iterdir() if p.name.startswith(".")]


def test_unique_ids_and_the_fold_parser():
    assert unique_ids(["/x/a/image.tif", "/x/b/image.tif"]) == ["a_image", "b_image"]
    assert unique_ids(["/x/a/one.tif", "/x/b/two.tif"]) == ["one", "two"]
    assert parse_folds(None, 5, [0, 2]) == [0, 2]
    assert parse_folds("all", 3, [0]) == [0, 1, 2]
    assert parse_folds("full", 3, [0]) == [None]
    assert parse_folds("2", 3, [0]) == [2]
    for bad in ("3", "x", "-1"):
        with pytest.raises(ConfigError, match="--fold"):
            parse_folds(bad, 3, [0])
    with pytest.raises(ConfigError, match="no evaluation pixels"):
        parse_folds("full", 3, [0], allow_full=False)
