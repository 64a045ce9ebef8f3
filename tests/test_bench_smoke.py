"""Every benchmark still runs: `bench/<name>.py --smoke` in a fresh process writes its result
with the environment block (tiny sizes: the figures mean nothing, only that they exist)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BENCHES = sorted(p.stem for p in (REPO / "bench").glob("[!_]*.py"))


def _params():
    for name in BENCHES:
        yield pytest.param(name, marks=[pytest.mark.slow], id=name)


@pytest.mark.parametrize("name", _params())
def test_smoke_run_writes_result_with_environment(name, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [sys.executable, str(REPO / "bench" / f"{name}.py"), "--smoke", "--results", str(tmp_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    result = json.loads((tmp_path / f"{name}.json").read_text())
    e = result["environment"]
    assert e["smoke"] is True and e["processor"] and e["cpu_count"] >= 1
    assert isinstance(e["cpu_flags"], list)
    assert e["versions"]["reseg"] and e["versions"]["tensorflow"] and e["versions"]["numpy"]
    for load in (e["load_average_before"], e["load_average_after"]):
        assert load is None or (len(load) == 3 and min(load) >= 0)
    assert 0 < e["wall_s"] < 240
    numbers = [v for v in _numbers(result) if not isinstance(v, bool)]
    assert numbers and all(v == v and abs(v) != float("inf") for v in numbers)  # no NaN, no inf
    assert any(v > 0 for v in numbers)
    if name == "models":
        _check_models(result, out.stdout)


def _check_models(result: dict, stdout: str) -> None:
    """Without torch (the test environment) the PyTorch side is skipped, reseg's side runs."""
    has_torch = importlib.util.find_spec("torch") is not None
    assert result["torch"] is has_torch
    assert ("torch" in result["environment"]["versions"]) is has_torch
    assert ("PyTorch side skipped" in stdout) is not has_torch
    unet = result["models"][0]
    assert unet["model"] == "unet" and unet["mpx_per_s"] > 0 and unet["params"] > 0


def _numbers(x):
    if isinstance(x, dict):
        for v in x.values():
            yield from _numbers(v)
    elif isinstance(x, list):
        for v in x:
            yield from _numbers(v)
    elif isinstance(x, int | float):
        yield x
