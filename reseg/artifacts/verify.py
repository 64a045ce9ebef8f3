"""Check a root against its manifests: every listed file there, with its size and checksum.

What `reseg verify ROOT` runs. A manifest lists each file of its artifact with its size and
checksum (`store.contents`); a file that is missing, of another size or with another checksum
is a `Damage`, named with the step that makes its artifact again. Staging folders
(`*.tmp-*`, hidden folders) are not published and not checked; a manifest without a file list
(written by an older reseg, or by the exporter) is counted as not checked.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reseg import storage
from reseg.artifacts.store import CONTENTS, MANIFEST, damaged, read_manifest
from reseg.errors import ArtifactError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Damage:
    """A file of a published artifact that is not as published."""

    file: Any
    what: str
    step: str
    artifact: Any = None

    def line(self) -> str:
        return (
            f"{self.file}: {self.what}; the step {self.step} makes it again (run it, or reseg run)"
        )


@dataclass
class Report:
    """What `verify_root` found."""

    artifacts: int = 0
    files: int = 0
    unchecked: list[Any] = field(default_factory=list)
    damage: list[Damage] = field(default_factory=list)


def manifests(root: Any) -> list[Any]:
    """The published artifact folders under `root` (those with a manifest, not staging)."""
    root = storage.path(root)
    found = []
    for name in storage.files_under(root):
        parts = name.split("/")
        if parts[-1] != MANIFEST or len(parts) < 2:
            continue
        if any(".tmp-" in p or p.startswith(".") for p in parts[:-1]):
            continue
        found.append(storage.join(root, "/".join(parts[:-1])))
    return found


def verify_root(root: str | Path, checksums: bool = True) -> Report:
    """Every published artifact under `root` checked against its manifest."""
    report = Report()
    for folder in manifests(root):
        try:
            m = read_manifest(folder)
        except ArtifactError as e:
            what = str(e).split(": ", 1)[-1]
            report.damage.append(Damage(folder / MANIFEST, what, "?", folder))
            continue
        if not isinstance(m.get(CONTENTS), dict):
            report.unchecked.append(folder)
            continue
        report.artifacts += 1
        report.files += len(m[CONTENTS])
        step = str(m.get("step", "?"))
        for name, what in damaged(folder, m, checksums=checksums):
            report.damage.append(Damage(storage.join(folder, name), what, step, folder))
    return report


def withdraw(report: Report) -> list[Any]:
    """Remove the manifest of every damaged artifact, so that no reader trusts it and the
    next run makes it again (the caller holds the root's lease). Returns those folders."""
    folders = {str(d.artifact): d.artifact for d in report.damage if d.artifact is not None}
    for folder in folders.values():
        storage.rmtree(folder / MANIFEST)
        log.info("withdrew %s: the next run makes it again", folder)
    return list(folders.values())
