"""Operating-system errors through the CLI: one line naming the path and the problem, the
exit code of its kind (`reseg.errors`), no traceback, and what is left on disk.

Tests run as root, so the permission cases run reseg in a subprocess without the
capabilities that bypass file permissions (`setpriv`, CAP_DAC_OVERRIDE and
CAP_DAC_READ_SEARCH dropped from the bounding set). Full disks are small tmpfs mounts.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from reseg import layout
from reseg.cli import main
from tests.rasters import config_dict, scene

UNPRIVILEGED = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]


def reseg(*args: str, unprivileged: bool = False) -> subprocess.CompletedProcess:
    """`reseg ARGS` in a subprocess: (returncode, stdout, stderr)."""
    cmd = [*(UNPRIVILEGED if unprivileged else []), sys.executable, "-m", "reseg", *args]
    return subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )


def error_line(err: str, command: str) -> str:
    """The one error line of `reseg COMMAND` on stderr (asserting there is exactly one)."""
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.startswith(f"reseg {command}: error: ")]
    assert len(lines) == 1, err
    return lines[0].removeprefix(f"reseg {command}: error: ")


def entries(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir()) if path.exists() else []


@pytest.fixture
def tile_config(tmp_path) -> Path:
    img, lab = scene(tmp_path)
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(config_dict(img, lab)))
    return cfg


@pytest.fixture
def tmpfs(tmp_path):
    """`make(size)`: a fresh tmpfs of `size` (mount's syntax, e.g. 48k) under tmp_path."""
    mounted: list[Path] = []

    def make(size: str) -> Path:
        point = tmp_path / f"tmpfs{len(mounted)}"
        point.mkdir()
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point)], check=True
        )
        mounted.append(point)
        return point

    yield make
    for point in mounted:
        subprocess.run(["umount", "-l", str(point)], check=False)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """A per-pixel model for 4 x uint16 bands, 3 classes (tests/components/predictor/helpers)."""
    from tests.components.predictor.helpers import conv1x1, save_model

    return save_model(
        tmp_path_factory.mktemp("os_errors") / "model", conv1x1(4, 3, seed=2), bands=4, classes=3
    )


@pytest.fixture(scope="module")
def scenes4(tmp_path_factory) -> dict[str, Path]:
    """4-band scenes: `small` (100 x 100) and `big` (1500 x 1500)."""
    d = tmp_path_factory.mktemp("scenes4")
    return {
        "small": scene(d, "small", height=100, width=100, bands=4)[0],
        "big": scene(d, "big", height=1500, width=1500, bands=4)[0],
    }


# --- inputs -------------------------------------------------------------------------------


def test_a_folder_given_as_the_image(tmp_path, capsys):
    (tmp_path / "imgdir").mkdir()
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(config_dict(tmp_path / "imgdir", None)))
    code = main(["tile", str(cfg), "--root", str(tmp_path / "root")])
    line = error_line(capsys.readouterr().err, "tile")
    assert (code, line) == (3, f"{tmp_path / 'imgdir'}: is a folder, expected a file")
    assert not [n for n in entries(tmp_path / "root") if n.startswith("tiles")]


def test_a_folder_given_as_the_scene_to_predict(tmp_path, model_dir, capsys):
    (tmp_path / "imgdir").mkdir()
    code = main(
        [
            "predict",
            "--model",
            str(model_dir),
            str(tmp_path / "imgdir"),
            "--out",
            str(tmp_path / "out"),
        ]
    )
    line = error_line(capsys.readouterr().err, "predict")
    assert (code, line) == (3, f"{tmp_path / 'imgdir'}: is a folder, expected a file")
    assert entries(tmp_path / "out") == []


def test_an_image_without_read_permission(tmp_path, tile_config):
    img = tmp_path / "scene.tif"
    img.chmod(0o000)
    res = reseg("tile", str(tile_config), "--root", str(tmp_path / "root"), unprivileged=True)
    line = error_line(res.stderr, "tile")
    assert (res.returncode, line) == (7, f"{img}: permission denied (the file is not readable)")
    assert not [n for n in entries(tmp_path / "root") if n.startswith("tiles")]


def test_a_scene_to_predict_without_read_permission(tmp_path, model_dir, scenes4):
    img = tmp_path / "locked.tif"
    img.write_bytes(scenes4["small"].read_bytes())
    img.chmod(0o000)
    out = tmp_path / "out"
    res = reseg(
        "predict", "--model", str(model_dir), str(img), "--out", str(out), unprivileged=True
    )
    line = error_line(res.stderr, "predict")
    assert (res.returncode, line) == (7, f"{img}: permission denied (the file is not readable)")
    assert entries(out) == []


def test_a_config_file_that_is_not_utf8(tmp_path, tile_config, capsys):
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("# Sønderjylland\n".encode("latin-1") + tile_config.read_bytes())
    code = main(["tile", str(latin), "--root", str(tmp_path / "root")])
    line = error_line(capsys.readouterr().err, "tile")
    assert code == 2
    assert line == (
        f"{latin}: config file is not UTF-8 text (byte 0xf8 at line 1, column 4); save it as UTF-8"
    )
    assert not [n for n in entries(tmp_path / "root") if n.startswith("tiles")]


def test_a_yaml_syntax_error_is_one_line_with_its_position(tmp_path, capsys):
    cfg = tmp_path / "config.yaml"
    cfg.write_text("name: t\ntiling:\n  tile_size: 32\n  overlap: 8: 3\n")
    code = main(["tile", str(cfg), "--root", str(tmp_path / "root")])
    line = error_line(capsys.readouterr().err, "tile")
    assert (code, line) == (2, f"{cfg}:4:13: not valid YAML: mapping values are not allowed here")


def test_several_config_errors_are_one_line(tmp_path, tile_config, capsys):
    raw = yaml.safe_load(tile_config.read_text())
    raw["tiling"].update(tiel=3, tile_size="large")
    del raw["data"]["classes"]
    tile_config.write_text(yaml.safe_dump(raw))
    code = main(["tile", str(tile_config), "--root", str(tmp_path / "root")])
    line = error_line(capsys.readouterr().err, "tile")
    assert code == 2
    assert line.startswith(f"{tile_config}: invalid configuration: ")
    for part in (
        "data.classes: required key is missing",
        "tiling.tile_size:",
        "'large'",
        "tiling.tiel: unknown key",
    ):
        assert part in line


# --- output places ------------------------------------------------------------------------


def test_root_naming_an_existing_file(tmp_path, tile_config, capsys):
    f = tmp_path / "afile"
    f.write_text("keep me")
    code = main(["tile", str(tile_config), "--root", str(f)])
    line = error_line(capsys.readouterr().err, "tile")
    assert (code, line) == (9, f"{f}: is a file, expected a folder (or a path that does not exist)")
    assert f.read_text() == "keep me"


def test_root_below_an_existing_file(tmp_path, tile_config, capsys):
    f = tmp_path / "afile"
    f.write_text("keep me")
    code = main(["tile", str(tile_config), "--root", str(f / "run")])
    line = error_line(capsys.readouterr().err, "tile")
    assert (code, line) == (9, f"{f / 'run'}: {f} is a file, expected a folder")
    assert f.read_text() == "keep me"


def test_out_naming_an_existing_file(tmp_path, model_dir, scenes4, capsys):
    f = tmp_path / "afile"
    f.write_text("keep me")
    code = main(["predict", "--model", str(model_dir), str(scenes4["small"]), "--out", str(f)])
    line = error_line(capsys.readouterr().err, "predict")
    assert (code, line) == (9, f"{f}: is a file, expected a folder (or a path that does not exist)")
    assert f.read_text() == "keep me"


def test_root_in_a_folder_without_write_permission(tmp_path, tile_config):
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o555)
    res = reseg("tile", str(tile_config), "--root", str(ro / "run"), unprivileged=True)
    line = error_line(res.stderr, "tile")
    assert (res.returncode, line) == (
        7,
        f"{ro / 'run'}: permission denied (cannot create it in {ro})",
    )
    assert entries(ro) == []


def test_out_in_a_folder_without_write_permission(tmp_path, model_dir, scenes4):
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o555)
    res = reseg(
        "predict",
        "--model",
        str(model_dir),
        str(scenes4["small"]),
        "--out",
        str(ro / "out"),
        unprivileged=True,
    )
    line = error_line(res.stderr, "predict")
    assert (res.returncode, line) == (
        7,
        f"{ro / 'out'}: permission denied (cannot create it in {ro})",
    )
    assert entries(ro) == []


def test_root_on_a_read_only_file_system(tmpfs, tile_config, capsys):
    ro = tmpfs("1m")
    subprocess.run(["mount", "-o", "remount,ro", str(ro)], check=True)
    code = main(["tile", str(tile_config), "--root", str(ro / "run")])
    line = error_line(capsys.readouterr().err, "tile")
    assert (code, line) == (7, f"{ro / 'run'}: read-only file system")
    assert entries(ro) == []


def test_verbose_shows_the_traceback(tmpfs, tile_config, capsys, caplog):
    ro = tmpfs("1m")
    subprocess.run(["mount", "-o", "remount,ro", str(ro)], check=True)
    code = main(["-v", "tile", str(tile_config), "--root", str(ro / "run")])
    err = capsys.readouterr().err
    assert code == 7 and f"{ro / 'run'}: read-only file system" in err
    logs = err + caplog.text  # the CLI's handler writes to stderr, or pytest's took it
    assert "Traceback" in logs and "OSError: [Errno 30] Read-only file system" in logs


# --- full disks ---------------------------------------------------------------------------


@pytest.mark.slow
def test_a_full_disk_during_tiling_then_a_rerun_resumes(tmpfs, tile_config):
    raw = yaml.safe_load(tile_config.read_text())
    del raw["beam"]  # the default runner: two workers in threads, as a new user has it
    tile_config.write_text(yaml.safe_dump(raw))
    disk = tmpfs("48k")
    root = disk / "run"
    res = reseg("tile", str(tile_config), "--root", str(root))
    line = error_line(res.stderr, "tile")
    assert res.returncode == 8
    (staging,) = [p for p in root.iterdir() if p.name.startswith("tiles.tmp-")]
    assert line.startswith(f"{staging}: no space left on the device; ")
    assert "the tiles (uncompressed) need about 180.0 KB" in line
    assert not (root / "tiles").exists()  # nothing published; complete shards kept
    done = sorted(p.name for p in staging.glob("part-*.json"))
    subprocess.run(["mount", "-o", "remount,size=4m", str(disk)], check=True)
    again = reseg("tile", str(tile_config), "--root", str(root))
    assert again.returncode == 0, again.stderr
    # two workers write at once: the disk may have held none of the shards complete
    if done:
        assert f"resuming: {len(done)} of 2 shards already complete" in again.stderr
    else:
        assert "resuming" not in again.stderr
    assert (root / "tiles" / "manifest.json").exists()
    assert not list(root.glob("tiles.tmp-*"))
    assert not (root / "tiles" / "errors").exists(), "the full disk's error folder published"


@pytest.mark.slow
def test_a_full_disk_before_prediction_writes(tmpfs, model_dir, scenes4):
    out = tmpfs("48k") / "out"
    res = reseg("predict", "--model", str(model_dir), str(scenes4["big"]), "--out", str(out))
    line = error_line(res.stderr, "predict")
    assert res.returncode == 8
    assert line.startswith(
        f"{out}: no space left on the device for scene big: its raw outputs need 4.5 MB, "
    )
    assert entries(out) == []


@pytest.mark.slow
def test_a_full_disk_while_prediction_writes_its_cogs(tmpfs, model_dir, scenes4):
    out = tmpfs("5500k") / "out"  # the raw files (4.5 MB) fit, their COGs after them do not
    res = reseg("predict", "--model", str(model_dir), str(scenes4["big"]), "--out", str(out))
    line = error_line(res.stderr, "predict")
    assert res.returncode == 8
    assert line.startswith(
        f"{out}: no space left on the device for scene big: its Cloud-Optimized GeoTIFF needs up to "
    )
    assert entries(out) == []  # the scene's staging folder is removed


# --- kill -9 during prediction ------------------------------------------------------------


@pytest.mark.slow
def test_kill_9_during_prediction_leaves_a_staging_folder_the_rerun_removes(
    tmp_path, model_dir, scenes4
):
    out = tmp_path / "out"
    args = [
        sys.executable,
        "-m",
        "reseg",
        "predict",
        "--model",
        str(model_dir),
        str(scenes4["big"]),
    ]
    proc = subprocess.Popen(
        [*args, "--out", str(out), "--no-progress"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    deadline = time.monotonic() + 120
    while not list(out.glob(".big.tmp-*/raw.classes.tif")):
        assert proc.poll() is None, "prediction ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL
    # only the hidden staging folder, no output; and the killed run's lease file, whose lock
    # died with it (the rerun takes it over)
    (left,) = [p.name for p in out.iterdir() if p.name != layout.LEASE]
    assert left.startswith(".big.tmp-")
    assert json.loads((out / layout.LEASE).read_text())["pid"] == proc.pid

    res = reseg("predict", "--model", str(model_dir), str(scenes4["big"]), "--out", str(out))
    assert res.returncode == 0, res.stderr
    assert f"removing {out / left}, left by a run that did not finish" in res.stderr
    assert entries(out) == [
        "big.confidence.tif",
        "big.item.json",  # its STAC item and the collection
        "big.preview.png",
        "big.qml",
        "big.tif",
        "collection.json",
    ]
