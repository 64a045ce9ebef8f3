"""Pseudo-labels: scene roles in the tiles, per-class counts that follow x and the schedule,
pseudo-labels equal to the argmax, target labels that change nothing but the report."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio

from reseg import artifacts, layout
from reseg.artifacts import TileSet
from reseg.components.pseudo import pseudo_label
from reseg.components.selector import pixel_keys, pixel_scores, quantize
from reseg.config import parse_config
from reseg.config.rounds import PseudoConfig
from reseg.errors import ConfigError
from reseg.folds import training_folds
from reseg.tfrecords_schema import TFRecordShardWriter, encode, read_tiles
from reseg.tfrecords_schema.schema import ROLE_LABELLED, ROLE_TARGET, ROLE_UNLABELLED
from tests.components.roots import tile
from tests.rasters import config_dict, scene

C = 3
FOLD = 0


def roles_config(tmp, **rounds):
    a, b, c = (scene(tmp, n, height=45, width=52, classes=C, seed=s) for s, n in enumerate("abc"))
    raw = config_dict(*a, classes=C, tile_size=16, overlap=4, folds=3, block_size=24)
    raw["data"]["scenes"] = [
        {
            "image": str(a[0]),
            "labels": str(a[1]),
            "target_blocks": {"rows": [0, 1], "cols": [1, 2]},
        },
        {"image": str(b[0]), "role": "unlabelled"},
        {"image": str(c[0]), "labels": str(c[1]), "role": "target"},
    ]
    if rounds:
        raw["rounds"] = rounds
    return parse_config(raw), {"a": a, "b": b, "c": c}


@pytest.fixture(scope="module")
def roles_tiles(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pseudo")
    cfg, files = roles_config(tmp)
    return tile(cfg, tmp / "root"), files


def read(path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read(1)


def write_scores(tiles: TileSet, out, seed: int, shards: int = 1, order_seed=None, target=None):
    """Random probabilities per tile (seeded by tile key, so shard order does not matter);
    `target(t)` may replace a tile's target labels."""
    out.mkdir(parents=True, exist_ok=True)
    ts = list(read_tiles(list(tiles.files)))
    if order_seed is not None:
        np.random.default_rng(order_seed).shuffle(ts)
    paths = [out / f"part-{i}.tfrecord.gz" for i in range(shards)]
    writers = [TFRecordShardWriter(p) for p in paths]
    for n, t in enumerate(ts):
        rng = np.random.default_rng([seed, t.row, t.col, ord(t.scene)])
        p = rng.gamma(0.6, size=(*t.label.shape, C)).astype(np.float32) + 1e-3
        t = t.with_scores(p / p.sum(-1, keepdims=True), 0)
        if target is not None and t.target is not None:
            from dataclasses import replace

            t = replace(t, target=target(t))
        writers[n % shards].write(encode(t))
    for w in writers:
        w.close()
    fp = f"random-{seed}-{order_seed}-{target is not None}"
    artifacts.write_json(
        out / artifacts.MANIFEST, {"fingerprint": fp, "files": [p.name for p in paths]}
    )
    return artifacts.Scores.load(out)


def brute_pool(tiles: TileSet, scores: artifacts.Scores, fold, kind="max_prob"):
    """Every pool pixel's (predicted class, key, scene, row, col), without the component's passes."""
    ids = {s["id"]: i for i, s in enumerate(tiles.manifest["scenes"])}
    folds = training_folds(fold, tiles.folds)
    out = []
    for t in read_tiles(list(scores.files)):
        rs, cs = t.core_slice()
        roles = t.roles()[rs, cs]
        pool = np.isin(roles, [ROLE_UNLABELLED, ROLE_TARGET]) & (t.valid[rs, cs] > 0)
        pool &= np.isin(t.fold_map[rs, cs], folds)
        probs = t.probs[rs, cs]
        pred = probs.argmax(-1)
        q = quantize(pixel_scores(probs, pred, kind))
        rr, cc = np.nonzero(pool)
        rows, cols = rr + rs.start + t.row, cc + cs.start + t.col
        keys = pixel_keys(q[pool], ids[t.scene], rows, cols)
        for c_, k, r, col in zip(pred[pool], keys, rows, cols, strict=True):
            out.append((int(c_), int(k), t.scene, int(r), int(col)))
    return out


def test_tiles_keep_target_and_unlabelled_labels_out_of_label_raw(roles_tiles):
    ts, files = roles_tiles
    src = {s: read(files[s][1]) for s in "ac"}
    seen = {ROLE_LABELLED: 0, ROLE_UNLABELLED: 0, ROLE_TARGET: 0}
    for t in read_tiles(list(ts.files)):
        roles = t.roles()
        inside = roles != 255
        for r in seen:
            seen[r] += int((roles == r).sum())
        assert (t.label[roles != ROLE_LABELLED] == 255).all()
        h, w = t.label.shape
        if t.scene == "b":
            assert t.target is None and (roles[inside] == ROLE_UNLABELLED).all()
            continue
        window = np.full((h, w), 255, np.uint8)
        s = src[t.scene][t.row : t.row + h, t.col : t.col + w]
        window[: s.shape[0], : s.shape[1]] = s
        np.testing.assert_array_equal(
            t.label[roles == ROLE_LABELLED], window[roles == ROLE_LABELLED]
        )
        np.testing.assert_array_equal(t.target[roles == ROLE_TARGET], window[roles == ROLE_TARGET])
        assert (t.target[roles != ROLE_TARGET] == 255).all()
        if t.scene == "c":
            assert (roles[inside] == ROLE_TARGET).all()
    assert all(seen.values())
    # the region of scene a: block rows [0, 1), cols [1, 2) of 24-px blocks (2 cores of 12 px)
    a = {(t.row, t.col): t for t in read_tiles(list(ts.files)) if t.scene == "a"}
    assert (a[(0, 24)].roles()[a[(0, 24)].core_slice()] == ROLE_TARGET).all()
    assert (a[(0, 0)].roles()[a[(0, 0)].core_slice()] == ROLE_LABELLED).all()
    # class counts (statistics, class weights) see only labelled pixels; target counted apart
    counts = ts.manifest["counts"]
    labelled = np.array(counts["class_pixels_per_fold"]).sum()
    target = sum(counts["target_class_pixels"])
    assert labelled + target == 2 * 45 * 52 and 45 * 52 < target
    assert [s["role"] for s in ts.manifest["scenes"]] == ["labelled", "unlabelled", "target"]


@pytest.mark.parametrize(
    ("cfg", "index", "x"),
    [
        (PseudoConfig(percent=30), 0, 30),
        (PseudoConfig(grow={"start": 20, "step": 5, "max": 50}), 0, 20),
        (PseudoConfig(grow={"start": 20, "step": 5, "max": 50}), 3, 35),
        (PseudoConfig(grow={"start": 20, "step": 5, "max": 50}), 9, 50),
    ],
)
def test_counts_follow_x_and_the_schedule_and_labels_are_the_argmax_top(
    roles_tiles, tmp_path, cfg, index, x
):
    ts, _ = roles_tiles
    scores = write_scores(ts, tmp_path / "scores", seed=1)
    out = pseudo_label(scores, ts, tmp_path / "pseudo", cfg, FOLD, index)
    pool = brute_pool(ts, scores, FOLD)
    picked = {}
    for c in range(C):
        members = sorted((k, s, r, col) for c_, k, s, r, col in pool if c_ == c)
        m = int(round(x * len(members) / 100))
        pc = out.report["per_class"][f"c{c}"]
        assert pc["pixels"] == len(members) and pc["percent"] == x
        assert pc["selected"] == m > 0
        picked.update({(s, r, col): c for _, s, r, col in members[len(members) - m :]})
    # the rasters hold exactly the m_c highest keys of each predicted class, labelled c + 1
    rasters = {s: read(out.path / f"{s}.tif") for s in "abc"}
    marked = {
        (s, int(r), int(col)): int(v) - 1
        for s, a in rasters.items()
        for r, col, v in zip(*np.nonzero(a), a[np.nonzero(a)], strict=True)
    }
    assert marked == picked


def test_floor_keeps_only_scores_above_it(roles_tiles, tmp_path):
    ts, _ = roles_tiles
    scores = write_scores(ts, tmp_path / "scores", seed=2)
    cfg = PseudoConfig(percent=60, floor=0.8)
    out = pseudo_label(scores, ts, tmp_path / "pseudo", cfg, FOLD, 0)
    pool = brute_pool(ts, scores, FOLD)
    short = 0
    for c in range(C):
        qs = [k >> 48 for c_, k, *_ in pool if c_ == c]
        above = sum(q >= round(0.8 * 65535) for q in qs)
        pc = out.report["per_class"][f"c{c}"]
        assert pc["selected"] == min(round(0.6 * len(qs)), above)
        assert pc["selected"] == 0 or pc["score_min"] >= 0.8
        short += pc["short"]
    assert short  # the floor bit somewhere, so the test checks the floor, not only x


def test_target_labels_change_the_report_only(roles_tiles, tmp_path):
    """Pixel-level: other target labels (and another tile order) give the same pseudo-label
    rasters and the same training tiles; only the precision report moves."""
    ts, _ = roles_tiles
    cfg = PseudoConfig(percent=40, weight=0.5)
    a = pseudo_label(write_scores(ts, tmp_path / "s1", 3), ts, tmp_path / "p1", cfg, FOLD, 0)
    flip = lambda t: np.where(t.target == 255, 255, (t.target + 1) % C).astype(np.uint8)  # noqa: E731
    b_scores = write_scores(ts, tmp_path / "s2", 3, shards=3, order_seed=7, target=flip)
    b = pseudo_label(b_scores, ts, tmp_path / "p2", cfg, FOLD, 0)
    for s in "abc":
        np.testing.assert_array_equal(read(a.path / f"{s}.tif"), read(b.path / f"{s}.tif"))
    ta = {t.key: t for t in read_tiles(list(a.files))}
    tb = {t.key: t for t in read_tiles(list(b.files))}
    assert ta.keys() == tb.keys()
    for k, t in ta.items():
        np.testing.assert_array_equal(t.label, tb[k].label)
        np.testing.assert_array_equal(t.weight, tb[k].weight)
        assert t.target is None and tb[k].target is None
    pa, pb = a.report["per_class"], b.report["per_class"]
    assert [pa[n]["selected"] for n in pa] == [pb[n]["selected"] for n in pb]
    assert a.report["accuracy"] != b.report["accuracy"]


def test_training_tiles_are_labels_plus_weighted_pseudo_labels(roles_tiles, tmp_path):
    ts, _ = roles_tiles
    scores = write_scores(ts, tmp_path / "scores", seed=4)
    out = pseudo_label(
        scores, ts, tmp_path / "pseudo", PseudoConfig(percent=25, weight=0.5), FOLD, 0
    )
    rasters = {s: read(out.path / f"{s}.tif") for s in "abc"}
    src = {t.key: t for t in read_tiles(list(ts.files))}
    kept = 0
    for t in read_tiles(list(out.files)):
        kept += 1
        orig = src[t.key]
        h, w = t.label.shape
        pl = np.zeros((h, w), np.uint8)
        r = rasters[t.scene][t.row : t.row + h, t.col : t.col + w]
        pl[: r.shape[0], : r.shape[1]] = r
        lab = orig.label != 255
        assert not (lab & (pl > 0)).any()  # pseudo-labels only where no training label
        np.testing.assert_array_equal(t.label[lab], orig.label[lab])
        np.testing.assert_array_equal(t.label[pl > 0], pl[pl > 0] - 1)
        assert (t.label[~lab & (pl == 0)] == 255).all()
        np.testing.assert_array_equal(t.weight[lab], 1)
        np.testing.assert_array_equal(t.weight[pl > 0], 0.5)
        assert (t.weight > 0).any()
    assert kept == out.manifest["training_tiles"] < len(src)  # tiles with nothing to learn dropped


def test_jaccard_with_the_previous_round(roles_tiles, tmp_path):
    ts, _ = roles_tiles
    scores = write_scores(ts, tmp_path / "scores", seed=5)
    cfg = PseudoConfig(grow={"start": 20, "step": 20, "max": 60})
    first = pseudo_label(scores, ts, tmp_path / "p0", cfg, FOLD, 0)
    second = pseudo_label(scores, ts, tmp_path / "p1", cfg, FOLD, 1, previous=first)
    for name, pc in second.report["per_class"].items():
        # same scores, x 20% -> 40%: the first selection is inside the second
        assert pc["jaccard_previous"] == pytest.approx(
            first.report["per_class"][name]["selected"] / pc["selected"]
        )
    again = pseudo_label(scores, ts, tmp_path / "p1", cfg, FOLD, 1, previous=first)
    assert again.manifest["published_at"] == second.manifest["published_at"]  # resumed


def test_role_config_errors(tmp_path):
    a = scene(tmp_path, "a", height=45, width=52, classes=C)
    raw = config_dict(*a, classes=C)
    bad = [
        ({"image": str(a[0]), "labels": str(a[1]), "role": "unlabelled"}, "takes no `labels`"),
        ({"image": str(a[0]), "role": "target"}, "needs `labels`"),
        (
            {
                "image": str(a[0]),
                "role": "unlabelled",
                "target_blocks": {"rows": [0, 1], "cols": [0, 1]},
            },
            "region of a labelled",
        ),
    ]
    for spec, words in bad:
        raw["data"]["scenes"] = [{"image": str(a[0]), "labels": str(a[1]), "id": "ok"}, spec]
        with pytest.raises(ConfigError, match=words):
            parse_config(raw)
    raw["data"]["scenes"] = [{"image": str(a[0]), "role": "unlabelled"}]
    with pytest.raises(ConfigError, match="at least one scene needs role labelled"):
        parse_config(raw)
    raw["data"]["scenes"] = [{"image": str(a[0]), "labels": str(a[1])}]
    raw["rounds"] = {"pseudo": {"percent": 20}}
    with pytest.raises(ConfigError, match="rounds.pseudo needs pixels without training labels"):
        parse_config(raw)
    raw["rounds"] = {}
    raw["data"]["scenes"] = [
        {"image": str(a[0]), "labels": str(a[1]), "target_blocks": {"rows": [0, 9], "cols": [0, 1]}}
    ]
    cfg = parse_config(raw)
    with pytest.raises(ConfigError, match="run past the scene's"):
        tile(cfg, tmp_path / "root")
    assert not (tmp_path / "root" / layout.tiles_dir("").name).exists()


def test_target_evaluation_counts_every_target_pixel_once(roles_tiles, tmp_path):
    from reseg.components.target import evaluate_target
    from reseg.study.tilecm import target_tile_confusions

    ts, files = roles_tiles
    scores = write_scores(ts, tmp_path / "scores", seed=6)
    m = evaluate_target(scores, tmp_path / "target", [f"c{i}" for i in range(C)])
    # by hand: every scene pixel from the tile whose core owns it
    cm = np.zeros((C, C), np.int64)
    src = {s: read(files[s][1]) for s in "ac"}
    for t in read_tiles(list(scores.files)):
        if t.scene == "b":
            continue
        r, c, h, w = t.core
        pred = t.probs.argmax(-1)
        truth = src[t.scene][r : r + h, c : c + w]
        roles = t.roles()[r - t.row : r - t.row + h, c - t.col : c - t.col + w]
        p = pred[r - t.row : r - t.row + h, c - t.col : c - t.col + w]
        np.add.at(cm, (truth[roles == ROLE_TARGET], p[roles == ROLE_TARGET]), 1)
    # scene c whole, and a's block (0, 1): cores 0-1 down ([0, 26)), 2-3 across ([26, 52))
    assert m.values["confusion"] == cm.tolist() and m.values["pixels"] == 45 * 52 + 26 * 26
    keys, cms = target_tile_confusions(scores.path, C)
    np.testing.assert_array_equal(cms.sum(0), cm)
    assert len(keys) == len(set(keys.tolist()))
