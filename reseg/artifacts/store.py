"""Artifact directories: staged in `<dir>.tmp-<fingerprint>`, published with the manifest last.

Every component writes one directory, through `stage()`: it works in a staging
directory next to the final one, named after the fingerprint of its inputs and
parameters, so a rerun after a crash finds the same staging directory and can keep
what is complete there. A step is skipped when the published manifest has the same
fingerprint; a reader trusts a directory only when its `manifest.json` is there and
complete.

Publishing on a local disk writes `manifest.json` (and the resolved config) into the
staging directory and renames it into place: readers never see a partial artifact.
Object storage has no rename, so there publishing (1) deletes the old manifest, so
readers stop trusting the old version, (2) deletes the old files, (3) copies the staged
files server side, (4) writes the manifest (one object, whole or absent), and (5)
deletes the staging folder. A crash anywhere in between leaves no manifest, so nothing a
reader trusts, and the staging folder, so the rerun resumes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from reseg import layout, storage
from reseg.errors import PLACE_ERRORS, ArtifactError, ResegError

log = logging.getLogger(__name__)

MANIFEST = layout.MANIFEST
CONFIG = layout.CONFIG_JSON


def fingerprint(*parts: Any) -> str:
    """Stable short hash of JSON-able values."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def read_manifest(path: str | Path) -> dict[str, Any]:
    """The manifest of a published artifact directory."""
    p = storage.path(path) / MANIFEST
    try:
        m = json.loads(p.read_text())
    except FileNotFoundError:
        raise ArtifactError(f"{path}: no {MANIFEST}; run the step that makes it first") from None
    except json.JSONDecodeError as e:
        raise ArtifactError(f"{p}: corrupt manifest ({e})") from None
    if not isinstance(m, dict):  # is_current and every load() index it by key
        raise ArtifactError(f"{p}: corrupt manifest (not a JSON object)")
    return m


def is_published(path: str | Path) -> bool:
    """Whether artifact folder `path` is published: its manifest, written last, is there (a
    folder still being staged or uploaded to a bucket is not)."""
    return (storage.path(path) / MANIFEST).exists()


def is_current(path: str | Path, fp: str) -> bool:
    """True when `path` is a published artifact with fingerprint `fp` whose listed files are
    all there with their sizes (a deleted or truncated file makes the step run again)."""
    try:
        m = read_manifest(path)
    except ArtifactError:
        return False
    if m.get("fingerprint") != fp:
        return False
    bad = damaged(path, m)
    for name, what in bad:
        log.warning(
            "%s: %s; the step %s makes it again", storage.path(path) / name, what, m["step"]
        )
    return not bad


CONTENTS = "contents"
"""Manifest key: each file of the artifact (but the manifest) with its size and checksum."""


def version(manifest: dict[str, Any]) -> str:
    """What the fingerprints of later steps take of an artifact: its fingerprint.

    Not its files' checksums: the bytes of an artifact are not reproducible where its
    meaning is (a model's `history.json` holds timings and `model.keras` zip timestamps; a
    config record differs between two configs that agree on what the step reads), and a
    fingerprint must not depend on how or where a root was made (`reseg run` and the steps
    one by one write the same fingerprints). A damaged artifact is remade because its
    listed files no longer match (`is_current`); what depends on it stays current, as a
    deterministic remake gives the same artifact.
    """
    return manifest["fingerprint"]


def contents(folder: str | Path) -> dict[str, dict[str, Any]]:
    """Each file under `folder` but the manifest: `{"size": bytes, <checksum>}`.

    On a disk the checksum is `crc32` of the file, read once when it is published (the page
    cache usually still holds what was just written); on object storage it is the `etag`
    the store keeps (S3's ETag, GCS's CRC32C), so nothing is read again.
    """
    folder = storage.path(folder)
    if storage.is_remote(folder):
        found = storage.files_with_versions(folder)
        return {n: {"size": size, "etag": tag} for n, (size, tag) in found.items() if n != MANIFEST}
    out = {}
    for name in storage.files_under(folder):
        if name != MANIFEST:
            f = folder / name
            out[name] = {"size": f.stat().st_size, "crc32": _crc32(f)}
    return out


def _crc32(f: Path) -> str:
    crc = 0
    with open(f, "rb") as fh:
        while chunk := fh.read(1 << 20):
            crc = zlib.crc32(chunk, crc)
    return f"{crc:08x}"


def damaged(
    path: str | Path, manifest: dict[str, Any], checksums: bool = False
) -> list[tuple[str, str]]:
    """The files the manifest of `path` lists that are missing or not what was published:
    (name, what is wrong). Sizes always; with `checksums` the checksums too (every file read
    on a disk). A manifest without a file list (an older reseg) lists nothing."""
    listed = manifest.get(CONTENTS)
    if not isinstance(listed, dict):
        return []
    now = _now(storage.path(path), checksums)
    bad = []
    for name, want in sorted(listed.items()):
        have = now.get(name)
        if have is None:
            bad.append((name, "missing"))
        elif have["size"] != want.get("size"):
            bad.append((name, f"{have['size']} bytes, published with {want.get('size')}"))
        elif checksums and any(have.get(k, v) != v for k, v in want.items() if k != "size"):
            bad.append((name, "damaged (its checksum differs from the published one)"))
    return bad


def _now(folder: Any, checksums: bool) -> dict[str, dict[str, Any]]:
    """What is in `folder` now: sizes (one listing), and checksums when asked."""
    if storage.is_remote(folder) or checksums:
        return contents(folder) if folder.exists() else {}
    out = {}
    for name in storage.files_under(folder):
        out[name] = {"size": (folder / name).stat().st_size}
    return out


def staging_dir(final: str | Path, fp: str, local: bool = False) -> Path:
    """The staging directory of `final` for fingerprint `fp` (created; kept if it exists).

    `local`: the writer needs a local folder (Keras, TF checkpoints); for an artifact on
    object storage that is a folder of the local cache (`storage.local_stage`), uploaded
    when the artifact is published."""
    final = storage.path(final)
    if local and storage.is_remote(final):
        return storage.local_stage(final, fp)
    tmp = final.with_name(f"{final.name}.tmp-{fp[:12]}")
    storage.mkdir(tmp)
    return tmp


def discard(tmp: str | Path) -> None:
    """Remove a staging directory (after a user error: nothing half-written stays)."""
    storage.rmtree(tmp)


def publish(
    tmp: str | Path, final: str | Path, manifest: dict[str, Any], config_json: str | None = None
) -> Path:
    """Write the manifest into `tmp` and move it to `final`, replacing an older version."""
    if storage.is_remote(final):
        return _publish_remote(storage.path(tmp), storage.path(final), manifest, config_json)
    tmp, final = storage.path(tmp), storage.path(final)
    if config_json is not None:
        (tmp / CONFIG).write_text(config_json)
    manifest = {"published_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **manifest}
    manifest[CONTENTS] = contents(tmp)
    write_json(tmp / MANIFEST, manifest)
    old = None
    if final.exists():
        old = final.with_name(f"{final.name}.old-{os.getpid()}")
        os.replace(final, old)
    os.replace(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    # stale staging directories of other fingerprints are leftovers of changed inputs
    for stale in final.parent.glob(f"{final.name}.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    log.info("published %s", final)
    return final


def _publish_remote(tmp, final, manifest: dict[str, Any], config_json: str | None):
    """Publish on object storage, where nothing renames: the manifest goes last (module doc)."""
    if config_json is not None:
        (tmp / CONFIG).write_text(config_json)
    manifest = {"published_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **manifest}
    storage.rmtree(final / MANIFEST)  # from here on no reader trusts the old version
    storage.rmtree(final)
    names = [n for n in storage.files_under(tmp) if n != MANIFEST]
    fs = tmp.fs
    for name in names:
        fs.copy(f"{tmp.path}/{name}", f"{final.path}/{name}")
    manifest[CONTENTS] = contents(final)
    write_json(final / MANIFEST, manifest)
    storage.rmtree(tmp)
    for stale in final.parent.glob(f"{final.name}.tmp-*"):
        storage.rmtree(stale)
    log.info("published %s", final)
    return final


def write_json(path: str | Path, obj: Any) -> None:
    """Write JSON atomically (temporary file and rename; one object on object storage)."""
    text = json.dumps(obj, indent=2, sort_keys=True, default=_json_default)
    with storage.atomic_write(path, "w") as fh:
        fh.write(text)


def _json_default(o: Any) -> Any:
    if isinstance(o, np.bool_):
        return bool(o)
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path) or type(o).__module__.startswith("upath"):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


@dataclass
class Stage:
    """A staging directory being filled; `manifest` is what `stage()` publishes with it.

    A component writes its files into `dir`, sets `manifest` (parameters, counts,
    timings; the fingerprint and step are filled in) and leaves the `with` block.
    """

    final: Path
    dir: Path
    fingerprint: str
    step: str
    manifest: dict[str, Any] = field(default_factory=dict)
    config_json: str | None = None
    started: float = field(default_factory=time.time)

    def clear_files(self, pattern: str = "*") -> None:
        """Remove the files (not folders) a killed run left, for steps that rewrite everything."""
        for stale in self.dir.glob(pattern):
            if stale.is_file():
                stale.unlink()


@contextmanager
def stage(
    final: str | Path, fp: str, step: str, config_json: str | None = None, local: bool = False
) -> Iterator[Stage]:
    """Stage an artifact and publish it when the block ends normally.

    On an error of the inputs (`ResegError`) the staging directory is removed, so
    nothing half-written stays; on an error of the place written to (a full disk, a
    permission: `PLACE_ERRORS`) and on any other exception (a crash, Ctrl-C) it is kept
    for the rerun to resume from. The manifest is written last, with `fingerprint`, `step` and
    `seconds` added to what the block put in `Stage.manifest`. With `local`, `Stage.dir` is a
    local folder even for an artifact on object storage (`staging_dir`).
    """
    final = storage.path(final)
    st = Stage(final, staging_dir(final, fp, local), fp, step, config_json=config_json)
    try:
        yield st
    except PLACE_ERRORS:
        raise
    except ResegError:
        discard(st.dir)
        raise
    manifest = {
        "fingerprint": fp,
        "step": step,
        "seconds": round(time.time() - st.started, 3),
        **st.manifest,
    }
    tmp = st.dir
    if storage.is_remote(final) and not storage.is_remote(tmp):  # a local stage: upload it
        tmp = staging_dir(final, fp)
        storage.upload(st.dir, tmp)
        shutil.rmtree(st.dir, ignore_errors=True)
    publish(tmp, final, manifest, st.config_json)
