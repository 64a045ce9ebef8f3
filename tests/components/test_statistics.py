"""Statistics: per-band figures equal numpy's over valid core pixels; classes counted once."""

from pathlib import Path

import numpy as np
import pytest

from reseg import layout
from reseg.artifacts import Stats, TileSet
from reseg.components.statistics import percentile_from_hist
from reseg.config import parse_config
from reseg.tfrecords_schema import read_tiles
from tests.components.roots import compute_stats, tile
from tests.rasters import config_dict, scene, write_raster


def core_pixels(ts: TileSet):
    px, labels = [], []
    for t in read_tiles(list(ts.files)):
        rs, cs = t.core_slice()
        v = t.valid[rs, cs].astype(bool)
        px.append(t.image[rs, cs][v].astype(np.float64))
        labels.append(t.label[rs, cs])
    return np.concatenate(px), np.concatenate([lab.ravel() for lab in labels])


def test_integer_bands_give_exact_percentiles(tmp_path):
    img, lab = scene(tmp_path, height=90, width=75, bands=3, dtype="uint16")
    cfg = parse_config(config_dict(img, lab))
    tile(cfg, tmp_path)
    st = compute_stats(cfg, tmp_path)
    px, labels = core_pixels(TileSet.load(layout.tiles_dir(tmp_path)))
    assert st.valid_pixels == 90 * 75 == len(px)
    for b, band in enumerate(st.bands):
        assert band.mean == pytest.approx(px[:, b].mean(), rel=1e-9)
        assert band.std == pytest.approx(px[:, b].std(), rel=1e-9)
        assert (band.min, band.max) == (px[:, b].min(), px[:, b].max())
        assert band.p2 == pytest.approx(np.percentile(px[:, b], 2), abs=1e-9)
        assert band.p98 == pytest.approx(np.percentile(px[:, b], 98), abs=1e-9)
    np.testing.assert_array_equal(st.class_pixels, np.bincount(labels[labels != 255], minlength=3))
    tiles_counts = TileSet.load(layout.tiles_dir(tmp_path)).manifest["counts"][
        "class_pixels_per_fold"
    ]
    assert [list(r) for r in st.class_pixels_per_fold] == tiles_counts
    assert (st.path / "class_pixels.png").stat().st_size > 1000


def test_float_bands_with_nodata(tmp_path):
    rng = np.random.default_rng(5)
    img = rng.normal(0.3, 0.1, (2, 50, 40)).astype("float32")
    img[:, :10] = -1
    write_raster(tmp_path / "i.tif", img, nodata=-1)
    write_raster(tmp_path / "l.tif", np.zeros((50, 40), "uint8"))
    cfg = parse_config(config_dict(tmp_path / "i.tif", tmp_path / "l.tif", classes=2))
    tile(cfg, tmp_path)
    st = compute_stats(cfg, tmp_path)
    valid = img[:, 10:].reshape(2, -1).astype(np.float64)
    assert st.valid_pixels == valid.shape[1]
    for b in range(2):
        width = (valid[b].max() - valid[b].min()) / 65536
        assert st.bands[b].mean == pytest.approx(valid[b].mean(), rel=1e-9)
        assert st.bands[b].p98 == pytest.approx(np.percentile(valid[b], 98), abs=2 * width)
    assert Stats.load(layout.stats_dir(tmp_path)).mean.shape == (2,)


def test_percentile_from_histogram_matches_numpy_on_integers():
    rng = np.random.default_rng(0)
    values = rng.integers(10, 60, 1001)
    hist = np.bincount(values - 10, minlength=50)
    for p in (0, 2, 37.5, 50, 98, 100):
        assert percentile_from_hist(hist, 10, 1.0, p, True) == pytest.approx(
            np.percentile(values, p)
        )


def test_intermediate_results_are_arrays_that_cannot_run_code(tmp_path):
    """The Beam job's intermediate files are `.npz` read without pickle: a file another
    writer of a shared root puts in their place is refused, not executed."""
    from reseg.components.statistics import _load_hists, _load_moments, _Save

    moments = {"n": 5, "mean": np.arange(3.0), "classes": np.ones((2, 3), np.int64)}
    _Save(str(tmp_path / "m.npz")).process(moments)
    back = _load_moments(tmp_path / "m.npz")
    assert back["n"] == 5 and np.array_equal(back["classes"], moments["classes"])
    _Save(str(tmp_path / "h.npz")).process([np.arange(4), np.arange(2)])
    assert [h.tolist() for h in _load_hists(tmp_path / "h.npz")] == [[0, 1, 2, 3], [0, 1]]

    class Payload:
        def __reduce__(self):
            return (Path.touch, (tmp_path / "pwned",))

    np.savez(tmp_path / "evil.npz", n=np.array([Payload()], dtype=object))
    with pytest.raises(ValueError, match="allow_pickle=False"):
        _load_moments(tmp_path / "evil.npz")
    assert not (tmp_path / "pwned").exists()
