"""`reseg.errors.user_error`: each kind of OS, decoding and GDAL error becomes one line of the
right type, also when Beam has wrapped it."""

from __future__ import annotations

import errno
import os

import pytest

from reseg import errors
from reseg.errors import (
    AccessError,
    DiskFullError,
    InputError,
    IOFailure,
    OutputError,
    user_error,
)


def raised(exc: BaseException, wrap: str | None = None) -> BaseException:
    """`exc` as raised, or re-raised as Beam does: a RuntimeError with its text."""
    try:
        try:
            raise exc
        except BaseException as inner:
            if wrap is None:
                raise
            raise RuntimeError(f"{type(inner).__name__}: {inner} {wrap}") from None
    except BaseException as e:
        return e


def test_each_errno_has_its_kind_and_exit_code(tmp_path):
    f = tmp_path / "f"
    f.write_text("")
    cases = [
        (OSError(errno.ENOENT, "x", str(tmp_path / "nope")), InputError, 3, "nope: not found"),
        (OSError(errno.EISDIR, "x", str(tmp_path)), InputError, 3, "is a folder, expected a file"),
        (OSError(errno.EEXIST, "x", str(f)), OutputError, 9, "f: is a file, expected a folder"),
        (OSError(errno.ENOTDIR, "x", str(f / "a" / "b")), OutputError, 9, f"{f} is a file"),
        (OSError(errno.EROFS, "x", str(f)), AccessError, 7, "f: read-only file system"),
        (OSError(errno.EDQUOT, "x", str(f)), DiskFullError, 8, "f: no space left on the device"),
        (OSError(errno.EIO, "Input/output error", str(f)), IOFailure, 10, "input/output error (errno 5)"),
    ]  # fmt: skip
    for exc, kind, code, text in cases:
        err = user_error(exc)
        assert type(err) is kind and err.exit_code == code and text in str(err), (exc, err)
        assert "\n" not in str(err)


def test_a_disk_full_error_says_what_the_step_needs(tmp_path):
    full = OSError(errno.ENOSPC, "No space left on device")
    with pytest.raises(OSError), errors.expect_write(tmp_path / "out", 3 * 2**20, "the outputs"):
        raise full
    err = user_error(full, fallback=tmp_path)  # reported after the block, as the CLI does
    assert isinstance(err, DiskFullError)
    assert str(err).startswith(f"{tmp_path / 'out'}: no space left on the device; ")
    assert str(err).endswith("free; the outputs need about 3.0 MB")
    other = tmp_path.parent / "elsewhere"
    assert "need about" not in str(user_error(full, fallback=other))
    with errors.expect_write(tmp_path / "done", 5, "a finished step"):
        pass
    assert "a finished step" not in str(user_error(full, fallback=tmp_path / "done"))


def test_errors_wrapped_by_beam_are_found_by_their_errno(tmp_path):
    wrapped = raised(OSError(errno.EACCES, "Permission denied"), "[while running 'Tile/Write']")
    err = user_error(wrapped, fallback=tmp_path / "new")
    assert isinstance(err, AccessError)
    assert str(err) == f"{tmp_path / 'new'}: permission denied (cannot create it in {tmp_path})"
    chained = raised(RuntimeError("outer"))
    chained.__context__ = OSError(errno.ENOSPC, "No space left on device")
    assert isinstance(user_error(chained), DiskFullError)


def test_gdal_messages_of_a_full_disk_carry_the_size_gdal_needed(tmp_path):
    class CPLE_FileIOError(Exception):  # noqa: N801 - rasterio's name, matched by module
        __module__ = "rasterio._err"

    e = CPLE_FileIOError(
        "Free disk space available is 1024 bytes, whereas 4194304 are at least necessary."
    )
    err = user_error(e, path=tmp_path / "x.tif")
    assert isinstance(err, DiskFullError) and "the write needed at least 4.0 MB" in str(err)


def test_bugs_are_not_user_errors():
    assert user_error(raised(KeyError("k"))) is None
    assert user_error(raised(RuntimeError("a bug without an errno"))) is None


def test_a_decoding_error_names_the_byte_line_and_column(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_bytes(b"a: 1\nb: caf\xe9\n")
    with pytest.raises(UnicodeDecodeError) as info:
        p.read_text(encoding="utf-8")
    err = errors.from_decode_error(info.value, p, "config")
    assert err.exit_code == 2
    assert str(err) == (
        f"{p}: config file is not UTF-8 text (byte 0xe9 at line 2, column 7); save it as UTF-8"
    )


def test_check_readable_names_the_input(tmp_path):
    with pytest.raises(InputError, match=f"^{tmp_path / 'x.tif'}: image file not found$"):
        errors.check_readable(tmp_path / "x.tif", "image")
    with pytest.raises(InputError, match="is a folder, expected a file$"):
        errors.check_readable(tmp_path, "image")
    assert os.path.exists(tmp_path)


def test_check_output_folder_names_the_file_in_the_way(tmp_path):
    f = tmp_path / "f"
    f.write_text("")
    with pytest.raises(OutputError, match="f: is a file, expected a folder") as info:
        errors.check_output_folder(f)
    assert info.value.exit_code == 9
    with pytest.raises(OutputError, match=f"f/a/b: {f} is a file, expected a folder$"):
        errors.check_output_folder(f / "a" / "b")
    errors.check_output_folder(tmp_path / "new" / "run")  # fine, and nothing is created
    assert not (tmp_path / "new").exists()
