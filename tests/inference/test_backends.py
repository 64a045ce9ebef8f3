"""The model kinds behind one backend interface."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from reseg.artifacts import ModelInfo
from reseg.errors import ArtifactError
from reseg.inference import Backend, EnsembleBackend, KerasBackend, combine, normalise
from reseg.serving.backends import SavedModelBackend, load_backend
from tests.components.predictor.helpers import conv1x1, save_model, smooth_image


def _batch(b=3, h=16, w=24, seed=0):
    img = np.stack([np.moveaxis(smooth_image(4, h, w, seed=seed + k), 0, -1) for k in range(b)])
    valid = np.ones(img.shape[:3], np.uint8)
    valid[:, :3, :5] = 0
    return img, valid


def test_keras_backend_normalises_and_masks_like_model_json_says(cnn_dir, cnn):
    assert isinstance(cnn, KerasBackend) and isinstance(cnn, Backend)
    img, valid = _batch()
    x = normalise(img, valid, cnn.info)
    assert (x[valid == 0] == 0).all()
    np.testing.assert_allclose(
        x[valid == 1], ((img.astype(np.float32) - 2000) / 1000)[valid == 1], rtol=1e-6
    )
    expected = np.asarray(cnn.model(x, training=False))
    got = cnn(img, valid)
    assert got.dtype == np.float32 and got.shape == (3, 16, 24, 3)
    np.testing.assert_allclose(got, expected, atol=1e-6)
    np.testing.assert_allclose(got.sum(-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(cnn(img[:1], valid[:1]), got[:1], atol=1e-6)


def test_keras_backend_compiled_with_xla_agrees(cnn_dir):
    img, valid = _batch(2)
    plain = load_backend(cnn_dir)(img, valid)
    jit = load_backend(cnn_dir, jit_compile=True)
    assert jit.jit_compile
    np.testing.assert_allclose(jit(img, valid), plain, atol=1e-5)
    # a last, smaller batch is padded to the compiled batch size and cut back
    np.testing.assert_allclose(jit(img[:1], valid[:1]), plain[:1], atol=1e-5)


def test_backend_rejects_tiles_off_the_output_stride(cnn):
    img, valid = _batch(1, 15, 24)
    with pytest.raises(ValueError, match="output stride 2"):
        cnn(img, valid)
    with pytest.raises(ValueError, match=r"\(B, H, W, 4\)"):
        cnn(img[..., :3], valid)


def _export(model_dir: Path, out: Path) -> Path:
    """A TF Serving export of a model dir: raw images in, normalisation inside."""
    import keras
    import tensorflow as tf

    info = ModelInfo.load(model_dir)
    model = keras.models.load_model(model_dir / "model.keras")

    class Serving(tf.Module):
        def __init__(self):
            super().__init__()
            self.model = model
            self.mean = tf.constant(np.asarray(info.mean, np.float32))
            self.std = tf.constant(np.asarray(info.std, np.float32))

        @tf.function(
            input_signature=[
                tf.TensorSpec([None, None, None, info.bands], tf.uint16, name="images")
            ]
        )
        def serve(self, images):
            p = self.model((tf.cast(images, tf.float32) - self.mean) / self.std, training=False)
            return {"probabilities": p, "classes": tf.argmax(p, axis=-1, output_type=tf.int32)}

    module = Serving()
    version = out / "tiny" / "3"
    tf.saved_model.save(module, str(version), signatures={"serving_default": module.serve})
    (version / "assets.extra").mkdir()
    info.save(version / "assets.extra")
    (out / "tiny" / "1").mkdir()  # an older, empty version folder is not chosen
    return out / "tiny"


def test_saved_model_backend_matches_the_keras_model(cnn_dir, cnn, tmp_path):
    export = _export(cnn_dir, tmp_path)
    sm = load_backend(export)
    assert isinstance(sm, SavedModelBackend) and sm.path.name == "3"
    assert sm.info == cnn.info
    img, valid = _batch()
    # nodata pixels are fed as the band means, which normalise to 0 as in the Keras backend
    np.testing.assert_allclose(sm(img, valid), cnn(img, valid), atol=1e-5)


def _merged(tmp_path: Path, members: list[tuple[Path, float]], method: str) -> Path:
    d = tmp_path / "merged"
    d.mkdir(parents=True, exist_ok=True)
    spec = {"method": method, "members": [{"model": str(p), "weight": w} for p, w in members]}
    (d / "merged.json").write_text(json.dumps(spec))
    return d


@pytest.mark.parametrize("method", ["weighted", "vote"])
def test_ensemble_backend_combines_its_members(cnn_dir, px_dir, cnn, tmp_path, method):
    rel = Path("..") / ".." / px_dir.parent.name / px_dir.name  # relative to merged.json's folder
    (tmp_path / px_dir.parent.name).symlink_to(px_dir.parent)
    merged = _merged(tmp_path / "sub", [(cnn_dir, 2.0), (rel, 1.0)], method)
    ens = load_backend(merged)
    assert isinstance(ens, EnsembleBackend)
    assert ens.info.output_stride == 2 and ens.info.class_names == cnn.info.class_names
    img, valid = _batch()
    px = load_backend(px_dir)
    np.testing.assert_allclose(
        ens(img, valid), combine([cnn(img, valid), px(img, valid)], [2, 1], method), atol=1e-6
    )


def test_ensemble_members_must_agree(cnn_dir, tmp_path):
    other = save_model(tmp_path / "five", conv1x1(5, 3), bands=5, classes=3)
    with pytest.raises(ArtifactError, match="takes 5 x uint16"):
        load_backend(_merged(tmp_path, [(cnn_dir, 1), (other, 1)], "mean"))
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "merged.json").write_text('{"method": "median", "members": []}')
    with pytest.raises(ArtifactError, match="method must be one of"):
        load_backend(bad)


def test_load_backend_says_what_a_model_directory_holds(tmp_path):
    with pytest.raises(ArtifactError, match="model not found"):
        load_backend(tmp_path / "nowhere")
    with pytest.raises(
        ArtifactError, match=r"model.keras \+ model.json .* merged.json .* saved_model.pb"
    ):
        load_backend(tmp_path)


def test_saved_model_backend_uses_the_exporters_masked_signature(cnn_dir, cnn, tmp_path):
    import keras

    from reseg.serving.graph import Member, build_module, save_module

    info = ModelInfo.load(cnn_dir)
    module = build_module([Member(keras.models.load_model(cnn_dir / "model.keras"), info)], info)
    version = save_module(module, tmp_path / "export" / "m" / "1")
    (version / "assets.extra").mkdir()
    info.save(version / "assets.extra")
    sm = load_backend(tmp_path / "export" / "m")
    assert isinstance(sm, SavedModelBackend) and sm._name == "predict_masked"
    img, valid = _batch()
    np.testing.assert_allclose(sm(img, valid), cnn(img, valid), atol=1e-5)
