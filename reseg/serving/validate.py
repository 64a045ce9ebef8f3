"""Checking an export before it is published (TFX's InfraValidator idea).

`validate_in_fresh_process(version_dir)` starts a new Python process
(`python -m reseg.serving.validate VERSION_DIR`), which loads the SavedModel
with `tf.saved_model.load` — nothing of the exporting process (Python objects,
registered Keras classes, traced functions) can help it — and replays the warmup
requests TF Serving will replay. It checks for every request:

- the signature exists and runs;
- `probabilities` is float32 (B, H, W, C) with C = the number of classes, finite,
  and sums to 1 over C within 1e-3; `classes`, when returned, is uint8 argmax;
- with expected probabilities (what the float32 Keras models gave in the exporting
  process), max |p - p_expected| <= atol; or, for an export in bfloat16 / float16
  (`min_agreement` given), the share of pixels whose argmax equals the expected
  argmax >= min_agreement over all requests (max |diff| is reported, not checked);

and that the `model_info` signature returns the export's `assets.extra/model.json`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from reseg.artifacts import ModelInfo
from reseg.errors import ArtifactError
from reseg.serving import contract as c
from reseg.serving import layout

log = logging.getLogger(__name__)


def validate_export(
    version_dir: str | Path,
    expected: str | Path | None = None,
    atol: float = 1e-5,
    min_agreement: float | None = None,
) -> dict[str, Any]:
    """Run the checks of the module docstring in this process.

    Args:
        version_dir: `export/<name>/<version>` (or a staged one).
        expected: `.npz` with `request<i>` = expected probabilities of warmup record i.
        atol: largest allowed |p - p_expected| (unless `min_agreement`).
        min_agreement: least share of pixels with the expected class (reduced precision).

    Returns:
        {"requests": n, "max_abs_diff": float | None, "agreement": float | None, "load_s",
        "run_s"}.

    Raises:
        ArtifactError: naming the first check that failed.
    """
    import tensorflow as tf

    version_dir = Path(version_dir)
    t0 = time.perf_counter()
    loaded = _load(tf, version_dir)
    load_s = time.perf_counter() - t0
    info = _check_signatures(tf, loaded, version_dir)
    want = dict(np.load(expected)) if expected is not None else {}
    cmp = _Comparison()
    n = 0
    for n, (_, sig, inputs) in enumerate(layout.read_warmup(version_dir), start=1):
        out = _replay(tf, loaded, version_dir, n, sig, inputs)
        if sig == c.INFO_SIGNATURE:
            c.info_from_json(out[c.INFO_OUTPUT].numpy(), f"{version_dir} warmup request {n}")
            continue
        probs = _check_outputs(version_dir, n, inputs, out, len(info.class_names))
        key = f"request{n - 1}"
        if key in want:
            diff = cmp.add(probs, want[key])
            if min_agreement is None and not diff <= atol:
                raise ArtifactError(
                    f"{version_dir}: warmup request {n} ({sig}): probabilities differ from the "
                    f"Keras model's by {diff:.3g} > {atol:g}"
                )
    if n == 0:
        raise ArtifactError(f"{version_dir}: the warmup file holds no requests")
    worst, agreement = cmp.worst, cmp.agreement
    if min_agreement is not None and agreement is not None and agreement < min_agreement:
        raise ArtifactError(
            f"{version_dir}: classes equal the float32 Keras model's on {agreement:.2%} of "
            f"the warmup pixels, fewer than min_agreement {min_agreement:.2%}"
        )
    return {
        "requests": n,
        "max_abs_diff": worst,
        "agreement": agreement,
        "load_s": round(load_s, 3),
        "run_s": round(time.perf_counter() - t0 - load_s, 3),
    }


def _load(tf, version_dir: Path) -> Any:
    """`tf.saved_model.load` of the export, its failure an ArtifactError."""
    try:
        return tf.saved_model.load(str(version_dir))
    except Exception as e:  # anything TF raises on a broken SavedModel
        raise ArtifactError(f"{version_dir}: tf.saved_model.load failed: {e}") from None


def _check_signatures(tf, loaded: Any, version_dir: Path) -> ModelInfo:
    """The contract's signatures are there and `model_info` answers model.json; returns it."""
    missing = {c.DEFAULT_SIGNATURE, c.MASKED_SIGNATURE, c.INFO_SIGNATURE} - set(loaded.signatures)
    if missing:
        raise ArtifactError(f"{version_dir}: signatures {sorted(missing)} are missing")
    served = loaded.signatures[c.INFO_SIGNATURE](**{c.INFO_REQUEST: tf.constant([0])})
    info = c.info_from_json(served[c.INFO_OUTPUT].numpy(), f"{version_dir} model_info")
    if info != ModelInfo.load(version_dir / layout.ASSETS_EXTRA):
        raise ArtifactError(f"{version_dir}: model_info signature differs from model.json")
    return info


def _replay(tf, loaded: Any, version_dir: Path, n: int, sig: str, inputs: dict) -> Any:
    """Warmup request `n` run through its signature `sig`; its outputs."""
    if sig not in loaded.signatures:
        raise ArtifactError(f"{version_dir}: warmup request {n} names signature {sig!r}")
    try:
        return loaded.signatures[sig](**{k: tf.constant(v) for k, v in inputs.items()})
    except Exception as e:  # the graph failed on the request
        raise ArtifactError(f"{version_dir}: warmup request {n} ({sig}) failed: {e}") from None


@dataclass
class _Comparison:
    """The warmup requests' probabilities against the expected ones, so far."""

    worst: float | None = None  # max |p - p_expected|
    same: int = 0  # pixels whose argmax equals the expected argmax
    compared: int = 0  # pixels compared

    def add(self, probs: np.ndarray, want: np.ndarray) -> float:
        """Count one request's (B, H, W, C) probabilities; returns its max |p - p_expected|."""
        diff = float(np.abs(probs - want).max())
        self.worst = diff if self.worst is None else max(self.worst, diff)
        self.same += int((probs.argmax(-1) == want.argmax(-1)).sum())
        self.compared += probs[..., 0].size
        return diff

    @property
    def agreement(self) -> float | None:
        return self.same / self.compared if self.compared else None


def _check_outputs(version_dir, n, inputs, out, num_classes: int) -> np.ndarray:
    images = inputs[c.IMAGES]
    if c.PROBABILITIES not in out:
        raise ArtifactError(f"{version_dir}: request {n} returned {sorted(out)}, no probabilities")
    probs = out[c.PROBABILITIES].numpy()
    shape = (*images.shape[:3], num_classes)
    if probs.dtype != np.float32 or probs.shape != shape:
        raise ArtifactError(
            f"{version_dir}: request {n}: probabilities are {probs.dtype} {probs.shape}, "
            f"expected float32 {shape}"
        )
    if not np.isfinite(probs).all() or np.abs(probs.sum(-1) - 1).max() > 1e-3:
        raise ArtifactError(f"{version_dir}: request {n}: probabilities do not sum to 1")
    if c.CLASSES in out:
        classes = out[c.CLASSES].numpy()
        if classes.dtype != np.uint8 or not np.array_equal(classes, probs.argmax(-1)):
            raise ArtifactError(f"{version_dir}: request {n}: classes are not argmax (uint8)")
    return probs


def validate_in_fresh_process(
    version_dir: str | Path,
    expected: str | Path | None = None,
    atol: float = 1e-5,
    timeout_s: float = 600,
    min_agreement: float | None = None,
) -> dict[str, Any]:
    """`validate_export` in a new Python process; raises ArtifactError with its message."""
    cmd = [sys.executable, "-m", "reseg.serving.validate", str(version_dir), "--atol", str(atol)]
    if expected is not None:
        cmd += ["--expect", str(expected)]
    if min_agreement is not None:
        cmd += ["--min-agreement", str(min_agreement)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, env=env)
    except subprocess.TimeoutExpired:
        raise ArtifactError(
            f"{version_dir}: validation did not finish within {timeout_s:g} s"
        ) from None
    lines = proc.stdout.strip().splitlines()
    try:
        result = json.loads(lines[-1])
    except (IndexError, ValueError):
        result = {"ok": False, "error": f"exit status {proc.returncode}: {proc.stderr[-2000:]}"}
    if proc.returncode != 0 or not result.get("ok"):
        raise ArtifactError(f"validation failed in a fresh process: {result.get('error')}")
    result["wall_s"] = round(time.perf_counter() - t0, 3)
    log.info(
        "validated %s in a fresh process: %d requests, max |diff| %s, %.1f s",
        version_dir,
        result["requests"],
        result["max_abs_diff"],
        result["wall_s"],
    )
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m reseg.serving.validate", description=__doc__)
    p.add_argument("version_dir", type=Path)
    p.add_argument("--expect", type=Path, help=".npz of expected probabilities per request")
    p.add_argument("--atol", type=float, default=1e-5)
    p.add_argument("--min-agreement", type=float, default=None)
    args = p.parse_args(argv)
    try:
        result = {
            "ok": True,
            **validate_export(args.version_dir, args.expect, args.atol, args.min_agreement),
        }
    except ArtifactError as e:
        result = {"ok": False, "error": str(e)}
    print(json.dumps(result))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
