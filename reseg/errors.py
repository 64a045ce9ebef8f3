"""The short exception hierarchy of reseg, and the one place that turns OS errors into it.

User errors (bad config, bad input files, an unusable output place) derive from
`ResegError`; the CLI prints their message on one line and exits with `exit_code`,
with no traceback (`reseg -v` shows it). Anything else is a bug and keeps its
traceback. Exit codes:

    1  ResegError       other user errors
    2  ConfigError      config file: bad key or value, YAML syntax, not UTF-8
    3  InputError       input missing, a folder where a file goes, corrupt, undecodable
    4  SchemaError      TFRecord of a schema version reseg cannot read
    5  ArtifactError    artifact missing or written by an incompatible step
    6  ServingError     TF Serving refused or could not be reached (reseg.serving.rest)
    7  AccessError      permission denied, or a read-only file system
    8  DiskFullError    no space left on the device (or quota exceeded)
    9  OutputError      an output place is unusable (a regular file where a folder goes, ...)
    10 IOFailure        any other operating-system I/O error (EIO, ...)
    11 LeaseError       another run holds the root's lease (one writer per root)
    12 StoreError       the object store is unreachable, dropped the connection or throttled,
                        after the storage clients' own retries
    130                 interrupted (Ctrl-C)

`user_error(exc)` maps object-store outages (`store_unavailable`: the clients' connection,
timeout and throttling errors, also as the text of a Beam worker's error), `OSError` and its kinds, `UnicodeDecodeError`, and GDAL/rasterio
I/O errors (also when Beam wraps them in a `RuntimeError`) to these types, with one line
naming the path and what is wrong; for a full disk, also the free space and, when the
step said how much it writes (`expect_write`), that amount.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path


class ResegError(Exception):
    """Base class of errors caused by what the user gave reseg."""

    exit_code = 1


class ConfigError(ResegError):
    """The YAML configuration is invalid; the message names the key path."""

    exit_code = 2


class InputError(ResegError):
    """An input file is missing, unreadable or inconsistent; the message names it."""

    exit_code = 3


class SchemaError(ResegError):
    """A TFRecord example does not follow a schema version reseg can read."""

    exit_code = 4


class ArtifactError(ResegError):
    """An artifact directory is missing or was written by an incompatible step."""

    exit_code = 5


class AccessError(ResegError):
    """Permission denied (reading an input or writing an output), or a read-only file system."""

    exit_code = 7


class DiskFullError(ResegError):
    """No space left on the device (or the quota is exceeded) while writing."""

    exit_code = 8


class OutputError(ResegError):
    """An output place cannot be used: a regular file where a folder goes, and the like."""

    exit_code = 9


class IOFailure(ResegError):
    """Any other operating-system I/O error (EIO, a stale network mount, ...)."""

    exit_code = 10


class LeaseError(ResegError):
    """Another run writes the root: its lease (`reseg.artifacts.lease`) names the holder."""

    exit_code = 11


class StoreError(ResegError):
    """The object store could not be reached, dropped the connection or throttled the requests
    after the storage clients' retries (`store_unavailable`); what was staged stays for a rerun."""

    exit_code = 12


PLACE_ERRORS = (AccessError, DiskFullError, OutputError, IOFailure, StoreError)
"""Errors of the place written to, not of the inputs: work staged so far stays for a rerun."""


def error_class(name: str) -> type[ResegError]:
    """The error type of this module called `name` (to rebuild one a worker recorded);
    `InputError` for any other name."""
    found = globals().get(name)
    if isinstance(found, type) and issubclass(found, ResegError):
        return found
    return InputError


# --- OS errors ---------------------------------------------------------------------------

_EXPECTED: list[tuple[str, int, str]] = []
"""(folder, bytes, what) of the writes steps announced, newest last (see `expect_write`)."""

_ERRNO_IN_TEXT = re.compile(r"\[Errno (\d+)\]")
_GDAL_FREE = re.compile(
    r"Free disk space available is (\d+) bytes, whereas (\d+) are at least necessary"
)


@contextlib.contextmanager
def expect_write(folder: str | os.PathLike, nbytes: int, what: str) -> Iterator[None]:
    """Within this block a step writes about `nbytes` under `folder`.

    A full disk there is reported with this amount ("... need about N MB"). The
    announcement ends with the block when it succeeds and outlives it when it raises,
    since the CLI reports the error after the block has exited.
    """
    entry = (os.path.abspath(folder), int(nbytes), what)
    _EXPECTED.append(entry)
    del _EXPECTED[:-16]
    yield
    if entry in _EXPECTED:
        _EXPECTED.remove(entry)


def _related(a: str, b: str) -> bool:
    """One of two absolute paths is the other or lies inside it."""
    return os.path.commonpath([a, b]) in (a, b)


def _size(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"  # pragma: no cover - the loop returns at GB


def _existing_parent(path: str) -> str:
    p = Path(path).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return str(p)


def _file_in_the_way(path: str) -> str | None:
    """The first component of `path` that is a regular file (ENOTDIR's culprit)."""
    p = Path(path).absolute()
    for part in [*reversed(p.parents), p]:
        if part.is_file():
            return str(part)
    return None


def _disk_full(
    path: str | None, gdal: re.Match[str] | None, fallback: str | None = None
) -> DiskFullError:
    hint = None
    place = path or fallback
    if place is None:
        hint = _EXPECTED[-1] if _EXPECTED else None
    else:  # the announcement of the folder written to, or of one inside the fallback (root)
        full = os.path.abspath(place)
        hint = next((h for h in reversed(_EXPECTED) if _related(full, h[0])), None)
    where = path or (hint[0] if hint else None) or fallback
    parts = ["no space left on the device"]
    try:
        free = shutil.disk_usage(_existing_parent(where or ".")).free
        parts.append(f"{_size(free)} free")
    except OSError:
        pass
    if gdal is not None:
        parts.append(f"the write needed at least {_size(int(gdal.group(2)))}")
    if hint is not None:
        parts.append(f"{hint[2]} need about {_size(hint[1])}")
    return DiskFullError(f"{where or '(unknown path)'}: {'; '.join(parts)}")


def from_os_error(
    e: OSError, path: str | os.PathLike | None = None, fallback: str | os.PathLike | None = None
) -> ResegError:
    """The user error `e` stands for, naming `path` (default the error's own filename, then
    `fallback`, the place the command writes to)."""
    name = str(path) if path is not None else (str(e.filename) if e.filename else None)
    code = e.errno
    if code is None:
        m = _ERRNO_IN_TEXT.search(str(e))
        code = int(m.group(1)) if m else None
    if code in (errno.ENOSPC, errno.EDQUOT):
        return _disk_full(name, None, None if fallback is None else str(fallback))
    name = name or (None if fallback is None else str(fallback))
    label = name or "(unknown path)"
    if code == errno.ENOENT:
        return InputError(f"{label}: not found")
    if code == errno.EISDIR:
        return InputError(f"{label}: is a folder, expected a file")
    if code == errno.EEXIST:
        if name and os.path.isfile(name):
            return OutputError(
                f"{label}: is a file, expected a folder (or a path that does not exist)"
            )
        return OutputError(f"{label}: already exists")
    if code == errno.ENOTDIR:
        culprit = _file_in_the_way(name) if name else None
        if culprit and culprit != os.path.abspath(name or ""):
            return OutputError(f"{label}: {culprit} is a file, expected a folder")
        return OutputError(f"{label}: is a file, expected a folder")
    if code == errno.EROFS:
        return AccessError(f"{label}: read-only file system")
    if code in (errno.EACCES, errno.EPERM):
        return AccessError(f"{label}: {_permission(name)}")
    reason = e.strerror or str(e)
    return IOFailure(f"{label}: {reason[:1].lower()}{reason[1:]} (errno {code})")


def _permission(name: str | None) -> str:
    """What is not permitted: reading or writing an existing path, or creating a new one."""
    if name is None:
        return "permission denied"
    if os.path.exists(name):
        if os.path.isdir(name):
            if not os.access(name, os.W_OK):
                return "permission denied (the folder is not writable)"
            return "permission denied (the folder is not readable)"
        if not os.access(name, os.R_OK):
            return "permission denied (the file is not readable)"
        return "permission denied (the file is not writable)"
    return f"permission denied (cannot create it in {_existing_parent(name)})"


def from_decode_error(e: UnicodeDecodeError, path: str | os.PathLike, what: str) -> ResegError:
    """A text file that is not UTF-8: name the byte, its line and column."""
    data = e.object if isinstance(e.object, bytes) else bytes(e.object)
    line = data.count(b"\n", 0, e.start) + 1
    col = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
    cls = ConfigError if what == "config" else InputError
    return cls(
        f"{path}: {what} file is not UTF-8 text (byte 0x{data[e.start]:02x} at line {line}, "
        f"column {col}); save it as UTF-8"
    )


def _is_gdal_error(e: BaseException) -> bool:
    # duck-typed: importing rasterio here would load GDAL for every command
    return type(e).__module__.startswith("rasterio")


def _from_gdal(
    e: BaseException, path: str | os.PathLike | None, fallback: str | os.PathLike | None
) -> ResegError | None:
    text = str(e)
    free = _GDAL_FREE.search(text)
    if free is not None or "No space left on device" in text:
        fb = None if fallback is None else str(fallback)
        return _disk_full(str(path) if path else _path_in(text), free, fb)
    if "Permission denied" in text:
        name = str(path) if path else _path_in(text)
        return AccessError(f"{name or '(unknown path)'}: {_permission(name)}")
    if "Read-only file system" in text:
        return AccessError(f"{path or _path_in(text) or '(unknown path)'}: read-only file system")
    return None


def _path_in(text: str) -> str | None:
    m = re.search(r"(/[^\s:'\"]+)", text)
    return m.group(1) if m else None


def chain(exc: BaseException) -> Iterator[BaseException]:
    """`exc` and every exception in its causes and contexts, each once (depth first, a
    cause before the context of the same exception)."""
    seen: set[int] = set()
    stack: list[BaseException | None] = [exc]
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        stack += [e.__context__, e.__cause__]


def user_error(
    exc: BaseException,
    path: str | os.PathLike | None = None,
    fallback: str | os.PathLike | None = None,
) -> ResegError | None:
    """The `ResegError` an exception stands for, or None when it is a bug.

    `path` names the file in the message (default the error's own filename); `fallback`
    is named when neither is known (the CLI passes the `--root`/`--out` it writes to).

    Looks through the exception's causes and contexts (Beam re-raises a worker's
    `OSError` as a `RuntimeError` whose text keeps "[Errno N]").
    """
    if isinstance(exc, ResegError):
        return exc
    store = store_unavailable(exc, path or fallback)
    if store is not None:
        return store
    for e in chain(exc):
        if isinstance(e, ResegError):
            return e
        if _is_gdal_error(e):
            found = _from_gdal(e, path, fallback)
            if found is not None:
                return found
        elif isinstance(e, OSError) and (e.errno is not None or e.filename):
            return from_os_error(e, path, fallback)
        if isinstance(e, UnicodeDecodeError) and path is not None:
            return from_decode_error(e, path, "input")
    text = str(exc)
    m = _ERRNO_IN_TEXT.search(text)
    if m and isinstance(exc, (RuntimeError, OSError)):
        code = int(m.group(1))
        return from_os_error(OSError(code, os.strerror(code)), path, fallback)
    return None


def check_readable(path: str | os.PathLike, what: str) -> None:
    """Raise the user error of a local input file that cannot be read as a file.

    `what` names the input in the message ("image", "label", "config", ...).
    """
    try:
        with open(path, "rb"):
            pass
    except FileNotFoundError:
        raise InputError(f"{path}: {what} file not found") from None
    except OSError as e:
        raise from_os_error(e, path) from None


def check_output_folder(path: str | os.PathLike) -> None:
    """Raise the user error of a local output folder (`--root`, `--out`) that cannot be made:
    the path or a folder above it is a regular file (`OutputError`). Creates nothing."""
    p = os.path.abspath(path)
    if os.path.isfile(p):
        raise OutputError(f"{path}: is a file, expected a folder (or a path that does not exist)")
    culprit = _file_in_the_way(p)
    if culprit is not None:
        raise OutputError(f"{path}: {culprit} is a file, expected a folder")


# --- object-store outages --------------------------------------------------------------------

_STORE_CLIENTS = ("botocore", "aiobotocore", "s3fs", "gcsfs", "google", "aiohttp", "requests")
_THROTTLE_CODES = (
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
    "TooManyRequests",
    "ServiceUnavailable",
    "RequestThrottled",
)
_CONNECTION_TYPES = (
    "EndpointConnectionError",
    "ConnectTimeoutError",
    "ConnectionClosedError",
    "ReadTimeoutError",
    "ProxyConnectionError",
    "ResponseStreamingError",
    "ClientConnectorError",
    "ClientConnectorDNSError",
    "ClientConnectionResetError",
    "ClientOSError",
    "ServerDisconnectedError",
    "ServerTimeoutError",
    "ConnectionTimeoutError",
    "SocketTimeoutError",
    "ClientPayloadError",
    "FSTimeoutError",
)
# what these errors say, as Beam passes a worker's error on: as the text of a RuntimeError
_CONNECTION_TEXT = re.compile(
    r"(?:" + "|".join(_CONNECTION_TYPES) + r")\b"
    r"|Could not connect to the endpoint URL|Cannot connect to host"
    r"|Connection was closed before we received a valid response"
)
_THROTTLE_TEXT = re.compile(
    r"\((?:" + "|".join(_THROTTLE_CODES) + r")\) when calling"
    r"|Please reduce your request rate|\b429 Too Many Requests"
)
_ENDPOINT_URL = re.compile(r"https?://[^/\s\"']+")
_ENDPOINT_HOST = re.compile(r"host ([\w.-]+:\d+)")
_REASONS = (
    ("Name or service not known", "the host name does not resolve"),
    ("Temporary failure in name resolution", "the host name does not resolve"),
    ("nodename nor servname", "the host name does not resolve"),
    ("Connection refused", "connection refused"),
    ("Connect call failed", "connection refused"),
    ("Connection reset", "the connection was reset"),
    ("closed before we received", "the connection was dropped"),
    ("Server disconnected", "the connection was dropped"),
    ("timed out", "timed out"),
    ("Timeout", "timed out"),
)


def _module(e: BaseException) -> str:
    return type(e).__module__.split(".")[0]


def store_unavailable(
    exc: BaseException, where: str | os.PathLike | None = None
) -> StoreError | None:
    """The `StoreError` of an object store that could not be reached, dropped the connection
    or throttled after the clients' retries; None for any other error.

    Recognised by the storage clients' exception types (botocore, aiobotocore, aiohttp,
    s3fs, gcsfs, google-auth, requests: duck-typed by module and name, nothing is imported)
    anywhere in the chain of causes, a socket error raised under one of them, or, for
    an error that Beam re-raised from a worker as text, by those names and messages.
    `where` (the root or URI) starts the line.
    """
    links = list(chain(exc))
    client = any(_module(e) in _STORE_CLIENTS for e in links)
    kind = None
    for e in links:
        name = type(e).__name__
        code = ""
        response = getattr(e, "response", None)
        if isinstance(response, dict):
            code = str(response.get("Error", {}).get("Code", ""))
        status = getattr(e, "code", None) if _module(e) == "gcsfs" else None
        if client and (code in _THROTTLE_CODES or code == "503" or status in (429, 503)):
            kind = "throttled"
            break
        if _module(e) in _STORE_CLIENTS and name in _CONNECTION_TYPES:
            kind = "unreachable"
        elif client and isinstance(e, (ConnectionError, TimeoutError)):
            kind = kind or "unreachable"
        elif client and type(e).__name__ == "gaierror":
            kind = kind or "unreachable"
    text = "\n".join(str(e) for e in links)
    if kind is None and isinstance(exc, RuntimeError | OSError):  # Beam's text of a worker's error
        if _THROTTLE_TEXT.search(text):
            kind = "throttled"
        elif _CONNECTION_TEXT.search(text):
            kind = "unreachable"
    if kind is None:
        return None
    label = str(where) if where else "object store"
    if kind == "throttled":
        return StoreError(
            f"{label}: the object store throttled the requests (SlowDown) and the clients' "
            "retries ran out; run again later (retries: AWS_MAX_ATTEMPTS, AWS_RETRY_MODE)"
        )
    url, host = _ENDPOINT_URL.search(text), _ENDPOINT_HOST.search(text)
    at = f" at {url.group(0)}" if url else f" at {host.group(1)}" if host else ""
    reason = next((r for k, r in _REASONS if k.lower() in text.lower()), "no connection")
    return StoreError(
        f"{label}: object store unreachable{at} ({reason}, after the clients' retries); "
        "nothing unfinished is published: run again when it is back"
    )
