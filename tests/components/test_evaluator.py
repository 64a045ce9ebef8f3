"""Evaluator: the confusion is a hand count over the fold's core pixels; metrics follow from it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from reseg import artifacts, layout
from reseg.artifacts import Metrics
from reseg.components.evaluator import confusion_of_scores, evaluate, load_metrics
from tests.components.scores import FOLDS, C, hand_confusion, synthetic_tiles, with_random_probs
from tests.components.scores import write_scores as write_scores_dir

NAMES = [f"c{i}" for i in range(C)]


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    """(scene, tiles with probs, Scores): shared, read-only."""
    scene, tiles = synthetic_tiles(seed=3)
    tiles = with_random_probs(tiles, seed=7)
    scores = write_scores_dir(
        tiles, tmp_path_factory.mktemp("eval") / "scores", "scores-a", shuffle_seed=1
    )
    return scene, tiles, scores


def argmax(t) -> np.ndarray:
    return t.probs.argmax(-1)


@pytest.mark.parametrize("fold", [*range(FOLDS), None])
def test_confusion_is_the_hand_count_over_the_folds_core_pixels(scored, fold):
    scene, tiles, scores = scored
    expected = hand_confusion(scene, tiles, fold, argmax)
    got = confusion_of_scores(scores.files, fold, C)
    np.testing.assert_array_equal(got, expected)
    # the count is over each labelled scene pixel of the fold once ...
    owner_fold = np.zeros(scene.label.shape, np.int64)
    for t in tiles:
        r, c, h, w = t.core
        owner_fold[r : r + h, c : c + w] = t.fold
    keep = scene.label != 255
    if fold is not None:
        keep &= owner_fold == fold
    assert got.sum() == keep.sum() > 0
    # ... and counting whole tiles (margins, padding and all) would have given another matrix
    whole = np.zeros((C, C), np.int64)
    for t in tiles:
        if fold is None or t.fold == fold:
            lab = t.label != 255
            np.add.at(whole, (t.label[lab], argmax(t)[lab]), 1)
    assert not np.array_equal(whole, got)


def test_evaluate_writes_metrics_that_follow_the_formulas(scored, tmp_path):
    scene, tiles, scores = scored
    out = evaluate(scores, tmp_path / "eval", 1, NAMES, title="t")
    cm = hand_confusion(scene, tiles, 1, argmax).astype(np.float64)
    v = out.values
    assert v["confusion"] == cm.astype(int).tolist()
    assert v["fold"] == 1 and v["class_names"] == NAMES
    n = cm.sum()
    tp, rows, cols = np.diag(cm), cm.sum(1), cm.sum(0)
    assert v["pixels"] == n
    assert v["overall_accuracy"] == pytest.approx(tp.sum() / n, rel=1e-12)
    iou = tp / (rows + cols - tp)
    assert v["mean_iou"] == pytest.approx(iou.mean(), rel=1e-12)
    assert v["mean_f1"] == pytest.approx((2 * tp / (rows + cols)).mean(), rel=1e-12)
    pe = (rows * cols).sum() / n**2
    assert v["kappa"] == pytest.approx((tp.sum() / n - pe) / (1 - pe), rel=1e-12)
    for i, name in enumerate(NAMES):
        pc = v["per_class"][name]
        assert pc["iou"] == pytest.approx(iou[i], rel=1e-12)
        assert pc["precision"] == pytest.approx(tp[i] / cols[i], rel=1e-12)
        assert pc["recall"] == pytest.approx(tp[i] / rows[i], rel=1e-12)
        assert pc["support"] == rows[i]
    # random scores: far from perfect, so the numbers above are not trivially 1 or 0
    assert 0.1 < v["overall_accuracy"] < 0.9 and abs(v["kappa"]) < 0.5


def test_metrics_load_round_trip(scored, tmp_path):
    _, _, scores = scored
    out = evaluate(scores, tmp_path / "eval", 0, NAMES)
    on_disk = json.loads((tmp_path / "eval" / layout.METRICS_JSON).read_text())
    loaded = Metrics.load(tmp_path / "eval")
    assert loaded == out and loaded.values == on_disk == out.values
    assert (loaded.mean_iou, loaded.overall_accuracy, loaded.kappa) == (
        on_disk["mean_iou"],
        on_disk["overall_accuracy"],
        on_disk["kappa"],
    )
    assert loaded.per_class == on_disk["per_class"]
    assert load_metrics(tmp_path / "eval") == on_disk
    m = artifacts.read_manifest(tmp_path / "eval")
    assert m["step"] == "evaluate" and m["scores"] == str(scores.path)
    for png in (layout.CONFUSION_PNG, layout.PER_CLASS_PNG):
        assert (tmp_path / "eval" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_class_absent_from_reference_and_prediction_is_null_and_left_out_of_the_mean(
    scored, tmp_path
):
    _, _, scores = scored
    v = evaluate(scores, tmp_path / "eval", 2, [*NAMES, "absent"]).values
    cm = np.array(v["confusion"], np.float64)
    assert cm.shape == (C + 1, C + 1) and cm[C].sum() == cm[:, C].sum() == 0
    assert v["per_class"]["absent"] == {
        "iou": None,
        "f1": None,
        "precision": None,
        "recall": None,
        "support": 0,
        "predicted": 0,
    }
    assert v["class_set"] == NAMES and v["false_positives"] == {}
    tp, rows, cols = np.diag(cm)[:C], cm.sum(1)[:C], cm.sum(0)[:C]
    assert v["mean_iou"] == pytest.approx((tp / (rows + cols - tp)).mean(), rel=1e-12)


def test_evaluate_is_skipped_when_current_and_reruns_when_its_inputs_change(scored, tmp_path):
    scene, tiles, scores = scored
    out = tmp_path / "eval"
    first = evaluate(scores, out, 0, NAMES)
    stamps = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    again = evaluate(scores, out, 0, NAMES)
    assert again.fingerprint == first.fingerprint
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == stamps  # nothing rewritten
    # another fold reruns, and so do other scores (a new fingerprint)
    other_fold = evaluate(scores, out, 2, NAMES)
    assert other_fold.fingerprint != first.fingerprint and other_fold.values["fold"] == 2
    rescored = with_random_probs(tiles, seed=8)
    scores_b = write_scores_dir(rescored, tmp_path / "scores_b", "scores-b")
    other = evaluate(scores_b, out, 2, NAMES)
    assert other.fingerprint != other_fold.fingerprint
    assert other.values["confusion"] == hand_confusion(scene, rescored, 2, argmax).tolist()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval", "scores_b"]
