"""One location type: where reseg takes a location (a pipeline or study root, an artifact, a
CLI option), it goes through `reseg.storage` (`storage.path`, `storage.argument`), which gives
a `UPath` for s3:// and gs://. `Path("s3://b/r")` is the local `s3:/b/r`: a run would write a
local folder named after the bucket, or fail later with `TypeError ... not S3Path`.

The rule, checked on the source (ast): in the packages that take locations (`LOCATION_CODE`)
no `Path(...)` / `pathlib.Path(...)` call and no argparse `type=Path`, except on a line that
says why the value is always local, with a comment `# local: <reason>` (a scratch folder, a
config file read from disk, a file of the source tree).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

LOCATION_CODE = (
    "reseg/commands",
    "reseg/api.py",
    "reseg/pipeline",
    "reseg/study",
    "reseg/artifacts",
    "reseg/components",
)
"""Where locations are taken: command options, the Python API, steps, studies, artifacts and
the components that read and write them."""

REASON = re.compile(r"#\s*local:\s*\S")


def _is_path(node: ast.AST) -> bool:
    """`Path` or `pathlib.Path`."""
    if isinstance(node, ast.Name):
        return node.id == "Path"
    return (
        isinstance(node, ast.Attribute)
        and node.attr == "Path"
        and isinstance(node.value, ast.Name)
        and node.value.id == "pathlib"
    )


def violations(source: str, name: str = "<source>") -> list[str]:
    """`file:line: text` of each `Path(...)` call or `type=Path` without a `# local:` reason."""
    lines = source.splitlines()
    found = []
    for node in ast.walk(ast.parse(source, name)):
        hit = None
        if isinstance(node, ast.Call) and _is_path(node.func):
            hit = node
        elif isinstance(node, ast.keyword) and node.arg == "type" and _is_path(node.value):
            hit = node.value
        if hit is None:
            continue
        span = lines[hit.lineno - 1 : (hit.end_lineno or hit.lineno)]
        above = lines[hit.lineno - 2].strip() if hit.lineno > 1 else ""
        if above.startswith("#"):  # a comment line right above the call
            span.append(above)
        if not any(REASON.search(line) for line in span):
            found.append(f"{name}:{hit.lineno}: {lines[hit.lineno - 1].strip()}")
    return found


def _files() -> list[Path]:
    out = []
    for where in LOCATION_CODE:
        p = REPO / where
        out += sorted(p.rglob("*.py")) if p.is_dir() else [p]
    return out


def test_locations_go_through_storage():
    files = _files()
    assert len(files) > 50  # the packages are where they were
    found = [v for f in files for v in violations(f.read_text(), str(f.relative_to(REPO)))]
    assert not found, (
        "a location wrapped in pathlib.Path (use storage.path / storage.argument, or say why it "
        "is always local with `# local: <reason>`):\n" + "\n".join(found)
    )


def test_the_rule_catches_what_it_names():
    src = """
import argparse, pathlib
from pathlib import Path
def f(root, p: Path) -> Path:
    a = Path(root) / "x"
    b = pathlib.Path(root)
    c = Path(  # local: a scratch folder
        root
    )
    # local: a temporary folder
    d = Path(tempfile.mkdtemp())
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path)
    parser.add_argument("--cfg", type=Path)  # local: config files are read from disk
    parser.add_argument("--root", type=str)
    return storage.path(root)
"""
    assert sorted(int(v.split(":")[1]) for v in violations(src)) == [5, 6, 13]


def test_a_study_root_in_a_bucket_is_checked_as_a_bucket(tmp_path, monkeypatch, capsys):
    """`reseg study --root s3://...` once planned into a local `./s3:/...`: a bucket root is
    checked as a pipeline's is (here no store is reachable: one line naming it)."""
    from reseg.cli import main

    monkeypatch.chdir(tmp_path)
    study = REPO / "examples" / "study_demo_landsat.yaml"
    assert main(["study", str(study), "--root", "s3://bucket/studies/demo"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert [line for line in err if "s3://bucket/studies/demo" in line]
    assert "s3://bucket/studies/demo" in err[-1]
    assert list(tmp_path.iterdir()) == []  # nothing written here


def test_storage_names_a_location_the_same_way_local_or_in_a_bucket(tmp_path, monkeypatch):
    from reseg import storage

    monkeypatch.chdir(tmp_path)
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real", target_is_directory=True)
    assert storage.resolved("link/../real/x") == str(tmp_path / "real" / "x")
    assert storage.same("link", tmp_path / "real") and not storage.same("link", "real/x")
    assert storage.absolute("link") == tmp_path / "link"  # links not followed
    uri = "s3://b/runs/merged/fold0/../../rounds/r0/fold0/model/"
    assert storage.resolved(uri) == "s3://b/runs/rounds/r0/fold0/model"
    assert storage.same(uri, "s3://b/runs/rounds/r0/fold0/model")
    assert str(storage.absolute("s3://b/runs")) == "s3://b/runs"
    assert (
        str(storage.join("s3://b/runs/merged/fold0", "../../rounds/r1")) == "s3://b/runs/rounds/r1"
    )
    assert str(storage.join("s3://b/runs", "gs://c/model")) == "gs://c/model"
    assert storage.join(tmp_path, "/abs/model") == Path("/abs/model")
    (tmp_path / "real" / ".hidden").write_text("")
    (tmp_path / "real" / "sub").mkdir()
    assert storage.listdir(tmp_path / "real") == [".hidden", "sub"]
    assert storage.listdir(tmp_path / "missing") == []
