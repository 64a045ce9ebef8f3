"""Selector: exact counts per class, top and bottom complementary, each scene pixel once."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reseg import artifacts, layout
from reseg.artifacts import TileSet
from reseg.components.selector import pixel_keys, pixel_scores, quantize, rank_range, select
from reseg.config import parse_config
from reseg.config.rounds import SelectionConfig
from reseg.folds import held_folds, training_folds
from reseg.tfrecords_schema import TFRecordShardWriter, encode, read_tiles
from tests.components.roots import tile
from tests.rasters import config_dict, scene

C = 3


@pytest.fixture(scope="module")
def small_tiles(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sel")
    img, lab = scene(tmp, height=45, width=52, classes=C, seed=4)
    cfg = parse_config(config_dict(img, lab, classes=C, tile_size=16, overlap=4, folds=3))
    return tile(cfg, tmp / "root")


def write_scores(tiles: TileSet, out, seed: int) -> artifacts.Scores:
    """Random probabilities per tile: overlapping tiles disagree in their margins on purpose."""
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "part-0.tfrecord.gz"
    with TFRecordShardWriter(path) as w:
        for t in read_tiles(list(tiles.files)):
            p = rng.gamma(0.6, size=(*t.label.shape, C)).astype(np.float32) + 1e-3
            w.write(encode(t.with_scores(p / p.sum(-1, keepdims=True), 0)))
    artifacts.write_json(
        out / artifacts.MANIFEST, {"fingerprint": f"random-scores-{seed}", "files": [path.name]}
    )
    return artifacts.Scores.load(out)


def brute_force(
    tiles: TileSet, scores: artifacts.Scores, fold: int, kind: str, correct_only: bool = False
):
    """Every candidate's (class, key, scene position), gathered without the selector's passes."""
    out = []
    held = held_folds(fold, tiles.folds)  # evaluation and validation fold: never candidates
    for t in read_tiles(list(scores.files)):
        if t.fold in held:
            continue
        rs, cs = t.core_slice()
        lab, probs = t.label[rs, cs], t.probs[rs, cs]
        pool = lab != 255
        if correct_only:
            pool &= probs.argmax(-1) == lab
        rr, cc = np.nonzero(pool)
        rows, cols = rr + rs.start + t.row, cc + cs.start + t.col
        keys = pixel_keys(quantize(pixel_scores(probs, lab, kind))[pool], 0, rows, cols)
        out += list(
            zip(lab[pool].tolist(), keys.tolist(), rows.tolist(), cols.tolist(), strict=True)
        )
    return out


def selected_pixels(sel_dir) -> dict[tuple[int, int], int]:
    with rasterio.open(sel_dir / "scene.tif") as src:
        a = src.read(1)
    rr, cc = np.nonzero(a)
    return {(r, c): int(a[r, c]) - 1 for r, c in zip(rr.tolist(), cc.tolist(), strict=True)}


@settings(
    max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    seed=st.integers(0, 10_000),
    x=st.lists(st.floats(0, 100), min_size=C, max_size=C),
    kind=st.sampled_from(["true_class", "max_prob", "margin", "entropy"]),
    fold=st.integers(0, 2),
)
def test_top_selects_exactly_the_highest_keys_per_class(
    small_tiles, tmp_path_factory, seed, x, kind, fold
):
    tmp = tmp_path_factory.mktemp("case")
    files = write_scores(small_tiles, tmp / "scores", seed)
    cfg = SelectionConfig(score=kind, direction="top", percent=x)
    out = select(files, small_tiles, tmp / "sel", cfg, fold, 0)
    got = selected_pixels(out)
    cands = brute_force(small_tiles, files, fold, kind)
    positions = [(r, c) for _, _, r, c in cands]
    assert len(positions) == len(set(positions))  # candidates: each scene pixel once
    report = artifacts.read_manifest(out)
    for c in range(C):
        mine = sorted([k for cl, k, _, _ in cands if cl == c])
        m = min(len(mine), round(x[c] * len(mine) / 100))
        expected = {
            (r, cc) for cl, k, r, cc in cands if cl == c and k in set(mine[len(mine) - m :])
        }
        assert {p for p, cl in got.items() if cl == c} == expected
        assert report["selected"][c] == m
    # pixel by pixel: every selected pixel belongs to a core of a training fold
    owner = {}
    for t in read_tiles(list(files.files)):
        r0, c0, h, w = t.core
        owner.update({(r, c): t.fold for r in range(r0, r0 + h) for c in range(c0, c0 + w)})
    assert {owner[p] for p in got} <= set(training_folds(fold, small_tiles.folds))
    # weights in the tiles follow the raster, margins included
    for t in read_tiles([out / f for f in artifacts.read_manifest(out)["files"]]):
        rows, cols = np.nonzero(t.weight > 0)
        assert all(
            (r + t.row, c + t.col) in got for r, c in zip(rows.tolist(), cols.tolist(), strict=True)
        )


@settings(
    max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(seed=st.integers(0, 10_000), frac=st.floats(0, 1))
def test_top_and_bottom_are_complementary(small_tiles, tmp_path_factory, seed, frac):
    tmp = tmp_path_factory.mktemp("comp")
    files = write_scores(small_tiles, tmp / "scores", seed)
    cands = brute_force(small_tiles, files, 1, "true_class")
    n = [sum(1 for cl, *_ in cands if cl == c) for c in range(C)]
    m = [round(frac * k) for k in n]
    top = SelectionConfig(
        direction="top", percent=[100 * mi / ni if ni else 0 for mi, ni in zip(m, n, strict=True)]
    )
    bottom = SelectionConfig(
        direction="bottom",
        percent=[100 * (ni - mi) / ni if ni else 0 for mi, ni in zip(m, n, strict=True)],
    )
    a = selected_pixels(select(files, small_tiles, tmp / "top", top, 1, 0))
    b = selected_pixels(select(files, small_tiles, tmp / "bottom", bottom, 1, 0))
    assert not set(a) & set(b)
    assert set(a) | set(b) == {(r, c) for _, _, r, c in cands}


def test_short_classes_give_all_they_have_and_band_and_min_kept(small_tiles, tmp_path):
    files = write_scores(small_tiles, tmp_path / "scores", 1)
    cands = brute_force(small_tiles, files, 0, "true_class", correct_only=True)
    cfg = SelectionConfig(direction="top", percent=90, correct_only=True)
    out = select(files, small_tiles, tmp_path / "s1", cfg, 0, 0)
    import json

    rep = json.loads((out / "selection.json").read_text())
    for name, pc in rep["per_class"].items():
        pool = sum(1 for cl, *_ in cands if cl == int(name[1:]))
        assert pc["pool"] == pool
        assert pc["selected"] == min(pool, pc["asked"])
        assert pc["short"] == (pc["asked"] > pool)
    assert any(pc["short"] for pc in rep["per_class"].values())  # random scores: few correct pixels
    band = select(
        files, small_tiles, tmp_path / "s2", SelectionConfig(direction="band", band=(25, 75)), 0, 0
    )
    rep = json.loads((band / "selection.json").read_text())
    for pc in rep["per_class"].values():
        assert pc["selected"] == int(np.floor(0.75 * pc["pool"])) - int(np.floor(0.25 * pc["pool"]))
    kept = select(
        files,
        small_tiles,
        tmp_path / "s3",
        SelectionConfig(direction="bottom", percent=0, min_kept=7),
        0,
        0,
    )
    rep = json.loads((kept / "selection.json").read_text())
    assert all(pc["selected"] == min(7, pc["pool"]) for pc in rep["per_class"].values())


def test_emphasis_weights_and_jaccard_with_the_previous_round(small_tiles, tmp_path):
    files = write_scores(small_tiles, tmp_path / "scores", 2)
    cfg = SelectionConfig(direction="top", percent=30, weighting="emphasis", emphasis=2.0)
    first = select(files, small_tiles, tmp_path / "a", cfg, 0, 0)
    again = select(files, small_tiles, tmp_path / "b", cfg, 0, 1, previous=first)
    again = again.path
    import json

    rep = json.loads((again / "selection.json").read_text())
    assert all(pc["jaccard_previous"] == 1.0 for pc in rep["per_class"].values() if pc["selected"])
    weights = np.concatenate(
        [t.weight.ravel() for t in read_tiles(sorted(again.glob("part-*.tfrecord.gz")))]
    )
    assert set(np.unique(weights).tolist()) == {1.0, 3.0}
    other = select(
        write_scores(small_tiles, tmp_path / "s2", 3),
        small_tiles,
        tmp_path / "c",
        cfg,
        0,
        1,
        previous=first,
    )
    rep = json.loads((other / "selection.json").read_text())
    assert all(pc["jaccard_previous"] < 1.0 for pc in rep["per_class"].values() if pc["selected"])


def test_rank_range_and_growth():
    assert rank_range(SelectionConfig(direction="top", percent=10), 10, 200, 150) == (130, 150, 20)
    assert rank_range(
        SelectionConfig(direction="bottom", percent=10, min_kept=30), 10, 200, 150
    ) == (0, 30, 30)
    assert rank_range(SelectionConfig(direction="top"), 50, 200, 40)[:2] == (0, 40)
    g = SelectionConfig(grow={"start": 20, "step": 5, "max": 50})
    assert [g.percent_for(s, 2)[0] for s in (0, 1, 6, 7)] == [20, 25, 50, 50]


def test_scores_are_confidences_in_unit_range():
    p = np.array([[0.7, 0.2, 0.1], [1 / 3, 1 / 3, 1 / 3]], np.float32)
    lab = np.array([1, 0])
    np.testing.assert_allclose(pixel_scores(p, lab, "true_class"), [0.2, 1 / 3], rtol=1e-6)
    np.testing.assert_allclose(pixel_scores(p, lab, "margin"), [0.5, 0], atol=1e-6)
    ent = pixel_scores(p, lab, "entropy")
    assert 0 < ent[0] < 1 and abs(ent[1]) < 1e-6
    keys = pixel_keys(quantize(np.zeros(1000)), 0, np.arange(1000) // 40, np.arange(1000) % 40)
    assert len(set(keys.tolist())) == 1000


def test_layout_of_selection_lives_in_rounds(tmp_path):
    assert (
        layout.selection_dir(tmp_path, 2, 1) == tmp_path / "rounds" / "r2" / "fold1" / "selection"
    )
