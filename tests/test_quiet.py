"""reseg.quiet: TensorFlow's native start-up lines dropped, other libraries' records filtered."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys

import pytest

from reseg.cli import main
from reseg.quiet import (
    PROGRESS_ENV,
    TF_NATIVE_LOG,
    OwnMessages,
    native_stderr_captured,
    progress_bars,
)

NATIVE = (
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
    "I0000 00:00:1795770930.631972   12499 port.cc:153] oneDNN custom operations are on.\n"
    "I0000 00:00:1795770930.632705   12499 cudart_stub.cc:31] Could not find cuda drivers\n"
    "E0000 00:00:1795770933.712537    4055 cuda_platform.cc:52] failed call to cuInit\n"
)


def test_native_tensorflow_lines_are_dropped_and_other_lines_kept(capfd):
    with native_stderr_captured():
        os.write(2, NATIVE.encode())
        os.write(2, b"12:00:00 INFO reseg.x: a record written meanwhile\n")
    assert capfd.readouterr().err == "12:00:00 INFO reseg.x: a record written meanwhile\n"


def _passes(name: str, level: int, msg: str = "m") -> bool:
    record = logging.LogRecord(name, level, __file__, 1, msg, None, None)
    return OwnMessages().filter(record)


def test_only_resegs_records_and_other_libraries_errors_pass():
    assert _passes("reseg", logging.INFO) and _passes("reseg.components.trainer.loop", logging.INFO)
    assert not _passes("root", logging.WARNING, "apitools not found, and bigquery client ...")
    assert not _passes("tensorflow", logging.WARNING, "5 out of the last 5 calls ... retracing")
    assert not _passes("py.warnings", logging.WARNING)
    assert not _passes("resegx", logging.WARNING)  # not a reseg logger
    assert _passes("tensorflow", logging.ERROR)
    assert _passes("apache_beam.options.pipeline_options", logging.WARNING)  # a bad Beam option


def _python(code: str, cwd) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", PROGRESS_ENV)}
    return subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def test_the_python_api_imports_in_silence_and_leaves_logging_alone(tmp_path):
    out = _python(
        "import logging, reseg\n"
        "reseg.load_config, reseg.Pipeline, reseg.predict_arrays\n"
        "assert not logging.getLogger().handlers, logging.getLogger().handlers\n",
        tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert (out.stdout, out.stderr) == ("", "")


def test_logging_configured_by_the_host_shows_the_start_up_lines_as_records(tmp_path):
    out = _python(
        "import logging\n"
        "logging.basicConfig(level=logging.DEBUG, format='%(name)s %(levelname)s %(message)s')\n"
        "import reseg\n"
        "reseg.load_config\n",
        tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert "reseg.quiet DEBUG native: " in out.stderr  # TensorFlow's start-up, as records
    assert not any(TF_NATIVE_LOG.match(line) for line in out.stderr.splitlines())


def test_progress_bars_on_a_terminal_only_unless_forced(monkeypatch):
    monkeypatch.delenv(PROGRESS_ENV, raising=False)
    leader, follower = os.openpty()
    with os.fdopen(leader, "rb"), os.fdopen(follower, "w") as terminal, io.StringIO() as log_file:
        assert progress_bars(terminal) and not progress_bars(log_file)
        monkeypatch.setenv(PROGRESS_ENV, "1")
        assert progress_bars(log_file)
        monkeypatch.setenv(PROGRESS_ENV, "0")
        assert not progress_bars(terminal)


@pytest.mark.parametrize("where", ["before", "after"])
def test_the_progress_flag_forces_bars_for_the_run(where, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv(PROGRESS_ENV, raising=False)
    args = ["schema", "--out", str(tmp_path / "s.json")]
    assert main(["--progress", *args] if where == "before" else [*args, "--progress"]) == 0
    assert os.environ[PROGRESS_ENV] == "1" and progress_bars(io.StringIO())
    monkeypatch.delenv(PROGRESS_ENV)
    assert main(args) == 0
    assert PROGRESS_ENV not in os.environ


def test_beam_workers_log_errors_only_without_verbose(monkeypatch):
    from reseg import quiet

    monkeypatch.setattr(quiet, "_VERBOSE", [False])
    assert quiet.beam_args(["--runner=DirectRunner"]) == [
        "--runner=DirectRunner",
        "--default_sdk_harness_log_level=ERROR",
    ]
    given = ["--default_sdk_harness_log_level=DEBUG"]
    assert quiet.beam_args(given) == given  # the user's level stays
    monkeypatch.setattr(quiet, "_VERBOSE", [True])
    assert quiet.beam_args(["--runner=DirectRunner"]) == ["--runner=DirectRunner"]


def test_tiling_with_worker_processes_prints_no_worker_logs(tmp_path):
    """Two SDK worker processes: their INFO records (about 20 lines each before) stay out."""
    from tests.conftest import REPO

    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", PROGRESS_ENV)}
    out = subprocess.run(
        [sys.executable, "-m", "reseg", "tile", str(REPO / "examples" / "stac_items.yaml"),
         "--root", str(tmp_path / "root"), "--",
         "--direct_running_mode=multi_processing", "--direct_num_workers=2"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "wrote 75 tiles" in out.stderr
    worker_records = [
        x for x in out.stderr.splitlines() if x.startswith(("INFO:", "WARNING:apache"))
    ]
    assert len(worker_records) <= 4, worker_records  # start-up lines before the level is read
