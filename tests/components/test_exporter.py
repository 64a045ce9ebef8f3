"""The exporter: SavedModel contract, merged rounds in one graph, validation, versions, registry."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from reseg import layout, tracking
from reseg.artifacts import ModelInfo
from reseg.components.exporter import export_info
from reseg.errors import ArtifactError
from reseg.inference import normalise
from reseg.serving import contract as c
from reseg.serving import layout as tfs
from reseg.serving.backends import SavedModelBackend, load_backend
from reseg.serving.validate import validate_export
from tests.components.roots import export
from tests.serving.models import demo_info, rounds_root


def _cfg(demo_config, **export):
    return demo_config.model_copy(
        update={
            "export": demo_config.export.model_validate(export),
            "tracking": demo_config.tracking.model_validate({"enabled": True}),
        }
    )


@pytest.fixture(scope="module")
def exported(tmp_path_factory, demo_config, demo_root):
    """A root with two tiny untrained rounds of fold 0 merged (weighted 3:1), exported as
    version 1 (round 0, not validated) and version 2 (the merged rounds, validated)."""
    root = tmp_path_factory.mktemp("export_root")
    for name in ("tiles", "stats"):
        (root / name).symlink_to(demo_root / name, target_is_directory=True)
    rounds_root(root, demo_info(demo_root, demo_config), fold=0, method="weighted")
    v1 = export(_cfg(demo_config, validation=False), root, "r0")
    v2 = export(_cfg(demo_config), root, "merged")
    return root, v1, v2


def _tiles(root, n=3):
    from reseg.artifacts import TileSet
    from reseg.tfrecords_schema import read_tiles

    tiles = TileSet.load(layout.tiles_dir(root))
    got = [t for _, t in zip(range(n), read_tiles(list(tiles.files)), strict=False)]
    return np.stack([t.image for t in got]), np.stack([t.valid for t in got])


def test_signature_output_equals_keras_predict(exported):
    import keras
    import tensorflow as tf

    root, v1, _ = exported
    assert v1.path == layout.export_dir(root, "reseg") / "1"
    info = ModelInfo.load(v1 / "assets.extra")
    assert info == ModelInfo.load(layout.model_dir(root, 0, 0))
    model = keras.models.load_model(layout.model_dir(root, 0, 0) / "model.keras")
    images, valid = _tiles(root)
    assert images.dtype == np.float32 and images.shape[-1] == 5
    loaded = tf.saved_model.load(str(v1))
    assert {c.DEFAULT_SIGNATURE, c.MASKED_SIGNATURE, c.INFO_SIGNATURE} <= set(loaded.signatures)
    masked = loaded.signatures[c.MASKED_SIGNATURE](images=tf.constant(images), valid=valid)
    want = model.predict(normalise(images, valid, info), verbose=0)
    np.testing.assert_allclose(masked[c.PROBABILITIES].numpy(), want, atol=1e-5)
    # serving_default masks NaN and nodata itself, and returns uint8 classes
    holes = images.copy()
    holes[0, :4, :4, 2] = np.nan
    out = loaded.signatures[c.DEFAULT_SIGNATURE](images=tf.constant(holes))
    ok = ~np.isnan(holes).any(-1)
    want = model.predict(normalise(np.nan_to_num(holes), ok.astype(np.uint8), info), verbose=0)
    np.testing.assert_allclose(out[c.PROBABILITIES].numpy(), want, atol=1e-5)
    assert out[c.CLASSES].dtype == tf.uint8
    np.testing.assert_array_equal(out[c.CLASSES].numpy(), want.argmax(-1))
    # any H x W divisible by the output stride; others are refused with a message
    assert loaded.signatures[c.DEFAULT_SIGNATURE](images=images[:, :34, :20])[
        c.PROBABILITIES
    ].shape == (3, 34, 20, 7)
    with pytest.raises(tf.errors.InvalidArgumentError, match="multiples of the output stride 2"):
        loaded.signatures[c.DEFAULT_SIGNATURE](images=images[:, :33])
    text = loaded.signatures[c.INFO_SIGNATURE](request=tf.constant([0]))[c.INFO_OUTPUT].numpy()
    assert c.info_from_json(text) == info


def test_warmup_file_holds_prediction_logs_of_real_tiles(exported):
    root, v1, _ = exported
    records = list(tfs.read_warmup(v1))
    assert [r[1] for r in records] == [
        c.DEFAULT_SIGNATURE,
        c.MASKED_SIGNATURE,
        c.INFO_SIGNATURE,
    ]
    assert all(r[0] == "reseg" for r in records)
    images, valid = _tiles(root, 2)
    np.testing.assert_array_equal(records[1][2][c.IMAGES], images)
    np.testing.assert_array_equal(records[1][2][c.VALID], valid)
    assert export_info(v1)["warmup"]["tiles"] == "tiles"


def test_merged_rounds_export_as_one_graph_that_averages_them(exported):
    import keras
    import tensorflow as tf

    root, _, v2 = exported
    assert list(v2.path.rglob("saved_model.pb")) == [v2 / "saved_model.pb"]  # one graph
    m = export_info(v2)
    assert (m["source"], m["fold"], m["method"], m["weights"]) == ("merged", 0, "weighted", [3, 1])
    assert m["info"]["output_stride"] == 2 and m["info"]["architecture"] == "weighted(unet, cnn)"
    images, valid = _tiles(root)
    probs = []
    for r in (0, 1):
        d = layout.model_dir(root, r, 0)
        model = keras.models.load_model(d / "model.keras")
        probs.append(model.predict(normalise(images, valid, ModelInfo.load(d)), verbose=0))
    loaded = tf.saved_model.load(str(v2))
    got = loaded.signatures[c.MASKED_SIGNATURE](images=images, valid=valid)[c.PROBABILITIES]
    np.testing.assert_allclose(got.numpy(), 0.75 * probs[0] + 0.25 * probs[1], atol=1e-5)
    ensemble = load_backend(layout.merged_dir(root, 0))
    np.testing.assert_allclose(got.numpy(), ensemble(images, valid), atol=1e-6)
    # the predictor reads the export too
    sm = load_backend(layout.export_dir(root, "reseg"))
    assert isinstance(sm, SavedModelBackend) and sm.path == v2.path
    np.testing.assert_allclose(sm(images, valid), got.numpy(), atol=1e-6)


def test_export_was_validated_in_a_fresh_process_before_publishing(exported):
    _, v1, v2 = exported
    val = export_info(v2)["validation"]
    assert val["requests"] == 3 and val["max_abs_diff"] <= 1e-5 and val["wall_s"] > 0
    assert export_info(v1)["validation"] is None  # validation: false
    assert not list(v2.path.parent.glob(".staging-*"))


def test_same_models_are_not_exported_again_but_a_new_source_is(exported, demo_config):
    root, v1, v2 = exported
    cfg = _cfg(demo_config, validation=False)
    assert export(cfg, root, "merged") == v2  # newest, same fingerprint
    v3 = export(cfg, root, 0)  # round 0 again becomes the newest version
    assert v3.version == 3 and export(cfg, root, "r0") == v3
    assert tfs.versions(v1.path.parent) == [1, 2, 3]


def test_failed_validation_publishes_nothing(exported, demo_config, tmp_path):
    root, v1, _ = exported
    base = v1.path.parent
    before = tfs.used_versions(base)
    cfg = _cfg(demo_config, validate_timeout_s=0.05, model_name="reseg")
    with pytest.raises(ArtifactError, match="validation did not finish within 0.05 s"):
        export(cfg, root, "r1")
    assert tfs.used_versions(base) == before and not list(base.glob(".staging-*"))
    # the checks themselves: a corrupt copy, and answers that differ from the Keras model's
    broken = tmp_path / "broken"
    shutil.copytree(v1, broken)
    for f in (broken / "variables").glob("variables.data-*"):
        f.write_bytes(b"\0" * 16)
    with pytest.raises(ArtifactError, match="load failed|failed"):
        validate_export(broken)
    np.savez(tmp_path / "off.npz", request1=np.full((2, 64, 64, 7), 1 / 7, np.float32))
    with pytest.raises(ArtifactError, match="differ from the Keras model's"):
        validate_export(v1, tmp_path / "off.npz")


def _client(root):
    from mlflow import MlflowClient

    return MlflowClient(layout.tracking_uri(root))


def test_registry_versions_equal_export_versions(exported, demo_config):
    root, v1, v2 = exported
    client = _client(root)
    mvs = {int(mv.version): mv for mv in client.search_model_versions("name = 'reseg'")}
    assert set(mvs) >= {1, 2}
    for v in (1, 2):
        assert mvs[v].tags[tracking.EXPORT_VERSION_TAG] == str(v)
        assert mvs[v].source.endswith(f"export/reseg/{v}")
        run = client.get_run(mvs[v].run_id)
        assert run.data.tags["reseg.export_version"] == str(v)
        assert export_info(v1.path.parent / str(v))["registry_version"] == v
    files = [f.path for f in client.list_artifacts(mvs[2].run_id, "export/reseg/2")]
    assert "export/reseg/2/saved_model.pb" in files


def test_registry_behind_is_backfilled_and_ahead_is_skipped(exported, demo_config):
    root, _, _ = exported
    off = demo_config.model_copy(
        update={
            "export": demo_config.export.model_validate(
                {"model_name": "other", "validation": False}
            ),
            "tracking": demo_config.tracking.model_validate({"enabled": False}),
        }
    )
    on = _cfg(demo_config, model_name="other", validation=False)
    assert export(off, root, "r0").version == 1  # tracking off: not registered
    assert export(on, root, "r1").version == 2  # registers 1 (backfilled) and 2
    client = _client(root)
    mvs = {int(mv.version): mv for mv in client.search_model_versions("name = 'other'")}
    assert set(mvs) == {1, 2}
    assert mvs[1].tags.get("reseg.backfilled") == "true" and mvs[1].source.endswith("other/1")
    # registry ahead of the disk (export folders deleted): the next export skips to it
    shutil.rmtree(layout.export_dir(root, "other"))
    with tracking.open_run(on, root, run_name="pipeline") as parent:  # as the pipeline step does
        v = export(on, root, "r0", run=parent)
    mv = client.get_model_version("other", "3")
    assert v.version == 3 and mv.tags[tracking.EXPORT_VERSION_TAG] == "3"
    assert client.get_run(mv.run_id).data.tags["mlflow.parentRunId"] == parent.run_id


def test_register_export_when_the_registry_hides_deleted_versions(exported, demo_config, caplog):
    root, _, _ = exported
    with tracking.open_run(_cfg(demo_config), root, run_name="registry test") as run:
        assert tracking.register_export(run, "gaps", 1, "file:///nowhere/1") == 1
        assert tracking.register_export(run, "gaps", 3, "file:///nowhere/3") == 3  # 2: placeholder
        assert tracking.latest_registered_version(run, "gaps") == 3
        _client(root).delete_model_version("gaps", "3")
        assert tracking.latest_registered_version(run, "gaps") == 1
        got = tracking.register_export(run, "gaps", 2, "file:///nowhere/2")
    assert got == 4 and "became registry version 4" in caplog.text
    mv = _client(root).get_model_version("gaps", "4")
    assert mv.tags[tracking.EXPORT_VERSION_TAG] == "2"
    assert json.loads(json.dumps(mv.tags))  # plain strings
