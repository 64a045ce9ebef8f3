"""Where files live: local paths and object-store URIs (`s3://`, `gs://`) through one path type.

reseg takes a location as `storage.path(x)`: a `pathlib.Path` for a local path (so
everything local behaves exactly as before) and a `universal_pathlib` `UPath` backed by
fsspec (s3fs, gcsfs) for a URI. Both have the same `/`, `open`, `read_text`, `glob`,
`exists`, `iterdir`, `unlink` and `name`/`parent`/`with_name`, so a root in a bucket and
a root on disk go through the same lines. What differs is here and only here:

- no rename on object storage: `replace` copies (server side) and deletes, and
  `atomic_write` writes the object directly (an object appears only when its upload
  completes, so a reader never sees part of one);
- rasters are opened by GDAL (rasterio) through its own cloud paths (`/vsis3/`,
  `/vsigs/`), configured from the same standard settings as the Python clients
  (`configure_gdal`);
- libraries that need a local file (TensorFlow's readers, Keras' saver) get one through
  `local_copy` (a size-bounded cache) or `upload`.

Credentials and endpoints come only from each ecosystem's standard settings: the AWS
variables and profiles (`AWS_ACCESS_KEY_ID`, `AWS_PROFILE`, `AWS_ENDPOINT_URL` for
MinIO or Ceph, ...) and Google's application-default credentials (`STORAGE_EMULATOR_HOST`
for an emulator). Nothing here is reseg-specific.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import io
import os
import posixpath
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, TypeAlias
from urllib.parse import urlparse

from reseg.errors import (
    AccessError,
    InputError,
    IOFailure,
    OutputError,
    ResegError,
    StoreError,
    check_output_folder,
    check_readable,
    store_unavailable,
)

SCHEMES = ("s3", "gs")
"""URI schemes reseg reads and writes (besides local paths)."""

AnyPath: TypeAlias = Any
"""`pathlib.Path` or `upath.UPath` (typed loosely: UPath is not a Path subclass for URIs)."""

CACHE_ENV = "RESEG_CACHE_DIR"
"""Folder of the local shard cache (default: `~/.cache/reseg`)."""
CACHE_BYTES = 20 << 30
"""Default size bound of the local shard cache (`RESEG_CACHE_BYTES` overrides)."""


def scheme(x: str | os.PathLike) -> str:
    """The URI scheme of `x` ('' for a local path; a Windows drive letter is not one)."""
    s = str(x)
    if "://" not in s:
        return ""
    sch = s.split("://", 1)[0].lower()
    return sch if len(sch) > 1 else ""


def is_remote(x: str | os.PathLike) -> bool:
    """True for an object-store URI (or a path object backed by one)."""
    return bool(scheme(x))


def check_uri(x: str | os.PathLike) -> None:
    """Raise `InputError` for a URI whose scheme reseg does not read or write."""
    sch = scheme(x)
    if sch and sch not in SCHEMES:
        raise InputError(
            f"{x}: unsupported URI scheme '{sch}://' (use a local path, s3:// or gs://)"
        )


def path(x: str | os.PathLike) -> AnyPath:
    """The path object of a location: `pathlib.Path` when local, `UPath` for s3:// and gs://."""
    if not isinstance(x, (str, os.PathLike)) and is_remote(x):
        return x  # already a UPath
    if not is_remote(x):
        return x if isinstance(x, Path) else Path(x)
    check_uri(x)
    from upath import UPath  # optional heavy import: only for URIs

    # listings are never cached: other processes (Beam workers) write beside us
    return UPath(str(x), use_listings_cache=False)


def absolute(x: str | os.PathLike) -> AnyPath:
    """`path(x)` made absolute: a local path against the working folder (links are not
    followed), a URI as it is."""
    p = path(x)
    return p if is_remote(p) else p.absolute()


def resolve(x: str | os.PathLike) -> AnyPath:
    """`path(x)` absolute with `..` resolved: a local path with its links resolved too
    (`Path.resolve`), a URI normalised (`a/../b` is `b`; no trailing '/')."""
    if not is_remote(x):
        return Path(x).resolve()
    p = path(x)
    return path(f"{scheme(p)}://" + posixpath.normpath(p.path))


def resolved(x: str | os.PathLike) -> str:
    """The text that names location `x` in a record (a manifest, a log line, a fingerprint):
    `str(resolve(x))`."""
    return str(resolve(x))


def same(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether `a` and `b` name the same location (local links resolved)."""
    return resolved(a) == resolved(b)


def against(x: str, base: str | os.PathLike) -> str:
    """A location as written in a file, as text: a URI checked and kept, a local path with `~`
    expanded and made absolute against folder `base` (links not followed)."""
    if is_remote(x):
        check_uri(x)
        return x
    p = Path(os.path.expanduser(x))
    return str(p if p.is_absolute() else (Path(base) / p).resolve())


def argument(x: str) -> AnyPath | str:
    """argparse `type` of a location: `path(x)`, or the text itself for an unsupported scheme
    (refused with one line by the command, inside its error handling, not by argparse)."""
    try:
        return path(x)
    except InputError:
        return x


_CLIENT_MODULES = ("botocore", "aiobotocore", "s3fs", "gcsfs", "google", "fsspec", "aiohttp")


def client_error(e: BaseException, where: str | os.PathLike | None) -> ResegError | None:
    """The one-line error of an exception an object store's client raised (looking through
    causes), or None when it is not one."""
    seen: set[int] = set()
    stack: list[BaseException | None] = [e]
    while stack:
        x = stack.pop()
        if x is None or id(x) in seen:
            continue
        seen.add(id(x))
        if type(x).__module__.split(".")[0] in _CLIENT_MODULES:
            return remote_error(x, where or "object store")
        stack += [x.__cause__, x.__context__]
    return None


def relpath(p: AnyPath, start: AnyPath) -> str:
    """`p` relative to folder `start` ('/'-separated; both local, or in the same bucket)."""
    if not is_remote(p):
        return os.path.relpath(p, start)
    return posixpath.relpath(path(p).path, path(start).path)


def join(folder: AnyPath, rel: str) -> AnyPath:
    """Folder `folder` joined with relative path `rel`, with `..` resolved on object storage;
    `rel` itself when it is a URI or an absolute path."""
    if is_remote(rel) or os.path.isabs(rel):
        return path(rel)
    folder = path(folder)
    if not is_remote(folder):
        return folder / rel
    sch = scheme(folder)
    return path(f"{sch}://" + posixpath.normpath(posixpath.join(folder.path, rel)))


def gdal_path(p: str | os.PathLike) -> str:
    """The path GDAL opens: `/vsis3/bucket/key` or `/vsigs/bucket/key` for URIs (after
    `configure_gdal`), the local path otherwise."""
    s = str(p)
    sch = scheme(s)
    if not sch:
        return s
    check_uri(s)
    configure_gdal()
    return f"/vsi{sch}/{s.split('://', 1)[1]}"


def configure_gdal() -> None:
    """Give GDAL the endpoint the Python clients use, from the same standard settings.

    `AWS_ENDPOINT_URL` (or `AWS_ENDPOINT_URL_S3`), which botocore reads, becomes GDAL's
    `AWS_S3_ENDPOINT` (host:port), `AWS_HTTPS` (NO for http://) and `AWS_VIRTUAL_HOSTING`
    (FALSE: path-style, as MinIO and Ceph need); `STORAGE_EMULATOR_HOST` becomes
    `CPL_GS_ENDPOINT` with unsigned requests (the emulator has no credentials). Values
    the user set for GDAL are kept. Region and credentials GDAL reads itself from the
    same AWS variables, profiles and Google credentials. Done on every open (a few
    dictionary lookups), so an endpoint set after the first open, e.g. a second
    store, is seen too.
    """
    env = os.environ
    endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
    if endpoint:
        u = urlparse(endpoint if "://" in endpoint else f"https://{endpoint}")
        env.setdefault("AWS_S3_ENDPOINT", u.netloc)
        env.setdefault("AWS_HTTPS", "NO" if u.scheme == "http" else "YES")
        env.setdefault("AWS_VIRTUAL_HOSTING", "FALSE")
    emulator = env.get("STORAGE_EMULATOR_HOST")
    if emulator:
        base = emulator if "://" in emulator else f"http://{emulator}"
        env.setdefault("CPL_GS_ENDPOINT", base.rstrip("/") + "/")
        env.setdefault("GS_NO_SIGN_REQUEST", "YES")
    env.setdefault("GDAL_DISABLE_READDIR_ON_OPEN", "EMPTY_DIR")


# --- writing without rename ---------------------------------------------------------------


@contextlib.contextmanager
def atomic_write(p: AnyPath, mode: str = "wb") -> Iterator[IO]:
    """A file handle whose content appears at `p` only when the block ends normally.

    Local: a `.partial` file, fsynced and renamed. Object storage: the content is kept in
    memory and put as one object when the block ends (nothing on an error); the store
    makes an object visible only whole.
    """
    p = path(p)
    if is_remote(p):
        buf = io.StringIO() if "b" not in mode else io.BytesIO()
        yield buf
        data = buf.getvalue()
        p.fs.pipe_file(p.path, data.encode() if isinstance(data, str) else data)
        return
    part = p.with_name(p.name + ".partial")
    with open(part, mode) as fh:
        try:
            yield fh
        except BaseException:
            # closing flushes; on a full disk that fails too, and must not hide the first error
            # (nor print "Exception ignored" when a dropped generator is finalised)
            with contextlib.suppress(OSError):
                fh.close()
            part.unlink(missing_ok=True)
            raise
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(part, p)


def save_figure(fig: Any, p: AnyPath) -> None:
    """`fig.savefig` (matplotlib) to a local path or an object, in the format of its suffix."""
    p = path(p)
    with atomic_write(p, "wb") as fh:
        fig.savefig(fh, format=p.suffix.lstrip(".") or "png")


def replace(src: AnyPath, dst: AnyPath) -> None:
    """Move a file (or a folder of files) to `dst`, replacing it: `os.replace` on a disk;
    on object storage a server-side copy of each object, then the source is deleted."""
    src, dst = path(src), path(dst)
    if not is_remote(src):
        os.replace(src, dst)
        return
    fs = src.fs
    if fs.isdir(src.path):
        fs.copy(src.path.rstrip("/") + "/", dst.path.rstrip("/") + "/", recursive=True)
    else:
        fs.copy(src.path, dst.path)
    rmtree(src)


def rmtree(p: AnyPath) -> None:
    """Remove a file or a folder and everything under it; nothing if it is not there."""
    p = path(p)
    if not is_remote(p):
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        return
    with contextlib.suppress(FileNotFoundError):
        p.fs.rm(p.path, recursive=True)


def files_under(p: AnyPath) -> list[str]:
    """Paths (relative, '/'-separated) of every file under folder `p`, sorted."""
    p = path(p)
    if not is_remote(p):
        return sorted(str(f.relative_to(p)) for f in p.rglob("*") if f.is_file())
    base = p.path.rstrip("/") + "/"
    found = p.fs.find(base)
    return sorted(f[len(base) :] for f in found if f.startswith(base))


def listdir(p: AnyPath) -> list[str]:
    """Names of the files and folders directly in folder `p` (hidden ones too), sorted; none
    when it is not there."""
    p = path(p)
    if not is_remote(p):
        return sorted(os.listdir(p)) if p.is_dir() else []
    return sorted({n.split("/", 1)[0] for n in files_under(p)})


def files_with_versions(p: AnyPath) -> dict[str, tuple[int, str]]:
    """Each object under folder `p` on object storage: (size, version) by relative path, the
    version being what the store keeps of its content (S3's ETag, GCS's CRC32C); one listing."""
    p = path(p)
    base = p.path.rstrip("/") + "/"
    found = p.fs.find(base, detail=True)
    return {
        k[len(base) :]: (
            int(v.get("size") or 0),
            str(v.get("ETag") or v.get("crc32c") or v.get("md5Hash") or ""),
        )
        for k, v in found.items()
        if k.startswith(base) and v.get("type", "file") != "directory"
    }


def stat(p: str | os.PathLike) -> tuple[int, str]:
    """(size, version) of file `p`: its modification time (ns) on a disk; what the store keeps
    of the object's content on object storage (S3's ETag, GCS's generation)."""
    if not is_remote(p):
        st = os.stat(p)
        return st.st_size, str(st.st_mtime_ns)
    u = path(p)
    try:
        info = u.fs.info(u.path)
    except Exception as e:  # the object store's client raises its own types
        raise client_error(e, p) or remote_error(e, p) from None
    version = info.get("ETag") or info.get("etag") or info.get("generation") or ""
    return int(info.get("size") or 0), str(version)


def read_range(p: str | os.PathLike, start: int, end: int) -> bytes:
    """Bytes [start, end) of file `p` (one ranged GET on object storage)."""
    if not is_remote(p):
        with open(p, "rb") as fh:
            fh.seek(start)
            return fh.read(end - start)
    u = path(p)
    try:
        return u.fs.cat_file(u.path, start=start, end=end)
    except Exception as e:  # the object store's client raises its own types
        raise client_error(e, p) or remote_error(e, p) from None


@contextlib.contextmanager
def written_locally(final: AnyPath, fp: str) -> Iterator[Path]:
    """A local folder for writers that need files (GDAL, Keras) whose content ends up in folder
    `final`: `final` itself on a disk; on object storage a staging folder (`local_stage`)
    whose files are uploaded, sorted by name, when the block ends without an error and then
    removed (after an error it is kept, so a rerun on this machine can look at it)."""
    final = path(final)
    if not is_remote(final):
        final.mkdir(parents=True, exist_ok=True)
        yield final
        return
    local = local_stage(final, fp)
    yield local
    for name in sorted(os.listdir(local)):
        upload(local / name, final / name)
    shutil.rmtree(local, ignore_errors=True)


def local_mirror(p: AnyPath) -> Path:
    """A local folder for files that grow while they are written (logs) and belong in folder
    `p`: `p` itself on a disk; for a folder on object storage, whose objects cannot be appended
    to, a folder in the cache named after `p`'s URI, whose files `mirror_back` copies into `p`."""
    p = path(p)
    if not is_remote(p):
        return p
    return cache_dir() / "mirrors" / f"{hashlib.sha256(str(p).encode()).hexdigest()[:16]}-{p.name}"


def mirror_back(local: Path, p: AnyPath) -> None:
    """Copy file `local` of `local_mirror(p)` into folder `p` (nothing to do on a disk)."""
    if is_remote(p):
        upload(local, path(p) / local.name)


def mkdir(p: AnyPath) -> None:
    """Make folder `p` (with parents); on object storage folders are implicit: nothing."""
    p = path(p)
    if not is_remote(p):
        p.mkdir(parents=True, exist_ok=True)


# --- one writer: a lock on a disk, conditional puts on object storage -----------------------


def lock_local(p: Path) -> int | None:
    """Lock local file `p` (created if absent) exclusively, without waiting (`flock`).

    Returns its open descriptor, or None when another process holds the lock. The lock lasts
    while the descriptor is open, so the kernel ends it when its process dies, kill -9
    included. A holder removes the file before it closes the descriptor; a lock won on a file
    removed meanwhile is dropped and tried again on the new one.
    """
    while True:
        fd = os.open(p, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        try:
            same = os.stat(p).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)


def read_object(p: AnyPath) -> tuple[bytes, str] | None:
    """The content of object `p` and its version (ETag on S3, generation on GCS); None when
    there is none. The version is read before the content, so a `put_if` with it fails when
    the object changed after the version was read."""
    p = path(p)
    try:
        info = p.fs.info(p.path)
        data = p.fs.cat_file(p.path)
    except FileNotFoundError:
        return None
    return data, str(info.get("ETag") or info.get("generation") or "")


def put_new(p: AnyPath, data: bytes) -> bool:
    """Create object `p` only when there is none (a conditional put: `If-None-Match: *` on
    S3, `ifGenerationMatch=0` on GCS); False when an object is there."""
    p = path(p)
    try:
        p.fs.pipe_file(p.path, data, mode="create")
    except FileExistsError:
        return False
    return True


def put_if(p: AnyPath, data: bytes, version: str) -> bool:
    """Replace object `p` only while it is at `version` (from `read_object`); False when it
    changed or is gone.

    S3: one put with `If-Match: <ETag>`, decided by the store. gcsfs's put takes no
    generation condition, so on GCS this reads the version and puts: two writers in the
    same instant can both succeed there.
    """
    p = path(p)
    if scheme(p) == "s3":
        try:
            p.fs.pipe_file(p.path, data, IfMatch=version)
        except FileNotFoundError:
            return False
        except OSError as e:  # s3fs: PreconditionFailed is EINVAL
            if e.errno == errno.EINVAL or "precondition" in str(e).lower():
                return False
            raise
        return True
    now = read_object(p)
    if now is None or now[1] != version:
        return False
    p.fs.pipe_file(p.path, data)
    return True


# --- local copies for libraries that need files ---------------------------------------------

_CACHE_LOCK = threading.Lock()


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "reseg")


def cache_bytes() -> int:
    return int(os.environ.get("RESEG_CACHE_BYTES", CACHE_BYTES))


def local_copy(p: AnyPath, key: str = "", keep: frozenset[Path] = frozenset()) -> Path:
    """A local file with the content of `p` (itself when local).

    Objects are downloaded into the shard cache (`$RESEG_CACHE_DIR`, default
    `~/.cache/reseg`) under a name from their URI and `key` (default the object's ETag or
    generation and size: a rewritten object is fetched again). The cache is kept
    under `RESEG_CACHE_BYTES` (default 20 GiB) by evicting the least recently used files
    (never those in `keep`).
    """
    p = path(p)
    if not is_remote(p):
        return p
    if not key:
        try:  # the object's version: a rewritten object gets a new cache entry
            info = p.fs.info(p.path)
        except Exception as e:
            raise client_error(e, p) or remote_error(e, p) from None
        key = str(info.get("ETag") or info.get("generation") or info.get("mtime")) + str(
            info.get("size")
        )
    tag = hashlib.sha256(f"{p}|{key}".encode()).hexdigest()[:16]
    local = cache_dir() / "objects" / f"{tag}-{p.name}"
    if local.exists():
        os.utime(local)
        return local
    local.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=local.parent, prefix=".part-")
    os.close(fd)
    try:
        p.fs.get_file(p.path, tmp)
        os.replace(tmp, local)
    finally:
        Path(tmp).unlink(missing_ok=True)
    _evict(local.parent, keep={local, *keep})
    return local


def local_copies(files: list[AnyPath]) -> list[Path]:
    """`local_copy` of each file, all kept in the cache together (TensorFlow reads them over a
    whole training). Raises `OutputError` when they alone exceed the cache's size bound."""
    if not any(is_remote(f) for f in files):
        return [Path(f) for f in files]
    out: list[Path] = []
    for f in files:
        out.append(local_copy(f, keep=frozenset(out)))
    need = sum(p.stat().st_size for p in out if p.exists())
    if need > cache_bytes():
        raise OutputError(
            f"{cache_dir()}: the {len(out)} tile files need {need / 2**30:.1f} GiB, more than "
            f"the cache bound RESEG_CACHE_BYTES={cache_bytes()}; raise it"
        )
    return out


def local_folder(p: AnyPath) -> Path:
    """A local folder with the content of folder `p` (itself when local), for readers that
    need a whole folder of files (TensorFlow's SavedModel loader).

    Downloaded once into the cache (`$RESEG_CACHE_DIR/folders/`) under a name from the URI
    and the objects' versions (ETag or generation, size): a rewritten folder is fetched
    again, and every later call (another process or Beam worker on this machine) reuses
    the copy. Kept outside the size-bounded shard cache.
    """
    p = path(p)
    if not is_remote(p):
        return p
    base = p.path.rstrip("/") + "/"
    try:
        found = p.fs.find(base, detail=True)
    except Exception as e:
        raise client_error(e, p) or remote_error(e, p) from None
    if not found:
        raise InputError(f"{p}: folder not found")
    versions = sorted(
        (k[len(base) :], str(v.get("ETag") or v.get("generation") or v.get("mtime")), v.get("size"))
        for k, v in found.items()
    )
    tag = hashlib.sha256(f"{p}|{versions}".encode()).hexdigest()[:16]
    local = cache_dir() / "folders" / f"{tag}-{p.name}"
    if local.is_dir():
        return local
    local.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=local.parent, prefix=".part-"))
    try:
        for name, _, _ in versions:
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            p.fs.get_file(base + name, str(tmp / name))
        try:
            os.replace(tmp, local)
        except OSError:  # another process finished the same copy first
            if not local.is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return local


def fetch(p: AnyPath, folder: str | os.PathLike) -> Path:
    """Download file or folder `p` into local `folder`, keeping its name; returns the copy."""
    p = path(p)
    dest = Path(folder) / p.name
    if not is_remote(p):
        return Path(p)
    if p.is_dir():
        p.fs.get(p.path.rstrip("/") + "/", str(dest) + "/", recursive=True)
    else:
        p.fs.get_file(p.path, str(dest))
    return dest


def _evict(folder: Path, keep: set[Path]) -> None:
    """Delete the least recently used cache files until the cache is under its bound."""
    with _CACHE_LOCK:
        files = [f for f in folder.iterdir() if f.is_file() and not f.name.startswith(".")]
        stats = {f: f.stat() for f in files}
        total = sum(s.st_size for s in stats.values())
        bound = cache_bytes()
        for f in sorted(files, key=lambda f: stats[f].st_atime):
            if total <= bound:
                break
            if f not in keep:
                f.unlink(missing_ok=True)
                total -= stats[f].st_size


def local_stage(final: AnyPath, fp: str) -> Path:
    """A local folder to stage object-store artifact `final` in, for writers that need files
    (Keras, TensorFlow checkpoints): kept across crashes on this machine, so a rerun here
    resumes."""
    tag = hashlib.sha256(str(final).encode()).hexdigest()[:16]
    d = cache_dir() / "staging" / f"{tag}-{path(final).name}.tmp-{fp[:12]}"
    d.mkdir(parents=True, exist_ok=True)
    return d


def upload(local: str | os.PathLike, dst: AnyPath) -> None:
    """Copy a local file or folder to `dst` (a URI or a local path)."""
    dst = path(dst)
    local = Path(local)
    if not is_remote(dst):
        if local.is_dir():
            shutil.copytree(local, dst, dirs_exist_ok=True)
        else:
            shutil.copy2(local, dst)
        return
    if local.is_dir():
        dst.fs.put(str(local).rstrip("/") + "/", dst.path.rstrip("/") + "/", recursive=True)
    else:
        dst.fs.put_file(str(local), dst.path)


# --- errors ---------------------------------------------------------------------------------


PROXY_ENV = ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "https_proxy", "http_proxy", "all_proxy")
_RESOLVED: set[str] = set()


def endpoint(x: str | os.PathLike) -> str:
    """The endpoint URL the clients send requests for URI `x` to, from the same settings they
    read: `AWS_ENDPOINT_URL_S3` / `AWS_ENDPOINT_URL` (else AWS's regional S3 endpoint) and
    `STORAGE_EMULATOR_HOST` (else `https://storage.googleapis.com`)."""
    env = os.environ
    if scheme(x) == "gs":
        emulator = env.get("STORAGE_EMULATOR_HOST")
        if not emulator:
            return "https://storage.googleapis.com"
        return emulator if "://" in emulator else f"http://{emulator}"
    url = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
    if url:
        return url if "://" in url else f"https://{url}"
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1"
    return f"https://s3.{region}.amazonaws.com"


def check_endpoint(x: str | os.PathLike) -> None:
    """Raise `StoreError` at once when the host name of the endpoint of URI `x` does not
    resolve (no network, no DNS, a typo in the endpoint, `gs://` without an emulator on an
    offline machine), instead of the clients' retries and credential probes (about a
    minute for gcsfs). Once per endpoint and process; skipped behind an HTTP proxy (the
    proxy resolves). Other faults (refused, reset, throttled) are left to the clients'
    retries, which the storage libraries' own settings configure (docs: Reliability)."""
    if not is_remote(x) or any(env in os.environ for env in PROXY_ENV):
        return
    url = endpoint(x)
    u = urlparse(url)
    host = u.hostname or ""
    if not host or host in _RESOLVED:
        return
    import socket

    try:
        socket.getaddrinfo(host, u.port or (443 if u.scheme == "https" else 80))
    except (socket.gaierror, UnicodeError) as e:
        raise StoreError(
            f"{x}: object store unreachable at {url} (the host name does not resolve: "
            f"{e.args[-1] if e.args else e}); check the network, or the endpoint setting "
            f"({'STORAGE_EMULATOR_HOST' if scheme(x) == 'gs' else 'AWS_ENDPOINT_URL'})"
        ) from None
    _RESOLVED.add(host)


def check_output(root: AnyPath) -> None:
    """Raise the one-line error of an object-store root that cannot be written: an
    unsupported scheme, an endpoint that does not resolve (`check_endpoint`), a bucket that
    does not exist or cannot be reached, missing or refused credentials; or of a local folder
    that cannot be made (`errors.check_output_folder`). Creates nothing."""
    check_uri(root)
    if not is_remote(root):
        check_output_folder(root)
        return
    check_endpoint(root)
    p = path(root)
    bucket = p.path.split("/", 1)[0]
    try:
        p.fs.ls(bucket, refresh=True)
    except FileNotFoundError:
        raise OutputError(f"{root}: bucket '{bucket}' does not exist") from None
    except Exception as e:  # the clients raise their own types; named by `remote_error`
        raise remote_error(e, root) from None


def check_input(x: str | os.PathLike, what: str = "input") -> None:
    """Raise the one-line error of an input file or object that cannot be read; `what` names
    the input in the message ("image", "label", ...)."""
    check_uri(x)
    if not is_remote(x):
        check_readable(x, what)
        return
    check_endpoint(x)
    p = path(x)
    try:
        found = p.fs.exists(p.path)
    except Exception as e:
        raise remote_error(e, x) from None
    if not found:
        raise InputError(f"{x}: {what} file not found")


def remote_error(e: BaseException, where: str | os.PathLike) -> ResegError:
    """The one-line error of a failed object-store call (the client's exception `e`)."""
    down = store_unavailable(e, where)
    if down is not None:
        return down
    text = f"{type(e).__name__}: {e}"
    low = text.lower()
    if isinstance(e, FileNotFoundError) or "nosuchbucket" in low or "nosuchkey" in low:
        return InputError(f"{where}: not found")
    if any(
        s in low
        for s in ("credential", "accessdenied", "forbidden", "invalidaccesskeyid", "signature")
    ) or isinstance(e, PermissionError):
        return AccessError(f"{where}: access refused or no credentials ({_short(e)})")
    if any(s in low for s in ("connect", "endpoint", "timeout", "resolve", "unreachable")):
        return StoreError(f"{where}: object store unreachable ({_short(e)})")
    return IOFailure(f"{where}: object store error ({_short(e)})")


def _short(e: BaseException) -> str:
    s = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return s[:200]
