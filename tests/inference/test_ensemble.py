"""Merging members' probabilities."""

from __future__ import annotations

import numpy as np
import pytest

from reseg.inference import combine

A = np.array([[0.7, 0.2, 0.1], [0.2, 0.3, 0.5]], np.float32)
B = np.array([[0.1, 0.8, 0.1], [0.4, 0.4, 0.2]], np.float32)
C = np.array([[0.2, 0.7, 0.1], [0.1, 0.1, 0.8]], np.float32)


def test_mean_and_weighted():
    np.testing.assert_allclose(combine([A, B], [3, 1], "mean"), (A + B) / 2, rtol=1e-6)
    np.testing.assert_allclose(combine([A, B], [3, 1], "weighted"), 0.75 * A + 0.25 * B, rtol=1e-6)
    np.testing.assert_allclose(combine([A.astype(np.float16)], None, "weighted"), A, atol=1e-3)


def test_max_confidence_takes_the_surest_member_per_pixel():
    out = combine([A, B, C], None, "max_confidence")
    np.testing.assert_array_equal(out[0], B[0])  # 0.8 beats 0.7 and 0.7
    np.testing.assert_array_equal(out[1], C[1])  # 0.8 beats 0.5 and 0.4


def test_vote_gives_vote_shares():
    out = combine([A, B, C], None, "vote")
    # pixel 0: votes 0, 1, 1; pixel 1: votes 2, 0 (tie 0.4/0.4 -> first), 2
    np.testing.assert_allclose(out[0], [1 / 3, 2 / 3, 0], rtol=1e-6)
    np.testing.assert_allclose(out[1], [1 / 3, 0, 2 / 3], rtol=1e-6)
    np.testing.assert_allclose(
        combine([A, B, C], [1, 1, 4], "vote")[0], [1 / 6, 5 / 6, 0], rtol=1e-6
    )


@pytest.mark.parametrize(
    "args,match",
    [
        (([A, B], None, "median"), "method"),
        (([], None, "mean"), "at least one"),
        (([A, B[:1]], None, "mean"), "shape"),
        (([A, B], [1, -1], "weighted"), "weights"),
        (([A, B], [0, 0], "weighted"), "weights"),
    ],
)
def test_bad_arguments(args, match):
    with pytest.raises(ValueError, match=match):
        combine(*args)
