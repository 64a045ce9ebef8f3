"""The confidence rounds end to end on the demo scene (tiny model), and their parts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from reseg import layout
from reseg.cli import main
from reseg.components.evaluator import confusion_of_scores
from reseg.components.scorer import score, score_files
from reseg.tfrecords_schema import read_tiles


def test_every_artifact_of_the_rounds_is_there(demo_rounds):
    root, cfg, results = demo_rounds
    for r in (0, 1):
        for part in (
            "model/model.keras",
            "model/model.json",
            "scores/manifest.json",
            "eval/metrics.json",
            "eval/confusion.png",
            "val/metrics.json",
            "selection/selection.json",
            "selection/score_hist.png",
            "selection/landsat.tif",
        ):
            assert (layout.round_dir(root, r, 0) / part).exists(), (r, part)
    merged = layout.merged_dir(root, 0)
    spec = json.loads((merged / "merged.json").read_text())
    assert spec["method"] == "mean" and len(spec["members"]) == 2
    methods = json.loads((merged / "scores" / "methods.json").read_text())["methods"]
    assert set(methods) == {"mean", "weighted", "max_confidence", "vote"}
    sel1 = json.loads((layout.selection_dir(root, 1, 0) / "selection.json").read_text())
    assert any(pc["jaccard_previous"] is not None for pc in sel1["per_class"].values())
    report = (root / "report" / "report.md").read_text()
    assert "| r0 |" in report and "| r1 |" in report and "merged mean (used)" in report
    assert (root / "report" / "report.html").exists() and (
        root / "report" / "miou_fold0.png"
    ).exists()
    fold = results["rounds"][0]
    assert [r.round for r in fold.rounds] == [0, 1]
    assert fold.merged.mean_iou == pytest.approx(methods["mean"]["mean_iou"])


def test_merge_weights_are_the_validation_folds_miou_never_the_evaluation_folds(demo_rounds):
    """Fold 0 evaluates, fold 1 validates (K = 5): the merge reads each round's `val/`."""
    root, _, _ = demo_rounds
    manifest = json.loads((layout.merged_dir(root, 0) / "manifest.json").read_text())
    val = [json.loads((layout.val_dir(root, r, 0) / "metrics.json").read_text()) for r in (0, 1)]
    ev = [json.loads((layout.eval_dir(root, r, 0) / "metrics.json").read_text()) for r in (0, 1)]
    assert [v["fold"] for v in val] == [1, 1] and [e["fold"] for e in ev] == [0, 0]
    assert manifest["weights"] == pytest.approx([max(v["mean_iou"], 1e-6) for v in val])
    assert manifest["weights"] != pytest.approx([e["mean_iou"] for e in ev])
    for r in (0, 1):
        model = json.loads((layout.model_dir(root, r, 0) / "manifest.json").read_text())
        assert model["validation_fold"] == 1
        # the trainer's best validation mIoU is on the same pixels as val/ (the chosen epoch's)
        assert model["counts"]["val_tiles"] > 0


def test_round_one_trains_on_the_selection(demo_rounds):
    root, _, _ = demo_rounds
    sel = layout.selection_dir(root, 0, 0)
    report = json.loads((sel / "selection.json").read_text())
    weights = 0
    for t in read_tiles(sorted(sel.glob("part-*.tfrecord.gz"))):
        assert t.weight is not None
        weights += int((t.weight[t.core_slice()] > 0).sum())
    assert weights == report["selected"] > 0
    manifest = json.loads((layout.model_dir(root, 1, 0) / "manifest.json").read_text())
    assert "selection" in json.dumps(manifest)


def test_mlflow_has_a_parent_run_with_nested_rounds(demo_rounds):
    from mlflow import MlflowClient

    root, cfg, _ = demo_rounds
    client = MlflowClient(tracking_uri=layout.tracking_uri(root))
    exp = client.get_experiment_by_name(cfg.name)
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.data.tags.get("reseg.step") == "pipeline"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    rounds = [r for r in children if "reseg.round" in r.data.tags]
    assert sorted(r.data.tags["reseg.round"] for r in rounds) == ["0", "1"]
    assert all("val_mean_iou" in r.data.metrics for r in rounds)  # validation fold
    assert all("eval_mean_iou" in r.data.metrics for r in rounds)  # evaluation fold
    assert any(r.data.tags.get("reseg.step") == "export" for r in children)


def test_evaluator_counts_each_validation_core_pixel_once(demo_rounds):
    root, _, _ = demo_rounds
    metrics = json.loads((layout.eval_dir(root, 0, 0) / "metrics.json").read_text())
    cm = np.zeros((7, 7), np.int64)
    seen = set()
    for t in read_tiles(score_files(layout.scores_dir(root, 0, 0))):
        if t.fold != 0:
            continue
        r, c, h, w = t.core
        rs, cs = t.core_slice()
        lab, pred = t.label[rs, cs], t.probs[rs, cs].argmax(-1)
        for i, j in zip(*np.nonzero(lab != 255), strict=True):
            assert (r + i, c + j) not in seen
            seen.add((r + i, c + j))
            cm[lab[i, j], pred[i, j]] += 1
    assert metrics["confusion"] == cm.tolist()
    assert metrics["pixels"] == len(seen) > 0


def test_merged_mean_is_the_mean_of_the_rounds(demo_rounds):
    root, _, _ = demo_rounds
    rounds = [
        {
            t.key: t.probs.astype(np.float32)
            for t in read_tiles(score_files(layout.scores_dir(root, r, 0)))
        }
        for r in (0, 1)
    ]
    merged = list(read_tiles(score_files(layout.merged_dir(root, 0) / "scores")))
    assert merged and all(t.fold == 0 for t in merged)
    for t in merged:
        np.testing.assert_allclose(t.probs, (rounds[0][t.key] + rounds[1][t.key]) / 2, atol=2e-3)


def test_scorer_on_two_worker_processes_gives_the_same_scores(demo_rounds, tmp_path):
    root, cfg, _ = demo_rounds
    from reseg.artifacts import TileSet

    tiles = TileSet.load(layout.tiles_dir(root))
    out = score(
        cfg,
        layout.model_dir(root, 0, 0),
        list(tiles.files),
        tmp_path / "scores",
        0,
        ["--direct_num_workers=2", "--direct_running_mode=multi_processing"],
    )
    ref = {t.key: t.probs for t in read_tiles(score_files(layout.scores_dir(root, 0, 0)))}
    got = list(read_tiles(score_files(out)))
    assert len(got) == len(ref) == tiles.manifest["counts"]["tiles"]
    for t in got:
        np.testing.assert_allclose(
            t.probs.astype(np.float32), ref[t.key].astype(np.float32), atol=2e-3
        )
        assert t.score_round == 0
    cm = confusion_of_scores(score_files(out), 0, 7)
    assert cm.sum() > 0


def test_report_and_evaluate_commands(demo_rounds, capsys):
    root, cfg, _ = demo_rounds
    assert main(["report", str(root)]) == 0
    out = capsys.readouterr().out
    assert "| r1 |" in out and "report.html" in out
    classes = json.loads((layout.eval_dir(root, 0, 0) / "metrics.json").read_text())["class_set"]
    assert f"mIoU over the classes in its labels ({', '.join(classes)})" in out
    cfg_file = root / "tiny.yaml"
    cfg_file.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    assert main(["evaluate", str(cfg_file), "--root", str(root), "--round", "merged"]) == 0
    assert "merged fold0: mIoU" in capsys.readouterr().out
    assert main(["evaluate", str(cfg_file), "--root", str(root), "--round", "1"]) == 0
    out = capsys.readouterr().out
    val = json.loads((layout.val_dir(root, 1, 0) / "metrics.json").read_text())
    assert f"validation fold 1: mIoU {val['mean_iou']:.4f}" in out


def test_kill_during_round_one_then_rerun_ends_with_the_same_metrics(demo_rounds, tmp_path):
    ref_root, cfg, _ = demo_rounds
    cfg_file = tmp_path / "tiny.yaml"
    cfg_file.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    root = tmp_path / "root"
    root.mkdir()
    for name in ("tiles", "stats"):  # current for this config: the steps skip them
        (root / name).symlink_to(ref_root / name, target_is_directory=True)
    cmd = [sys.executable, "-m", "reseg", "run", str(cfg_file), "--root", str(root)]
    cmd += ["--steps", "tile,stats,rounds"]
    log = open(tmp_path / "first.log", "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 400
    while time.time() < deadline and proc.poll() is None:
        if list((root / "rounds" / "r1" / "fold0").glob("model.tmp-*/ckpt*")) or list(
            (root / "rounds" / "r1" / "fold0").glob("model.tmp-*/*")
        ):
            break
        time.sleep(0.2)
    assert proc.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (layout.eval_dir(root, 1, 0) / "metrics.json").exists()
    assert (layout.eval_dir(root, 0, 0) / "metrics.json").exists()
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "rounds/r0/fold0/model is up to date" in out.stderr
    for d in (
        layout.eval_dir(root, 0, 0),
        layout.eval_dir(root, 1, 0),
        layout.merged_dir(root, 0) / "eval",
    ):
        got = json.loads((d / "metrics.json").read_text())
        ref = json.loads(
            (Path(str(d).replace(str(root), str(ref_root))) / "metrics.json").read_text()
        )
        assert got["confusion"] == ref["confusion"], d


def test_the_pipeline_predicts_every_scene_with_the_exported_model(demo_rounds):
    import rasterio

    from reseg.pipeline.predict import predict_root

    root, cfg, results = demo_rounds
    out = results["predict"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["model"]["source"] == cfg.export.source == "merged"
    (entry,) = manifest["scenes"]
    image = cfg.data.scenes[0].image
    with rasterio.open(image) as src, rasterio.open(out / entry["outputs"]["classes"]) as cls:
        assert (cls.crs, cls.transform, cls.shape) == (src.crs, src.transform, src.shape)
        classes = cls.read(1)
    assert set(np.unique(classes)) <= set(range(len(cfg.data.classes))) | {255}
    assert 0 <= entry["mean_iou"] <= 1 and (out / entry["outputs"]["metrics"]).exists()
    before = (out / "manifest.json").stat().st_mtime_ns
    assert predict_root(cfg, root) == out  # same model and settings: nothing redone
    assert (out / "manifest.json").stat().st_mtime_ns == before
