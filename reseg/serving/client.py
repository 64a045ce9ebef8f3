"""A model served by TF Serving, behind the predictor's one model interface.

`ServingBackend(url, name)` is a `reseg.components.predictor.Backend`:
`backend.info` is the model's `ModelInfo` and `backend(tiles_raw, valid)` returns
the class probabilities, so `predict_scene` runs a remote model with the same
sliding window, blending, TTA, refinement and outputs as a local one.

On construction it

1. asks the model status (`GET /v1/models/<name>[/versions/<v>]`) and pins the
   version: the one asked for, else the highest AVAILABLE one (waiting while versions
   are still loading), so that a new version rolled out mid-scene cannot mix models;
2. reads the signatures from the model metadata (`GET .../metadata`);
3. gets the ModelInfo from the `model_info` signature, which every reseg export has
   (TF Serving serves no `assets.extra` files), or from `model_info=PATH` (a model.json,
   or a folder holding one) for exports without it.

Tiles go to `predict_masked` (raw tiles + validity: identical to a local
prediction); a model without it gets `serving_default` with invalid pixels set to
the band means, which normalise to about 0. A batch is sent in requests of at most
`max_batch` tiles (up to `concurrency` of them in flight at once), as columnar
`inputs` (default) or row `instances` JSON (`reseg.serving.codec` keeps the JSON
cheap where it can, exactly).
"""

from __future__ import annotations

import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

import numpy as np

from reseg import storage
from reseg.artifacts import ModelInfo
from reseg.errors import ArtifactError
from reseg.inference import check_batch
from reseg.serving import contract as c
from reseg.serving.codec import read_array, to_json
from reseg.serving.rest import RestClient, RetryPolicy, ServingError, model_path

log = logging.getLogger(__name__)

Format = Literal["columns", "rows"]


class ServingBackend:
    """The predictor's Backend over TF Serving's REST API (module docstring).

    Args:
        url: the REST endpoint, e.g. `http://localhost:8501`.
        model: the served model's name.
        version: a version to use; default the highest AVAILABLE one.
        model_info: a model.json (or its folder) when the served model has no
            `model_info` signature; it wins over the signature when both exist.
        policy: timeouts and retries (`RetryPolicy`).
        max_batch: most tiles per request (None: the whole batch in one request).
        concurrency: requests of one batch in flight at once (the client encodes and
            decodes JSON while the server computes).
        request_format: `columns` (`inputs` JSON) or `rows` (`instances` JSON).
        wait_s: how long to wait for a version that is still loading.
    """

    def __init__(
        self,
        url: str,
        model: str,
        version: int | None = None,
        *,
        model_info: str | Path | None = None,
        policy: RetryPolicy | None = None,
        max_batch: int | None = None,
        concurrency: int = 1,
        request_format: Format = "columns",
        wait_s: float = 60.0,
    ):
        if max_batch is not None and max_batch < 1:
            raise ValueError(f"Argument `max_batch` must be >= 1. Received: max_batch={max_batch}")
        if request_format not in ("columns", "rows"):
            raise ValueError(
                "Argument `request_format` must be 'columns' or 'rows'. "
                f"Received: request_format={request_format!r}"
            )
        self.rest = RestClient(url, policy)
        self.name = model
        if concurrency < 1:
            raise ValueError(
                f"Argument `concurrency` must be >= 1. Received: concurrency={concurrency}"
            )
        self.max_batch = max_batch
        self.concurrency = concurrency
        self._pool: ThreadPoolExecutor | None = None
        self.request_format = request_format
        self.version = self._pick_version(version, wait_s)
        self.path = f"{self.rest.url}{model_path(model, self.version)}"
        sigs = self.signatures()
        self.info = self._model_info(sigs, model_info)
        self.signature = c.MASKED_SIGNATURE if c.MASKED_SIGNATURE in sigs else c.DEFAULT_SIGNATURE
        inputs = sigs.get(self.signature, {}).get("inputs", {})
        if c.IMAGES not in inputs:
            raise ServingError(
                f"{self.path}: no signature takes `{c.IMAGES}` (signatures: {sorted(sigs)}); "
                "not a reseg export"
            )
        self.dtype = c.numpy_dtype(inputs[c.IMAGES].get("dtype", ""))
        if self.dtype != np.dtype(self.info.image_dtype):
            raise ServingError(
                f"{self.path}: the signature takes {self.dtype} images, model info says "
                f"{self.info.image_dtype}"
            )
        self.takes_valid = c.VALID in inputs
        log.info(
            "%s: version %d, signature %s, %d x %s bands, classes %s",
            self.path,
            self.version,
            self.signature,
            self.info.bands,
            self.info.image_dtype,
            ", ".join(self.info.class_names),
        )

    # --- status and metadata ---------------------------------------------------------------

    def status(self, version: int | None = None) -> list[dict[str, Any]]:
        """`model_version_status` of the model (or of one version)."""
        got = self.rest.get(model_path(self.name, version))
        return list(got.get("model_version_status", []))

    def _pick_version(self, version: int | None, wait_s: float) -> int:
        deadline = time.monotonic() + wait_s
        while True:
            states = {int(s["version"]): s for s in self.status(version)}
            available = sorted(v for v, s in states.items() if s.get("state") == "AVAILABLE")
            if version is None and available:
                return available[-1]
            if version is not None and version in available:
                return version
            loading = [v for v, s in states.items() if s.get("state") in ("START", "LOADING")]
            if not loading or time.monotonic() > deadline:
                detail = "; ".join(
                    f"version {v} {s.get('state')}"
                    + (
                        f" ({s['status']['error_message']})"
                        if s.get("status", {}).get("error_message")
                        else ""
                    )
                    for v, s in sorted(states.items())
                )
                want = "" if version is None else f" version {version}"
                raise ServingError(
                    f"{self.rest.url}: model {self.name}{want} is not available: {detail or 'no versions'}"
                )
            log.info("model %s: versions %s still loading; waiting", self.name, loading)
            time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))

    def signatures(self) -> dict[str, Any]:
        """The SignatureDef map of the pinned version (from the model metadata)."""
        md = self.rest.get(model_path(self.name, self.version) + "/metadata")
        try:
            return dict(md["metadata"]["signature_def"]["signature_def"])
        except (KeyError, TypeError):
            raise ServingError(
                f"{self.path}/metadata: no signature_def in {str(md)[:200]}"
            ) from None

    def _model_info(self, sigs: dict[str, Any], path: str | Path | None) -> ModelInfo:
        served = None
        if c.INFO_SIGNATURE in sigs:
            # columnar: the answer is a scalar, which the row format cannot carry
            out = self._predict(c.INFO_SIGNATURE, {c.INFO_REQUEST: [0]}, "columns")
            text = out[c.INFO_OUTPUT] if isinstance(out, dict) else out
            served = c.info_from_json(text, f"{self.path} model_info")
        if path is not None:
            path = storage.path(path)
            try:
                info = ModelInfo.load(path.parent if path.is_file() else path)
            except ArtifactError as e:
                raise ArtifactError(f"--model-info: {e}") from None
            if served is not None and served != info:
                log.warning(
                    "%s: --model-info %s differs from the served model_info; using the file",
                    self.path,
                    path,
                )
            return info
        if served is None:
            raise ServingError(
                f"{self.path}: the model has no `{c.INFO_SIGNATURE}` signature (not a reseg export?); "
                "give its model.json with --model-info"
            )
        return served

    # --- prediction ----------------------------------------------------------------------------

    def _predict(
        self,
        signature: str,
        inputs: dict[str, Any],
        fmt: Format | None = None,
        shape: tuple[int, ...] | None = None,
    ) -> Any:
        """One predict request; returns the outputs (a dict by name, or the single output).

        With `shape`, a single float output of that shape is read fast (`codec.read_array`).
        """
        path = model_path(self.name, self.version) + ":predict"
        columns = (fmt or self.request_format) == "columns"
        key = "outputs" if columns else "predictions"
        if columns:
            body = {"signature_name": signature, "inputs": inputs}
        else:
            n = len(next(iter(inputs.values())))
            rows = [{k: v[i] for k, v in inputs.items()} for i in range(n)]
            body = {"signature_name": signature, "instances": rows}
        content = self.rest.post(path, body, raw=True)
        if shape is not None and (fast := read_array(content, key, shape)) is not None:
            return fast
        try:
            got = json.loads(content)
        except ValueError as e:
            raise ServingError(f"{self.path}: predict answer is not valid JSON ({e})") from None
        if key not in got:
            raise ServingError(f"{self.path}: predict answer has no `{key}`: {str(got)[:200]}")
        out = got[key]
        if not columns and out and isinstance(out[0], dict):
            return {k: [p[k] for p in out] for k in out[0]}
        return out

    def __call__(self, tiles_raw: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """Class probabilities float32 (B, H, W, C) of raw tiles (B, H, W, bands), valid (B, H, W)."""
        check_batch(self.info, tiles_raw, valid)
        if not self.takes_valid:  # serving_default masks nothing itself: send the band means
            fill = np.asarray(self.info.mean, np.float64).astype(self.dtype)
            tiles_raw = np.where(valid[..., None] > 0, tiles_raw, fill)
        step = self.max_batch or len(tiles_raw)
        parts = [
            (tiles_raw[i : i + step], valid[i : i + step]) for i in range(0, len(tiles_raw), step)
        ]
        if self.concurrency > 1 and len(parts) > 1:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="tfserving")
            probs = list(self._pool.map(lambda p: self._call(*p), parts))
        else:
            probs = [self._call(*p) for p in parts]
        return probs[0] if len(probs) == 1 else np.concatenate(probs)

    def _call(self, tiles: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """One request: probabilities float32 (b, H, W, C) of b tiles."""
        inputs: dict[str, Any] = {c.IMAGES: to_json(tiles.astype(self.dtype, copy=False))}
        if self.takes_valid:
            inputs[c.VALID] = valid.astype(np.uint8, copy=False).tolist()
        want = (*tiles.shape[:3], len(self.info.class_names))
        out = self._predict(self.signature, inputs, shape=want)
        probs = out[c.PROBABILITIES] if isinstance(out, dict) else out
        probs = np.asarray(probs, np.float32)
        if probs.shape != want:
            raise ServingError(
                f"{self.path}: probabilities of shape {probs.shape}, expected {want}"
            )
        return probs

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
        self.rest.close()

    def __repr__(self) -> str:
        return f"ServingBackend({self.path!r}, signature={self.signature!r})"


def describe(backend: ServingBackend) -> dict[str, Any]:
    """What the client talked to, for logs and metrics files."""
    return {
        "url": backend.rest.url,
        "model": backend.name,
        "version": backend.version,
        "signature": backend.signature,
        "requests": backend.rest.requests,
        "retries": backend.rest.retried,
        "info": json.loads(c.info_to_json(backend.info)),
    }
