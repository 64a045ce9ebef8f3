"""`reseg info`: versions, processor, `auto` precision, cache and storage, and no secret shown."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from reseg import __version__
from reseg.cli import main
from reseg.inference import precision

REPO = Path(__file__).resolve().parents[1]
SECRET = "wJalrXUtnFEMI-not-a-real-secret"


def info_json(capsys) -> dict:
    assert main(["info", "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_json_reports_versions_processor_precision_and_cache(tmp_path, monkeypatch, capsys):
    cache = tmp_path / "cache"
    (cache / "objects").mkdir(parents=True)
    (cache / "objects" / "a-shard").write_bytes(b"x" * 1000)
    monkeypatch.setenv("RESEG_CACHE_DIR", str(cache))
    info = info_json(capsys)
    assert info["versions"]["reseg"] == __version__
    assert info["versions"]["numpy"] == np.__version__
    assert info["versions"]["GDAL"].count(".") == 2
    assert info["machine"]["processor"] and info["machine"]["cpu_count"] >= 1
    assert set(precision.cpu_flags()) <= set(info["machine"]["cpu_flags"])
    assert len(info["gpus"]) == len(precision.gpus())
    choice, why = precision.auto_choice()
    assert info["precision"]["auto"] == {"choice": choice, "why": why}
    for setting in ("predict.precision", "export.precision", "rounds.score_precision"):
        row = info["precision"]["settings"][setting]
        assert row["runs_in"] == (choice if row["default"] == "auto" else row["default"])
    assert info["cache"] | {"bound_bytes": 0} == {
        "dir": str(cache),
        "set_by": "RESEG_CACHE_DIR",
        "exists": True,
        "bytes": 1000,
        "files": 1,
        "bound_bytes": 0,
    }


def test_storage_settings_are_shown_but_never_a_secret(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIA-not-a-real-key-id")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://minio:{SECRET}@localhost:9000")
    monkeypatch.setenv("AWS_PROFILE", "lab")
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "http://localhost:4443")
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    monkeypatch.setenv("HOME", str(tmp_path))  # no credentials file of this machine's user
    info = info_json(capsys)
    s = info["storage"]
    assert s["AWS_ENDPOINT_URL"] == "http://localhost:9000"
    assert s["AWS_PROFILE"] == "lab"
    assert s["aws_credentials"] == ["AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"]
    assert s["STORAGE_EMULATOR_HOST"] == "http://localhost:4443"
    assert s["GOOGLE_APPLICATION_CREDENTIALS"] == "set, no such file"
    assert main(["info"]) == 0
    text = capsys.readouterr().out
    assert "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY" in text and "lab" in text
    for shown in (json.dumps(info), text):
        assert SECRET not in shown and "AKIA-not-a-real-key-id" not in shown


def test_the_command_prints_its_table_and_nothing_on_stderr(tmp_path):
    env = {**os.environ, "RESEG_CACHE_DIR": str(tmp_path / "none")}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # the command's own default, not the test's
    out = subprocess.run(
        [sys.executable, "-m", "reseg", "info"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""
    for heading in ("versions", "machine", "precision", "cache", "storage"):
        assert f"\n{heading}\n" in f"\n{out.stdout}"
    assert "empty (no folder yet)" in out.stdout
