"""Scorer: every tile once, with the backend's probabilities, on the real Beam job.

Tiles of a seeded 4-band uint16 scene (16 px, output stride 2 fits) go through
`score` with a tiny saved U-Net (`tests/components/predictor/helpers.py`), and the
result is compared with `KerasBackend` run directly on the same tiles.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from reseg import artifacts, layout
from reseg.components.scorer import score, score_files
from reseg.inference import KerasBackend, predict_tta
from reseg.tfrecords_schema import read_tiles
from tests.components.predictor.helpers import save_model, small_cnn
from tests.components.trainer.tiles import config, make_scene, scene_tiles, write_tiles

BANDS, C = 4, 3
IN_MEMORY = ["--runner=DirectRunner", "--direct_num_workers=1", "--direct_running_mode=in_memory"]
MULTI = ["--direct_num_workers=2", "--direct_running_mode=multi_processing"]
ATOL = 1e-3  # two float16 steps below 1: the stored probabilities are float16


def _model(directory: Path, seed: int) -> artifacts.Model:
    save_model(directory, small_cnn(BANDS, C, seed=seed), bands=BANDS, classes=C, output_stride=2)
    artifacts.write_json(directory / artifacts.MANIFEST, {"fingerprint": f"model-seed{seed}"})
    return artifacts.Model.load(directory)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """(cfg, tiles, tile files, model a, model b): shared, read-only."""
    root = tmp_path_factory.mktemp("score_root")
    scene = make_scene(40, 44, BANDS, C, "uint16", seed=11)
    tiles = scene_tiles(scene, "synth", 16, 4, 3, seed=11)
    rng = np.random.default_rng(0)
    # some tiles carry geo fields and a weight already: the scorer must pass them through
    for i in (1, 5):
        tiles[i] = dataclasses.replace(
            tiles[i],
            crs='PROJCS["synthetic"]',
            transform=(500000.0 + i, 10.0, 0.0, 6200000.0, 0.0, -10.0),
        ).with_weight(rng.random(tiles[i].label.shape).astype(np.float32))
    files = write_tiles(tiles, layout.tiles_dir(root), shards=3)
    # float32: the scores are compared with the float32 backend (auto has its own tests)
    cfg = config(root, tile=16, overlap=4, rounds={"score_precision": "float32"})
    cfg = cfg.model_copy(update={"beam": cfg.beam.model_validate({"args": IN_MEMORY})})
    models = [_model(root / f"model{seed}", seed) for seed in (1, 2)]
    return cfg, tiles, files, *models


def _backend_probs(model: artifacts.Model, tiles) -> dict[str, np.ndarray]:
    backend = KerasBackend(model.path)
    probs = backend(np.stack([t.image for t in tiles]), np.stack([t.valid for t in tiles]))
    return {t.key: p for t, p in zip(tiles, probs, strict=True)}


def _check_scored(out_tiles, tiles, expected: dict[str, np.ndarray], round_: int) -> None:
    assert sorted(t.key for t in out_tiles) == sorted(t.key for t in tiles)  # each tile once
    by_key = {t.key: t for t in tiles}
    for t in out_tiles:
        assert t.probs is not None and t.probs.dtype == np.float16 and t.probs.shape[-1] == C
        np.testing.assert_allclose(t.probs, expected[t.key], atol=ATOL, rtol=0)
        assert t.score_round == round_
        src = by_key[t.key]
        for name in ("image", "label", "valid", "fold_map"):
            np.testing.assert_array_equal(getattr(t, name), getattr(src, name))
        assert (t.scene, t.row, t.col, t.core, t.fold) == (
            src.scene,
            src.row,
            src.col,
            src.core,
            src.fold,
        )
        assert (t.crs, t.transform) == (src.crs, pytest.approx(src.transform))
        if src.weight is None:
            assert t.weight is None
        else:
            np.testing.assert_array_equal(t.weight, src.weight)


def _stamps(path: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in path.iterdir()}


@pytest.fixture(scope="module")
def plain(setup, tmp_path_factory) -> artifacts.Scores:
    """Model a's scores of every tile as round 2, in batches of up to 4: shared, read-only."""
    cfg, _, files, model, _ = setup
    return score(cfg, model, files, tmp_path_factory.mktemp("plain") / "scores", 2, batch_size=4)


def test_every_tile_comes_out_once_with_the_backends_probabilities(setup, plain):
    _, tiles, _, model, _ = setup
    scores = plain
    out = list(read_tiles(list(scores.files)))
    expected = _backend_probs(model, tiles)
    _check_scored(out, tiles, expected, 2)
    # the probabilities are the model's, not something trivially close to any model's
    p = np.stack([expected[t.key] for t in tiles])
    assert np.allclose(p.sum(-1), 1, atol=1e-5) and p.std() > 0.01
    m = scores.manifest
    assert m["step"] == "score" and m["round"] == 2 and m["model"] == str(model.path)
    assert m["files"] == sorted(f.name for f in scores.path.glob(layout.SHARD_GLOB))
    assert score_files(scores.path) == list(scores.files)
    assert sorted(p.name for p in scores.path.parent.iterdir()) == ["scores"]  # renamed


def test_skipped_when_current_and_rerun_when_the_model_or_the_round_changes(setup, tmp_path):
    cfg, tiles, files, model_a, model_b = setup
    out = tmp_path / "scores"
    first = score(cfg, model_a.path, files, out, 0)  # a path is loaded as a Model
    stamps = _stamps(out)
    again = score(cfg, model_a, files, out, 0)
    assert again.fingerprint == first.fingerprint
    assert _stamps(out) == stamps  # nothing rewritten

    other_round = score(cfg, model_a, files, out, 1)
    assert other_round.fingerprint != first.fingerprint
    assert {t.score_round for t in read_tiles(list(other_round.files))} == {1}

    other_model = score(cfg, model_b, files, out, 1)
    assert other_model.fingerprint not in (first.fingerprint, other_round.fingerprint)
    _check_scored(
        list(read_tiles(list(other_model.files))), tiles, _backend_probs(model_b, tiles), 1
    )
    a, b = _backend_probs(model_a, tiles), _backend_probs(model_b, tiles)
    assert max(np.abs(a[k] - b[k]).max() for k in a) > 10 * ATOL  # the models differ
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scores"]


def test_tta_transforms_are_averaged_and_part_of_the_fingerprint(setup, plain, tmp_path):
    cfg, tiles, files, model, _ = setup
    tta = ("identity", "rot90", "flip")
    scores = score(cfg, model, files, tmp_path / "tta", 2, tta=tta)
    assert scores.fingerprint != plain.fingerprint
    images, valid = np.stack([t.image for t in tiles]), np.stack([t.valid for t in tiles])
    probs = predict_tta(KerasBackend(model.path), images, valid, tta)
    expected = {t.key: p for t, p in zip(tiles, probs, strict=True)}
    _check_scored(list(read_tiles(list(scores.files))), tiles, expected, 2)
    a = {t.key: t.probs for t in read_tiles(list(plain.files))}
    assert max(np.abs(a[k].astype(np.float32) - expected[k]).max() for k in a) > 10 * ATOL


@pytest.mark.slow
def test_two_worker_processes_give_the_same_set(setup, plain, tmp_path):
    cfg, tiles, files, model, _ = setup
    one = plain  # one in-process worker, batches of up to 4
    two = score(cfg, model, files, tmp_path / "two", 2, beam_args=MULTI, batch_size=3)
    assert one.fingerprint == two.fingerprint  # runner options are not inputs
    a = {t.key: t for t in read_tiles(list(one.files))}
    b = {t.key: t for t in read_tiles(list(two.files))}
    assert len(a) == len(b) == len(tiles) and set(a) == set(b)
    for k in a:
        np.testing.assert_allclose(b[k].probs, a[k].probs, atol=ATOL, rtol=0)
        np.testing.assert_array_equal(b[k].image, a[k].image)


def test_rescored_when_the_tiles_change_under_the_same_file_names(setup, tmp_path):
    """`reseg tile` again (other tiles, same shard names) and then `reseg score` with the
    model still in place: the scores must be of the new tiles, not the old ones kept."""
    cfg, tiles, _, model, _ = setup
    folder = tmp_path / "tiles"
    out = tmp_path / "scores"
    for name, part in (("tiles-a", tiles[:6]), ("tiles-b", tiles[6:])):
        files = write_tiles(part, folder, shards=2)
        artifacts.write_json(folder / artifacts.MANIFEST, {"fingerprint": name})
        scores = score(cfg, model, files, out, 0)
        assert sorted(t.key for t in read_tiles(list(scores.files))) == sorted(t.key for t in part)
