"""reseg.environment: the processor, its flags and the versions that `reseg info` and the
benchmarks report."""

from __future__ import annotations

import numpy as np

from reseg import __version__, environment

X86 = (
    "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Platinum 8480+\n"
    "flags\t\t: fpu sse4_2 avx2 fma avx512f avx512_bf16 amx_tile amx_bf16\n\n"
    "processor\t: 1\nmodel name\t: another\nflags\t\t: fpu\n"
)
ARM = "processor\t: 0\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd sve bf16\n"


def test_x86_model_name_and_flags_come_from_the_first_processor(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text(X86)
    assert environment.processor(str(info)) == "Intel(R) Xeon(R) Platinum 8480+"
    assert environment.cpu_flags(cpuinfo=str(info)) == (
        "sse4_2",
        "avx2",
        "fma",
        "avx512f",
        "avx512_bf16",
        "amx_tile",
        "amx_bf16",
    )
    assert environment.cpu_flags(("amx_bf16", "avx2"), str(info)) == ("amx_bf16", "avx2")


def test_arm_features_count_as_flags_and_the_name_falls_back_to_platform(tmp_path):
    info = tmp_path / "cpuinfo_arm"
    info.write_text(ARM)
    assert environment.cpu_flags(cpuinfo=str(info)) == ("asimd", "sve", "bf16")
    assert environment.processor(str(info))  # platform's processor or architecture
    missing = str(tmp_path / "missing")
    assert environment.cpu_flags(cpuinfo=missing) == ()
    assert environment.processor(missing)


def test_versions_are_the_installed_ones():
    found = environment.versions(("reseg", "numpy", "no-such-distribution-xyz"))
    assert found == {
        "reseg": __version__,
        "numpy": np.__version__,
        "no-such-distribution-xyz": None,
    }


def test_load_average_has_three_non_negative_figures():
    load = environment.load_average()
    assert load is not None and len(load) == 3 and min(load) >= 0
