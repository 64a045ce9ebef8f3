"""reseg.quiet: TensorFlow's native start-up lines dropped, other libraries' records filtered."""

from __future__ import annotations

import logging
import os

from reseg.quiet import OwnMessages, native_stderr_captured

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
