"""What a reseg command prints on stderr: its own messages; other libraries' only with `-v`.

Without `-v`, `configure(verbose=False)`:

- **TensorFlow's C++ logs.** `TF_CPP_MIN_LOG_LEVEL=3` (unless already set) silences those
  written after absl's log initialisation, e.g. `failed call to cuInit` when TensorFlow
  probes for a GPU on a machine without one. The lines written while TensorFlow's shared
  libraries load, before that initialisation (`All log messages before
  absl::InitializeLog() ...`, the oneDNN notice, `Could not find cuda drivers`), ignore
  the variable. So the first `import tensorflow` of the process runs with file
  descriptor 2 redirected into a temporary file (an import hook, so commands that never
  import TensorFlow do not pay for it); afterwards lines that look like TensorFlow's
  C++ logs go to the debug log and any other line is written back to stderr.
- **Python log records.** The stderr handler shows reseg's own records (loggers
  `reseg.*`) from INFO up, and other loggers' from ERROR up, plus the warnings of the
  loggers in `SHOWN_WARNINGS` (Beam saying that a pipeline option was not understood),
  except those in `HIDDEN` (the storage clients', asyncio's and GDAL's), never shown:
  their errors reach reseg as exceptions, reported on one line.
  This hides Beam's optional-dependency warnings (`apitools not found, ...`, logged on
  the root logger), TensorFlow's and Keras' warnings, retracing warnings included.
- **Python warnings** (`warnings.warn`) are routed into the log, so the same rule applies.

With `-v` everything is shown from DEBUG up, and nothing is redirected.

From Python (`reseg.load_config`, `reseg.Pipeline`, ...), `library()` does the part of
this that leaves the host's logging alone: TensorFlow's and Beam's first imports run
captured as above, so a notebook's `import reseg` prints nothing, and TensorFlow's
native start-up lines become debug records of `reseg.quiet`, shown where the host
configured logging to show them. While they import with no handler on the root logger,
a temporary `logging.NullHandler` stands there: Beam logs its optional-dependency
warnings with `logging.warning()`, which would otherwise call `logging.basicConfig()`
and so configure the host's logging behind its back.

Progress bars (`progress_bars`) are drawn only on a terminal: a log file or a CI job
gets no carriage-return noise. `--progress` (or `RESEG_PROGRESS=1`) forces them,
`RESEG_PROGRESS=0` switches them off.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import logging
import os
import re
import sys
import tempfile
import threading
from collections.abc import Iterator, Sequence
from typing import IO

log = logging.getLogger(__name__)

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
DATEFMT = "%H:%M:%S"
OWN = "reseg"
SHOWN_WARNINGS = ("apache_beam.options",)
"""Other libraries' loggers whose warnings are shown without `-v` (they concern the user's input)."""
LIBRARIES = (
    "tensorflow",
    "absl",
    "apache_beam",
    "rasterio",
    "fiona",
    "matplotlib",
    "PIL",
    "h5py",
    "urllib3",
)
"""Loggers kept at WARNING even with `-v` (their INFO and DEBUG records are about themselves)."""
HIDDEN = (
    "gcsfs",
    "s3fs",
    "fsspec",
    "botocore",
    "aiobotocore",
    "boto3",
    "aiohttp",
    "asyncio",
    "google",
    "urllib3",
    "fiona",
    "rasterio",
)
"""Loggers whose records stay behind `-v` at every level: the storage clients (gcsfs logs
each exhausted retry with its traceback; reseg reports the outage on one line), asyncio
(a failed upload's unawaited task) and GDAL's (fiona's PROJ lines, rasterio's): every error
of theirs reaches reseg as an exception, which the command reports on one line."""
QUIET_IMPORTS = ("tensorflow", "apache_beam")
"""Top-level packages whose first import runs with file descriptor 2 captured."""

TF_NATIVE_LOG = re.compile(
    r"^(?:[IWEF]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ \S+:\d+\]"  # absl / TF C++ log line
    r"|WARNING: All log messages before absl::InitializeLog\(\) is called"
    r"|This TensorFlow binary is optimized"
    r"|To enable the following instructions:)"
)
"""A line of TensorFlow's C++ logging (as written while its libraries load)."""


class OwnMessages(logging.Filter):
    """Pass reseg's records, other loggers' from ERROR up, and `SHOWN_WARNINGS`' warnings."""

    def filter(self, record: logging.LogRecord) -> bool:
        name = record.name
        if name == OWN or name.startswith(OWN + "."):
            return True
        if name.split(".")[0] in HIDDEN:
            return False
        if record.levelno >= logging.ERROR:
            return True
        return record.levelno >= logging.WARNING and name.startswith(SHOWN_WARNINGS)


_VERBOSE = [True]
"""Whether the command runs with `-v` (`configure`); Python hosts count as verbose: their
logging decides."""

WORKER_LOG_LEVEL = "--default_sdk_harness_log_level"


def beam_args(args: Sequence[str]) -> list[str]:
    """Beam pipeline options `args`, plus `--default_sdk_harness_log_level=ERROR` without
    `-v` unless given: the SDK workers of `direct_running_mode=multi_processing` (and of
    Dataflow) log at INFO to their own stderr otherwise, about 20 lines per worker on a run
    that succeeds. Their start-up lines written before that option is read, and TensorFlow's
    native start-up lines in each worker, remain."""
    out = list(args)
    if not _VERBOSE[0] and not any(a.startswith(WORKER_LOG_LEVEL) for a in out):
        out.append(f"{WORKER_LOG_LEVEL}=ERROR")
    return out


def configure(verbose: bool) -> None:
    """Set up logging for a command (module docstring); call before TensorFlow is imported.

    Adds a stderr handler to the root logger only when it has none (as
    `logging.basicConfig` does), so a host application's or pytest's handlers are kept.
    """
    _VERBOSE[0] = verbose
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(FORMAT, DATEFMT))
        if not verbose:
            handler.addFilter(OwnMessages())
        root.addHandler(handler)
        root.setLevel(logging.DEBUG if verbose else logging.INFO)
    logging.captureWarnings(True)
    for name in LIBRARIES:
        logging.getLogger(name).setLevel(logging.WARNING)
    if verbose:
        return
    # Beam logs each failed bundle with its traceback before re-raising the error, which
    # `reseg.cli.main` reports on one line (all of it with -v)
    logging.getLogger("apache_beam.runners").setLevel(logging.CRITICAL)
    # ... and its in-process SDK worker (the default runner's threads) prints it too
    if not isinstance(sys.stderr, _BeamTracebacks):
        sys.stderr = _BeamTracebacks(sys.stderr)
    library()


class _BeamTracebacks:
    """sys.stderr without the tracebacks that Beam's SDK worker prints for a failed bundle
    (`sdk_worker._execute`: `print(traceback_string, file=sys.stderr)`) before the runner
    raises the error, which the command reports on one line; they go to the debug log.
    Everything else is written through."""

    MARK = "apache_beam/runners/worker/sdk_worker.py"

    def __init__(self, stream: IO[str]):
        self._stream = stream
        self._dropped = threading.local()

    def write(self, text: str) -> int:
        if text.startswith("Traceback (most recent call last):") and self.MARK in text:
            log.debug("a Beam bundle failed:\n%s", text)
            self._dropped.last = True
            return len(text)
        if text == "\n" and getattr(self._dropped, "last", False):  # print's end
            self._dropped.last = False
            return len(text)
        self._dropped.last = False
        return self._stream.write(text)

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


def library() -> None:
    """Quiet first imports of TensorFlow and Beam (module docstring); the user's
    `TF_CPP_MIN_LOG_LEVEL` is kept. Idempotent."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    for name in QUIET_IMPORTS:
        if name not in sys.modules and not any(
            isinstance(f, _QuietImport) and f.name == name for f in sys.meta_path
        ):
            sys.meta_path.insert(0, _QuietImport(name))


PROGRESS_ENV = "RESEG_PROGRESS"
"""`1` forces progress bars, `0` switches them off; unset: on a terminal only."""


def force_progress() -> None:
    """Draw progress bars even where the output is not a terminal (`--progress`).

    An environment variable, so Beam's worker processes of this run inherit it."""
    os.environ[PROGRESS_ENV] = "1"


def progress_bars(stream: IO[str] | None = None) -> bool:
    """Whether to draw a progress bar on `stream` (default stderr, where tqdm writes)."""
    forced = os.environ.get(PROGRESS_ENV, "").strip().lower()
    if forced:
        return forced not in ("0", "false", "no", "off")
    stream = sys.stderr if stream is None else stream
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


@contextlib.contextmanager
def _no_implicit_basic_config() -> Iterator[None]:
    """A `NullHandler` on the root logger for the block where it has no handler, so that a
    module-level `logging.warning()` does not configure logging (module docstring)."""
    root = logging.getLogger()
    if root.handlers:
        yield
        return
    null = logging.NullHandler()
    root.addHandler(null)
    try:
        yield
    finally:
        root.removeHandler(null)


@contextlib.contextmanager
def native_stderr_captured() -> Iterator[None]:
    """Redirect file descriptor 2 (C and C++ code's stderr) into a file for the block.

    Afterwards TensorFlow's C++ log lines go to the debug log; every other line is
    written back to stderr, so nothing else that was written meanwhile (another
    thread's log record, a progress bar) is lost.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            with contextlib.suppress(Exception):
                sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            text = tmp.read().decode("utf-8", errors="replace")
            kept = []
            for line in text.splitlines(keepends=True):
                if TF_NATIVE_LOG.match(line):
                    log.debug("native: %s", line.rstrip())
                else:
                    kept.append(line)
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


class _CapturingLoader(importlib.abc.Loader):
    """Runs another loader's `exec_module` with file descriptor 2 captured."""

    def __init__(self, loader: importlib.abc.Loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module) -> None:
        module.__loader__ = self.loader  # the module keeps its real loader
        if module.__spec__ is not None:
            module.__spec__.loader = self.loader
        with native_stderr_captured(), _no_implicit_basic_config():
            self.loader.exec_module(module)


class _QuietImport(importlib.abc.MetaPathFinder):
    """Import hook: the first import of package `name` runs under `native_stderr_captured`."""

    def __init__(self, name: str):
        self.name = name

    def find_spec(self, fullname, path=None, target=None):
        if fullname != self.name:
            return None
        with contextlib.suppress(ValueError):
            sys.meta_path.remove(self)  # once: the other finders locate the package
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return spec
        spec.loader = _CapturingLoader(spec.loader)
        return spec
