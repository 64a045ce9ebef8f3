"""Artifacts: `stage()`/`publish()` semantics, manifests, fingerprints, typed `load()`.

Everything here works on real directories in `tmp_path`; no TensorFlow is needed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from reseg import artifacts, layout
from reseg.artifacts import (
    ArtifactError,
    BandStats,
    Export,
    Merged,
    Metrics,
    Model,
    ModelInfo,
    Predictions,
    Scores,
    Selection,
    Stats,
    TileSet,
    fingerprint,
    is_current,
    read_manifest,
    stage,
    staging_dir,
)
from reseg.errors import InputError, ResegError

REPO = Path(__file__).resolve().parents[1]


def _siblings(final: Path) -> list[str]:
    return sorted(p.name for p in final.parent.iterdir())


# --- fingerprint ------------------------------------------------------------------------


def test_fingerprint_is_a_16_hex_digest_stable_across_processes():
    parts = ("score", 1, "abc", ["part-0.tfrecord.gz", "part-1.tfrecord.gz"], 2, {"b": 1, "a": 2})
    fp = fingerprint(*parts)
    assert len(fp) == 16 and int(fp, 16) >= 0
    assert fingerprint(*parts) == fp
    # a fresh interpreter (another hash seed) gives the same value: it does not use hash()
    code = (
        "from reseg.artifacts import fingerprint;"
        "print(fingerprint('score', 1, 'abc', ['part-0.tfrecord.gz', 'part-1.tfrecord.gz'], 2,"
        " {'a': 2, 'b': 1}))"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == fp
    # pinned: the hash is sha256 over sorted-key JSON; a change here invalidates every root
    assert fingerprint("x", 1) == "38e37cb98808b9cc"
    assert fingerprint("score", 1, "abc", ["p"], {"a": [1, 2]}) == "198683337d4880ac"


def test_fingerprint_is_order_sensitive_in_parts_and_lists_but_not_in_dict_keys():
    assert fingerprint("a", "b") != fingerprint("b", "a")
    assert fingerprint(["a", "b"]) != fingerprint(["b", "a"])
    assert fingerprint({"a": 1, "b": 2}) == fingerprint({"b": 2, "a": 1})
    assert fingerprint(1) != fingerprint("1")
    assert fingerprint([1, 2]) != fingerprint(1, 2)
    # non-JSON values go through str(): a Path and its text give the same fingerprint
    assert fingerprint(Path("a/b")) == fingerprint("a/b")
    assert fingerprint(None) != fingerprint(0)


# --- stage / publish --------------------------------------------------------------------


def test_stage_publishes_by_rename_with_the_manifest_written_last(tmp_path):
    final = tmp_path / "art"
    with stage(final, "f" * 16, "demo", config_json='{"k": 1}') as st:
        assert st.dir == staging_dir(final, "f" * 16)
        assert st.dir.name == "art.tmp-ffffffffffff"
        (st.dir / "data.txt").write_text("payload")
        # while the block runs nothing is published and no manifest exists anywhere
        assert not final.exists()
        assert not (st.dir / artifacts.MANIFEST).exists()
        assert not is_current(final, "f" * 16)
        st.manifest.update(files=["data.txt"], counts={"n": 3})
    assert _siblings(final) == ["art"]  # staging dir renamed into place
    assert (final / "data.txt").read_text() == "payload"
    assert json.loads((final / artifacts.CONFIG).read_text()) == {"k": 1}
    m = read_manifest(final)
    assert m["fingerprint"] == "f" * 16
    assert m["step"] == "demo"
    assert isinstance(m["seconds"], float) and m["seconds"] >= 0
    assert m["files"] == ["data.txt"] and m["counts"] == {"n": 3}
    assert "published_at" in m
    # the manifest is the last file written: no file of the artifact is newer than it
    newest = max(p.stat().st_mtime_ns for p in final.iterdir())
    assert (final / artifacts.MANIFEST).stat().st_mtime_ns == newest
    assert not list(final.glob("*.partial"))
    assert is_current(final, "f" * 16)
    assert not is_current(final, "e" * 16)


def test_a_crash_keeps_the_staging_dir_and_the_rerun_resumes_from_it(tmp_path):
    final = tmp_path / "art"
    fp = "1234567890abcdef"
    with pytest.raises(RuntimeError, match="killed"):
        with stage(final, fp, "demo") as st:
            (st.dir / "done-part").write_text("kept")
            raise RuntimeError("killed")
    tmp = tmp_path / "art.tmp-1234567890ab"
    assert tmp.is_dir() and (tmp / "done-part").read_text() == "kept"
    assert not final.exists()
    with stage(final, fp, "demo") as st:
        assert st.dir == tmp
        resumed = sorted(p.name for p in st.dir.iterdir())
        (st.dir / "rest").write_text("new")
    assert resumed == ["done-part"]
    assert sorted(p.name for p in final.iterdir()) == ["done-part", artifacts.MANIFEST, "rest"]
    assert _siblings(final) == ["art"]


def test_a_user_error_removes_the_staging_dir(tmp_path):
    final = tmp_path / "art"
    with pytest.raises(InputError):
        with stage(final, "a" * 16, "demo") as st:
            (st.dir / "half").write_text("x")
            raise InputError("scene.tif: bad")
    assert _siblings(final) == []
    assert issubclass(InputError, ResegError)


def test_clear_files_drops_files_but_keeps_folders(tmp_path):
    final = tmp_path / "art"
    with pytest.raises(KeyboardInterrupt):
        with stage(final, "c" * 16, "demo") as st:
            (st.dir / "part-0.tfrecord.gz").write_text("x")
            (st.dir / "sub").mkdir()
            (st.dir / "sub" / "keep").write_text("y")
            raise KeyboardInterrupt
    with stage(final, "c" * 16, "demo") as st:
        st.clear_files()
        left = sorted(p.name for p in st.dir.iterdir())
    assert left == ["sub"]
    assert (final / "sub" / "keep").read_text() == "y"


def test_publish_replaces_an_older_version_and_removes_stale_staging_dirs(tmp_path):
    final = tmp_path / "art"
    with stage(final, "1" * 16, "demo") as st:
        (st.dir / "old-only").write_text("v1")
        (st.dir / "both").write_text("v1")
    # a crashed run with other inputs leaves its staging directory behind
    with pytest.raises(RuntimeError):
        with stage(final, "2" * 16, "demo") as st:
            (st.dir / "both").write_text("crashed")
            raise RuntimeError("crash")
    assert _siblings(final) == ["art", "art.tmp-222222222222"]
    # an unrelated sibling that merely shares a prefix is not touched
    (tmp_path / "artwork.tmp-999999999999").mkdir()
    with stage(final, "3" * 16, "demo") as st:
        (st.dir / "both").write_text("v3")
    assert _siblings(final) == ["art", "artwork.tmp-999999999999"]
    assert sorted(p.name for p in final.iterdir()) == ["both", artifacts.MANIFEST]
    assert (final / "both").read_text() == "v3"
    assert read_manifest(final)["fingerprint"] == "3" * 16


def test_the_manifest_keeps_the_blocks_entries_beside_the_standard_ones(tmp_path):
    final = tmp_path / "art"
    with stage(final, "d" * 16, "score") as st:
        st.manifest["round"] = 2
        st.manifest["array"] = np.arange(3)  # numpy values are written as JSON
        st.manifest["count"] = np.int64(7)
    m = read_manifest(final)
    assert (m["round"], m["array"], m["count"]) == (2, [0, 1, 2], 7)
    assert {"fingerprint", "step", "seconds", "published_at"} <= set(m)


# --- read_manifest / is_current ---------------------------------------------------------


def test_read_manifest_of_a_missing_artifact_is_a_one_line_error_naming_it(tmp_path):
    path = tmp_path / "rounds" / "r0" / "fold0" / "scores"
    with pytest.raises(ArtifactError) as e:
        read_manifest(path)
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg and artifacts.MANIFEST in msg
    path.mkdir(parents=True)  # a directory without manifest: an unfinished step
    with pytest.raises(ArtifactError, match="no manifest.json"):
        read_manifest(path)
    assert not is_current(path, "0" * 16)


def test_read_manifest_of_a_corrupt_manifest_is_a_one_line_error_naming_the_file(tmp_path):
    (tmp_path / artifacts.MANIFEST).write_text('{"fingerprint": "abc",\n  ')
    with pytest.raises(ArtifactError) as e:
        read_manifest(tmp_path)
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith(f"{tmp_path / artifacts.MANIFEST}: corrupt manifest")
    assert not is_current(tmp_path, "abc")


def test_is_current_compares_the_fingerprint(tmp_path):
    artifacts.write_json(tmp_path / artifacts.MANIFEST, {"fingerprint": "abc"})
    assert is_current(tmp_path, "abc")
    assert not is_current(tmp_path, "abd")
    artifacts.write_json(tmp_path / artifacts.MANIFEST, {"step": "x"})
    assert not is_current(tmp_path, "abc")


# --- typed load() -----------------------------------------------------------------------


def _manifest(path: Path, **entries) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    artifacts.write_json(path / artifacts.MANIFEST, {"fingerprint": "fp-" + path.name, **entries})
    return path


def test_tileset_load(tmp_path):
    path = _manifest(
        tmp_path / "tiles",
        files=["part-00000.tfrecord.gz", "part-00001.tfrecord.gz"],
        image_dtype="uint16",
        bands=4,
        num_classes=3,
        class_names=["a", "b", "c"],
        class_colors=["#000000", "#111111", "#222222"],
        folds=5,
        tile_size=64,
        overlap=16,
    )
    ts = TileSet.load(path)
    assert ts.files == (path / "part-00000.tfrecord.gz", path / "part-00001.tfrecord.gz")
    assert (ts.image_dtype, ts.bands, ts.num_classes, ts.folds) == ("uint16", 4, 3, 5)
    assert (ts.tile_size, ts.overlap, ts.fingerprint) == (64, 16, "fp-tiles")
    assert ts.class_names == ("a", "b", "c") and ts.class_colors[2] == "#222222"


def test_stats_load_and_its_missing_file(tmp_path):
    path = _manifest(tmp_path / "stats")
    band = {"mean": 10.0, "std": 0.0, "min": 1.0, "max": 20.0, "p2": 2.0, "p98": 19.0}
    with pytest.raises(ArtifactError, match=f"{path / layout.STATS_JSON}: missing"):
        Stats.load(path)
    (path / layout.STATS_JSON).write_text(
        json.dumps(
            {
                "bands": [band, {**band, "mean": 30.0, "std": 2.5}],
                "class_pixels": [5, 6],
                "class_pixels_per_fold": [[2, 3], [3, 3]],
                "valid_pixels": 11,
            }
        )
    )
    s = Stats.load(path)
    assert s.bands[0] == BandStats(**band)
    assert s.class_pixels == (5, 6) and s.class_pixels_per_fold == ((2, 3), (3, 3))
    assert s.valid_pixels == 11 and s.fingerprint == "fp-stats"
    np.testing.assert_array_equal(s.mean, np.array([10.0, 30.0], np.float32))
    # a zero standard deviation is floored so normalising never divides by zero
    np.testing.assert_array_equal(s.std, np.array([1e-6, 2.5], np.float32))


def _info(**kw) -> ModelInfo:
    base = dict(
        bands=4,
        image_dtype="uint16",
        mean=(1.0, 2.0, 3.0, 4.0),
        std=(5.0, 6.0, 7.0, 8.0),
        class_names=("a", "b"),
        class_colors=("#000000", "#ffffff"),
        output_stride=2,
        tile_size=64,
        architecture="unet",
    )
    return ModelInfo(**{**base, **kw})


def test_model_load_reads_model_json(tmp_path):
    path = _manifest(tmp_path / "model", fold=0)
    with pytest.raises(ArtifactError, match="not a reseg model directory"):
        Model.load(path)
    info = _info(nodata=0.0, band_indexes=(3, 1, 2, 4), label_values={"10": 0, "20": 1})
    info.save(path)
    m = Model.load(path)
    assert m.info == info
    assert m.fingerprint == "fp-model" and m.manifest["fold"] == 0
    assert m.keras_file == path / layout.MODEL_KERAS
    assert os.fspath(m) == str(path) and m / "x" == path / "x"
    # unknown keys written by a newer reseg are ignored
    d = json.loads((path / layout.MODEL_JSON).read_text())
    (path / layout.MODEL_JSON).write_text(json.dumps({**d, "future": 1}))
    assert ModelInfo.load(path) == info


def test_scores_load(tmp_path):
    path = _manifest(tmp_path / "scores", files=["part-b.tfrecord.gz", "part-a.tfrecord.gz"])
    s = Scores.load(path)
    assert s.files == (path / "part-b.tfrecord.gz", path / "part-a.tfrecord.gz")
    assert s.fingerprint == "fp-scores" and s.path == path


def test_metrics_load_and_its_corrupt_file(tmp_path):
    path = _manifest(tmp_path / "eval")
    (path / layout.METRICS_JSON).write_text("{not json")
    with pytest.raises(ArtifactError) as e:
        Metrics.load(path)
    assert str(e.value).startswith(f"{path / layout.METRICS_JSON}: corrupt JSON")
    values = {
        "mean_iou": 0.5,
        "overall_accuracy": 0.75,
        "kappa": 0.25,
        "per_class": {"a": {"iou": 0.5}},
    }
    (path / layout.METRICS_JSON).write_text(json.dumps(values))
    m = Metrics.load(path)
    assert (m.mean_iou, m.overall_accuracy, m.kappa) == (0.5, 0.75, 0.25)
    assert m.per_class == {"a": {"iou": 0.5}} and m.values == values


def test_selection_load(tmp_path):
    path = _manifest(tmp_path / "selection", files=["part-0.tfrecord.gz"])
    (path / layout.SELECTION_JSON).write_text(json.dumps({"per_class": {"c0": {"selected": 4}}}))
    s = Selection.load(path)
    assert s.report == {"per_class": {"c0": {"selected": 4}}}
    assert s.files == (path / "part-0.tfrecord.gz",)


def test_merged_load_reads_spec_scores_and_methods(tmp_path):
    path = _manifest(tmp_path / "fold0", method="vote", weights=[1, 2])
    (path / layout.MERGED_JSON).write_text(
        json.dumps({"method": "vote", "members": [{"model": "../../rounds/r0/fold0/model"}]})
    )
    with pytest.raises(ArtifactError, match="scores: no manifest.json"):
        Merged.load(path)
    scores = _manifest(path / "scores", files=["part-0.tfrecord.gz"])
    with pytest.raises(ArtifactError, match=f"{scores / layout.METHODS_JSON}: missing"):
        Merged.load(path)
    (scores / layout.METHODS_JSON).write_text(
        json.dumps({"weights": [1, 2], "methods": {"vote": {"mean_iou": 0.4}}})
    )
    m = Merged.load(path)
    assert m.spec["method"] == "vote" and m.spec["members"][0]["model"].endswith("r0/fold0/model")
    assert m.scores == Scores.load(scores) and m.scores.files == (scores / "part-0.tfrecord.gz",)
    assert m.methods == {"vote": {"mean_iou": 0.4}}
    assert m.fingerprint == "fp-fold0" and m.manifest["weights"] == [1, 2]


def test_export_load_and_version(tmp_path):
    e = Export.load(_manifest(tmp_path / "export" / "reseg" / "7"))
    assert e.version == 7 and e.fingerprint == "fp-7"


def test_predictions_load_and_outputs(tmp_path):
    path = _manifest(
        tmp_path / "predictions",
        scenes=[{"scene": "s1", "outputs": {"classes": "s1.tif", "confidence": "s1.conf.tif"}}],
    )
    p = Predictions.load(path)
    assert p.scenes[0]["scene"] == "s1"
    assert p.outputs("s1") == {"classes": path / "s1.tif", "confidence": path / "s1.conf.tif"}
    with pytest.raises(ArtifactError) as e:
        p.outputs("s2")
    assert str(e.value) == f"{path}: no scene 's2' (have ['s1'])"


@pytest.mark.parametrize("kind", [TileSet, Stats, Model, Scores, Metrics, Selection, Merged])
def test_every_kind_refuses_a_directory_without_manifest(tmp_path, kind):
    with pytest.raises(ArtifactError) as e:
        kind.load(tmp_path / "nothing")
    assert str(e.value).startswith(f"{tmp_path / 'nothing'}")
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("text", ["[]", "null", '"fingerprint"', "3"])
def test_a_manifest_that_is_not_a_json_object_is_corrupt(tmp_path, text):
    (tmp_path / artifacts.MANIFEST).write_text(text)
    with pytest.raises(ArtifactError) as e:
        read_manifest(tmp_path)
    assert str(e.value).startswith(f"{tmp_path / artifacts.MANIFEST}: corrupt manifest")
    assert not is_current(tmp_path, "fingerprint")
