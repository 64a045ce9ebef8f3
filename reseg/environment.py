"""What this process runs on: processor, its instruction sets, library versions, load.

A speed figure means little without the machine it was measured on, and a bug report
little without the versions it happened with. `reseg info` prints these and every
benchmark writes them into its result file (`bench/_env.py`); both read them here, so
the two never disagree.

The storage settings are reported without their secrets: which credentials exist, never
their values.

Nothing here imports a library to learn its version (`importlib.metadata` reads the
installed distribution's metadata), so asking costs milliseconds, not TensorFlow's
start-up.
"""

from __future__ import annotations

import functools
import importlib.metadata
import os
import platform
from pathlib import Path
from urllib.parse import urlparse

from reseg import storage

SPEED_FLAGS = (
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512bw",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
    "amx_fp16",
    "asimd",
    "sve",
    "bf16",
)
"""The processor flags that decide how fast TensorFlow's (oneDNN's) kernels run: x86 vector
widths (AVX2 + FMA, AVX-512), the bfloat16 / float16 / int8 units (AVX-512 BF16 / FP16 /
VNNI, AMX tiles), and Arm's (NEON `asimd`, `sve`, `bf16`)."""

LIBRARIES = (
    "reseg",
    "tensorflow",
    "keras",
    "numpy",
    "apache-beam",
    "mlflow",
    "rasterio",
    "pydantic",
    "fsspec",
    "s3fs",
    "gcsfs",
)
"""Distributions whose versions `reseg info` and the benchmarks report."""


@functools.cache
def _cpuinfo(cpuinfo: str) -> dict[str, str]:
    """The fields of the first processor of /proc/cpuinfo (empty where it is missing)."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return {}
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break  # the first processor's block is enough: they are alike
            continue
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    return fields


def cpu_flags(
    names: tuple[str, ...] = SPEED_FLAGS, cpuinfo: str = "/proc/cpuinfo"
) -> tuple[str, ...]:
    """The flags of `names` this processor has, in the order of `names`.

    From the `flags` line of /proc/cpuinfo (x86) or its `Features` line (Arm); empty
    where the file is missing (macOS, Windows), where no portable source lists them.
    """
    fields = _cpuinfo(cpuinfo)
    have = set((fields.get("flags") or fields.get("Features") or "").split())
    return tuple(f for f in names if f in have)


def processor(cpuinfo: str = "/proc/cpuinfo") -> str:
    """The processor's model name: /proc/cpuinfo's `model name`, else what `platform` knows.

    `platform.processor()` is empty on many Linux systems and only an architecture
    elsewhere, so /proc/cpuinfo comes first; the architecture is the last resort.
    """
    fields = _cpuinfo(cpuinfo)
    return (
        fields.get("model name")
        or fields.get("Model")  # Raspberry Pi and other Arm boards
        or platform.processor()
        or platform.machine()
        or "unknown"
    )


def version(distribution: str) -> str | None:
    """The installed version of `distribution` (pip's name), None where it is not installed."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def versions(distributions: tuple[str, ...] = LIBRARIES) -> dict[str, str | None]:
    """`version` of each distribution."""
    return {d: version(d) for d in distributions}


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (runnable processes), None where unavailable.

    Read before and after a benchmark: a load near or above the number of cores while
    it ran means its timings were shared with other work.
    """
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):  # Windows has no getloadavg
        return None


def machine() -> dict[str, object]:
    """Processor, its speed-relevant flags, core count, operating system and Python."""
    return {
        "processor": processor(),
        "cpu_flags": list(cpu_flags()),
        "cpu_count": os.cpu_count(),
        "architecture": platform.machine(),
        "system": platform.platform(),
        "python": platform.python_version(),
    }


AWS_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
"""The AWS variables that together are credentials (their values are never reported)."""


def cache_usage() -> dict[str, object]:
    """The local cache folder (`RESEG_CACHE_DIR` or its default), its size and bound.

    The size walks the folder (files only, links not followed): the shard cache is kept
    under its bound, the downloaded folders and staging areas beside it are not.
    """
    folder = storage.cache_dir()
    size = files = 0
    for dirpath, _, names in os.walk(folder):
        for name in names:
            try:
                size += os.lstat(os.path.join(dirpath, name)).st_size
                files += 1
            except OSError:  # evicted by another process meanwhile
                pass
    return {
        "dir": str(folder),
        "set_by": storage.CACHE_ENV if os.environ.get(storage.CACHE_ENV) else "default",
        "exists": folder.is_dir(),
        "bytes": size,
        "files": files,
        "bound_bytes": storage.cache_bytes(),
    }


def _endpoint(value: str | None) -> str | None:
    """An endpoint URL without any user:password part."""
    if not value:
        return None
    u = urlparse(value if "://" in value else f"//{value}")
    host = u.hostname or ""
    netloc = f"{host}:{u.port}" if u.port else host
    return u._replace(netloc=netloc).geturl().removeprefix("//")


def storage_settings() -> dict[str, object]:
    """The object-store settings reseg's clients (fsspec, GDAL) will find in this process.

    Endpoints, profile and region are shown; of credentials only where they come from
    (variables, a credentials file, a web identity, a container role): never a key.
    """
    env = os.environ
    aws_sources = []
    if all(env.get(k) for k in AWS_KEYS):
        aws_sources.append("AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY")
    shared = Path(env.get("AWS_SHARED_CREDENTIALS_FILE") or Path.home() / ".aws" / "credentials")
    if shared.is_file():
        aws_sources.append(f"credentials file {shared}")
    if env.get("AWS_WEB_IDENTITY_TOKEN_FILE"):
        aws_sources.append("AWS_WEB_IDENTITY_TOKEN_FILE")
    if env.get("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI") or env.get(
        "AWS_CONTAINER_CREDENTIALS_FULL_URI"
    ):
        aws_sources.append("container credentials")
    google = env.get("GOOGLE_APPLICATION_CREDENTIALS")
    adc = Path.home() / ".config" / "gcloud" / "application_default_credentials.json"
    return {
        "AWS_ENDPOINT_URL": _endpoint(
            env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
        ),
        "AWS_PROFILE": env.get("AWS_PROFILE"),
        "AWS_REGION": env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION"),
        "aws_credentials": aws_sources,
        "STORAGE_EMULATOR_HOST": _endpoint(env.get("STORAGE_EMULATOR_HOST")),
        "GOOGLE_APPLICATION_CREDENTIALS": (
            None
            if not google
            else "set, file exists"
            if Path(google).is_file()
            else "set, no such file"
        ),
        "google_default_credentials": adc.is_file(),
    }
