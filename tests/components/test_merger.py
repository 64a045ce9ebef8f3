"""Merger: every method equals `combine` of the rounds' stored probabilities, tile by tile.

Three synthetic rounds of scores over the same tiles (each round's shards in another
order, so the join by tile key is exercised), merged for fold 1 by the real Beam job
on the in-process DirectRunner.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from reseg import artifacts, layout
from reseg.artifacts import Merged, ModelInfo
from reseg.components.evaluator import confusion_of_scores
from reseg.components.merger import MERGED_ROUND, merge, method_metrics
from reseg.inference import METHODS, combine
from reseg.metrics import scores as metric_values
from reseg.tfrecords_schema import read_tiles
from tests.components.scores import C, hand_confusion, synthetic_tiles, with_random_probs
from tests.components.scores import write_scores as write_scores_dir

NAMES = [f"c{i}" for i in range(C)]
FOLD = 1
WEIGHTS = [1.0, 3.0, 0.5]
BEAM = ["--runner=DirectRunner", "--direct_num_workers=1", "--direct_running_mode=in_memory"]


def _model(directory: Path, r: int) -> artifacts.Model:
    """A round's model directory as the merger sees it: manifest and `model.json` (no weights
    are read: the merger combines stored scores)."""
    directory.mkdir(parents=True)
    artifacts.write_json(directory / artifacts.MANIFEST, {"fingerprint": f"model-r{r}"})
    ModelInfo(
        bands=2,
        image_dtype="uint16",
        mean=(0.0, 0.0),
        std=(1.0, 1.0),
        class_names=tuple(NAMES),
        class_colors=("#000000",) * C,
        output_stride=1,
        tile_size=16,
        architecture="cnn",
    ).save(directory)
    return artifacts.Model.load(directory)


@pytest.fixture(scope="module")
def rounds(tmp_path_factory):
    """(root, scene, tiles, per-round tiles with probs, Scores, Models): shared, read-only."""
    root = tmp_path_factory.mktemp("merge_root")
    scene, tiles = synthetic_tiles(seed=5)
    scored, scores, models = [], [], []
    for r in range(3):
        t = with_random_probs(tiles, seed=20 + r, score_round=r)
        d = layout.scores_dir(root, r, FOLD)
        scored.append(t)
        scores.append(write_scores_dir(t, d, f"scores-r{r}", shards=2 + r, shuffle_seed=r))
        models.append(_model(layout.model_dir(root, r, FOLD), r))
    return root, scene, tiles, scored, scores, models


def _expected(scored, method: str, weights=WEIGHTS) -> dict[str, np.ndarray]:
    """Tile key -> combine() of the rounds' stored (float16) probabilities, stored as float16."""
    out = {}
    for per_round in zip(*scored, strict=True):
        probs = [t.probs for t in per_round]
        w = weights if method == "weighted" else None
        out[per_round[0].key] = combine(probs, w, method).astype(np.float16)
    return out


def _files(path: Path) -> dict[str, int]:
    return {str(p.relative_to(path)): p.stat().st_mtime_ns for p in path.rglob("*") if p.is_file()}


@pytest.mark.parametrize("method", METHODS)
def test_each_method_is_combine_of_the_stored_probabilities_for_the_folds_tiles(rounds, method):
    root, scene, tiles, scored, scores, models = rounds
    out = layout.merged_dir(root, FOLD).with_name(f"fold{FOLD}-{method}")
    merged = merge(scores, models, WEIGHTS, method, FOLD, out, NAMES, BEAM)

    # only the fold's tiles, each once, with the method's probabilities; the rest unchanged
    expected = _expected(scored, method)
    by_key = {t.key: t for t in tiles}
    got = list(read_tiles(list(merged.scores.files)))
    assert sorted(t.key for t in got) == sorted(t.key for t in tiles if t.fold == FOLD)
    for t in got:
        np.testing.assert_array_equal(t.probs, expected[t.key])
        assert t.score_round == MERGED_ROUND
        src = by_key[t.key]
        for name in ("image", "label", "valid", "fold_map"):
            np.testing.assert_array_equal(getattr(t, name), getattr(src, name))
        assert (t.core, t.fold, t.crs, t.transform) == (src.core, src.fold, src.crs, src.transform)

    # methods.json: every method's metrics on the same pixels, whatever the configured method
    fold_tiles = [t for t in tiles if t.fold == FOLD]
    assert len(fold_tiles) < len(tiles)
    assert set(merged.methods) == set(METHODS)
    for m in METHODS:
        exp = _expected(scored, m)
        cm = hand_confusion(scene, tiles, FOLD, lambda t, exp=exp: exp[t.key].argmax(-1))
        assert merged.methods[m]["confusion"] == cm.tolist(), m
        assert merged.methods[m] == json.loads(json.dumps(metric_values(cm, NAMES)))
    # the stored scores of the configured method evaluate to its methods.json confusion
    cm = confusion_of_scores(merged.scores.files, FOLD, C)
    assert cm.tolist() == merged.methods[method]["confusion"]

    # merged.json: the ensemble the predictor reads, members relative to the merged folder
    assert merged.spec == {
        "method": method,
        "members": [
            {"model": f"../../rounds/r{r}/fold{FOLD}/model", "weight": w}
            for r, w in enumerate(WEIGHTS if method == "weighted" else [1.0, 1.0, 1.0])
        ],
    }
    for member in merged.spec["members"]:
        assert (out / member["model"] / layout.MODEL_JSON).is_file()


def test_the_merged_folder_is_one_artifact_skipped_when_current(rounds):
    root, _, _, scored, scores, models = rounds
    out = layout.merged_dir(root, FOLD)
    first = merge(scores, models, WEIGHTS, "weighted", FOLD, out, NAMES, BEAM)
    m = artifacts.read_manifest(out)
    assert m["step"] == "merge" and m["fingerprint"] == first.fingerprint
    assert m["method"] == "weighted" and m["rounds"] == 3 and m["weights"] == WEIGHTS
    inner = artifacts.read_manifest(out / "scores")
    assert inner["fingerprint"] == first.fingerprint and inner["files"] == [
        f.name for f in first.scores.files
    ]
    assert sorted(p.name for p in out.iterdir()) == [
        layout.MANIFEST,
        layout.MERGED_JSON,
        "scores",
    ]
    assert not [p for p in out.parent.iterdir() if ".tmp-" in p.name]
    assert Merged.load(out) == first
    assert method_metrics(out) == {"weights": WEIGHTS, "methods": first.methods}
    assert json.loads((out / "scores" / layout.METHODS_JSON).read_text())["weights"] == WEIGHTS

    stamps = _files(out)
    again = merge(scores, models, WEIGHTS, "weighted", FOLD, out, NAMES, BEAM)
    assert again.fingerprint == first.fingerprint
    assert _files(out) == stamps  # skipped: nothing rewritten

    changed = [2.0, 0.25, 1.0]
    rerun = merge(scores, models, changed, "weighted", FOLD, out, NAMES, BEAM)
    assert rerun.fingerprint != first.fingerprint
    assert rerun.manifest["weights"] == changed
    assert [mb["weight"] for mb in rerun.spec["members"]] == changed
    expected = _expected(scored, "weighted", changed)
    for t in read_tiles(list(rerun.scores.files)):
        np.testing.assert_array_equal(t.probs, expected[t.key])
    before = _expected(scored, "weighted")
    assert any(not np.array_equal(before[k], v) for k, v in expected.items())  # weights matter
    assert not [p for p in out.parent.iterdir() if ".tmp-" in p.name or ".old-" in p.name]
