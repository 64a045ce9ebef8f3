"""The REST client against the TF Serving stand-in: contract, equality, retries, errors."""

from __future__ import annotations

import json
import socket
import threading

import numpy as np
import pytest
import requests

from reseg import layout
from reseg.config import parse_config
from reseg.serving import contract as c
from reseg.serving import load_backend
from reseg.serving.client import ServingBackend
from reseg.serving.codec import read_array, to_json
from reseg.serving.rest import RetryPolicy, ServingError
from tests.components.predictor.helpers import smooth_image
from tests.components.roots import export
from tests.serving.models import plain_info, rounds_root
from tests.serving.standin import StandIn

FAST = RetryPolicy(retries=3, backoff=0.01, max_backoff=0.05, timeout=30)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """Two exports of tiny 4-band uint16 models (1: round 0, 2: merged rounds), served."""
    root = tmp_path_factory.mktemp("client_root")
    rounds_root(root, plain_info(), fold=None, method="mean")
    cfg = parse_config(
        {
            "name": "client",
            "data": {
                "scenes": [{"image": str(root / "none.tif")}],
                "classes": [{"name": f"class{i}"} for i in range(3)],
            },
            # float32: the served models are compared with the float32 Keras models
            "export": {
                "model_name": "tiny",
                "fold": "full",
                "validation": False,
                "precision": "float32",
            },
            "tracking": {"enabled": False},
        }
    )
    export(cfg, root, "r0")
    export(cfg, root, "merged")
    base = layout.export_dir(root, "tiny")
    with StandIn({"tiny": base}, policy="all") as server:
        yield root, server
        server.faults.clear()


@pytest.fixture
def server(served):
    root, server = served
    server.faults.clear()
    yield server
    server.faults.clear()


def _batch(b=5, h=16, w=24):
    img = np.stack([np.moveaxis(smooth_image(4, h, w, seed=k), 0, -1) for k in range(b)])
    valid = np.ones(img.shape[:3], np.uint8)
    valid[:, :3, :5] = 0
    return img, valid


def test_standin_answers_the_rest_contract(server):
    url = f"{server.url}/v1/models/tiny"
    status = requests.get(url, timeout=30).json()
    assert [s["version"] for s in status["model_version_status"]] == ["2", "1"]
    assert status["model_version_status"][0]["status"]["error_code"] == "OK"
    md = requests.get(f"{url}/versions/1/metadata", timeout=30).json()
    assert md["model_spec"] == {"name": "tiny", "signature_name": "", "version": "1"}
    sig = md["metadata"]["signature_def"]["signature_def"][c.DEFAULT_SIGNATURE]
    assert sig["inputs"][c.IMAGES]["dtype"] == "DT_UINT16"
    assert [d["size"] for d in sig["inputs"][c.IMAGES]["tensor_shape"]["dim"]] == [
        "-1",
        "-1",
        "-1",
        "4",
    ]
    assert set(sig["outputs"]) == {c.PROBABILITIES, c.CLASSES}
    img = _batch(2, 4, 4)[0].tolist()
    cols = requests.post(f"{url}:predict", json={"inputs": {"images": img}}, timeout=30).json()
    rows = requests.post(f"{url}:predict", json={"instances": img}, timeout=30).json()
    assert np.allclose(
        cols["outputs"]["probabilities"], [r["probabilities"] for r in rows["predictions"]]
    )
    for method, path, body, status_code, message in [
        ("get", "/v1/models/nope", None, 404, "Could not find any versions of model nope"),
        ("post", "/v1/models/tiny/versions/9:predict", {"inputs": img}, 404, "Specific(tiny, 9)"),
        ("post", "/v1/models/tiny:predict", {"x": 1}, 400, "Missing 'inputs' or 'instances'"),
        (
            "post",
            "/v1/models/tiny:predict",
            {"inputs": img, "signature_name": "x"},
            400,
            '"x" not found',
        ),
    ]:
        r = requests.request(method, f"{server.url}{path}", json=body, timeout=30)
        assert r.status_code == status_code and message in r.json()["error"]
    r = requests.post(f"{url}:predict", data=b"{not json", timeout=30)
    assert r.status_code == 400 and "JSON Parse error" in r.json()["error"]


@pytest.mark.parametrize("fmt", ["columns", "rows"])
def test_backend_equals_the_local_models(served, server, fmt):
    root, _ = served
    img, valid = _batch()
    latest = ServingBackend(server.url, "tiny", policy=FAST, request_format=fmt)
    assert latest.version == 2 and latest.signature == c.MASKED_SIGNATURE
    merged = load_backend(layout.merged_dir(root, None))
    assert latest.info == merged.info
    np.testing.assert_allclose(latest(img, valid), merged(img, valid), atol=1e-6)
    first = ServingBackend(server.url, "tiny", 1, policy=FAST, request_format=fmt, max_batch=2)
    before = server.counts["predict"]
    got = first(img, valid)
    assert server.counts["predict"] - before == 3  # 5 tiles, at most 2 per request
    np.testing.assert_allclose(
        got, load_backend(layout.model_dir(root, 0, None))(img, valid), atol=1e-6
    )


def test_batches_split_into_concurrent_requests(served, server):
    root, _ = served
    img, valid = _batch(6)
    backend = ServingBackend(server.url, "tiny", policy=FAST, max_batch=1, concurrency=3)
    before = server.counts["predict"]
    server.drop(1, only="predict")  # a retry inside one of the threads
    got = backend(img, valid)
    assert server.counts["predict"] - before == 6 + 1 and backend.rest.retried == 1
    np.testing.assert_array_equal(got, ServingBackend(server.url, "tiny", policy=FAST)(img, valid))
    backend.close()


def test_json_shortcuts_are_exact():
    rng = np.random.default_rng(3)
    a = rng.standard_normal((2, 3, 4, 5)).astype(np.float32) * np.float32(1e-3)
    a[0, 0, 0] = [np.finfo(np.float32).max, np.finfo(np.float32).tiny, -0.0, 1e-45, 7]
    for body in (
        json.dumps({"outputs": a.tolist()}),
        json.dumps({"outputs": a.tolist()}, indent=2),
    ):
        np.testing.assert_array_equal(read_array(body.encode(), "outputs", a.shape), a)
    body = json.dumps({"outputs": a.tolist()}).encode()
    assert read_array(body, "outputs", (2, 3, 20)) is None  # same count, other nesting
    assert read_array(body, "predictions", a.shape) is None
    assert (
        read_array(json.dumps({"outputs": {"p": a.tolist()}}).encode(), "outputs", a.shape) is None
    )
    ints = np.array([[-99999.0, 72.0], [0.0, 255.0]], np.float32)
    assert to_json(ints) == [[-99999, 72], [0, 255]] and to_json(a) == a.tolist()


def test_503_and_dropped_connections_are_retried(server):
    backend = ServingBackend(server.url, "tiny", policy=FAST)
    img, valid = _batch(2)
    want = backend(img, valid)
    server.fail(2, only="predict")
    server.drop(1, only="predict")
    np.testing.assert_array_equal(backend(img, valid), want)
    assert backend.rest.retried == 3
    server.fail(4, only="predict")
    with pytest.raises(ServingError, match=r"HTTP 503: injected.*gave up after 4 attempts"):
        backend(img, valid)


def test_timeouts_are_retried_then_reported(server):
    policy = RetryPolicy(retries=1, backoff=0.01, timeout=0.5)
    backend = ServingBackend(server.url, "tiny", policy=policy)
    img, valid = _batch(1)
    server.delay(2.0, 1, only="predict")
    backend(img, valid)
    assert backend.rest.retried == 1
    server.delay(2.0, 2, only="predict")
    with pytest.raises(ServingError, match=r"no answer within 0.5 s; gave up after 2 attempts"):
        backend(img, valid)


def test_4xx_ends_at_once_with_the_server_message(server):
    with pytest.raises(ServingError, match="HTTP 404: Could not find any versions of model nope"):
        ServingBackend(server.url, "nope", policy=FAST)
    with pytest.raises(ServingError, match="Could not find version 7 of model tiny"):
        ServingBackend(server.url, "tiny", 7, policy=FAST)
    backend = ServingBackend(server.url, "tiny", policy=FAST)
    img, valid = _batch(1, 15, 24)  # off the output stride: the graph refuses it
    with pytest.raises(ServingError, match="HTTP 400: .*multiples of the output stride 2") as e:
        backend._call(img, valid)
    assert e.value.status == 400 and backend.rest.retried == 0


def test_connection_refused_is_retried_then_reported():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ServingError, match=r"Connection refused.*gave up after 4 attempts"):
        ServingBackend(f"http://127.0.0.1:{port}", "tiny", policy=FAST)


def test_a_model_without_model_info_needs_the_model_json(served, tmp_path):
    import keras
    import tensorflow as tf

    root, _ = served
    d = layout.model_dir(root, 0, None)
    model = keras.models.load_model(d / "model.keras")
    info = load_backend(d).info

    class Plain(tf.Module):  # a hand-made export: serving_default only
        def __init__(self):
            super().__init__()
            self.model = model

        @tf.function(
            input_signature=[tf.TensorSpec([None, None, None, 4], tf.uint16, name="images")]
        )
        def serve(self, images):
            x = (tf.cast(images, tf.float32) - np.float32(2000)) / np.float32(1000)
            return {"probabilities": self.model(x, training=False)}

    m = Plain()
    tf.saved_model.save(m, str(tmp_path / "plain" / "1"), signatures={"serving_default": m.serve})
    with StandIn({"plain": tmp_path / "plain"}) as server:
        with pytest.raises(ServingError, match="no `model_info` signature.*--model-info"):
            ServingBackend(server.url, "plain", policy=FAST)
        backend = ServingBackend(server.url, "plain", policy=FAST, model_info=d / "model.json")
        assert backend.signature == c.DEFAULT_SIGNATURE and backend.info == info
        img, valid = _batch(2)
        # invalid pixels are sent as the band means, which normalise to 0 as locally
        np.testing.assert_allclose(backend(img, valid), load_backend(d)(img, valid), atol=1e-6)


def test_a_version_still_loading_is_waited_for(server):
    server.states[("tiny", 2)] = "LOADING"
    try:
        assert ServingBackend(server.url, "tiny", policy=FAST).version == 1  # what is served now
        with pytest.raises(ServingError, match="version 2 is not available: version 2 LOADING"):
            ServingBackend(server.url, "tiny", 2, policy=FAST, wait_s=0)
        threading.Timer(0.5, server.states.pop, [("tiny", 2)]).start()
        assert ServingBackend(server.url, "tiny", 2, policy=FAST, wait_s=30).version == 2
    finally:
        server.states.clear()
