"""fma32 is a fused multiply-add: a * b + c computed exactly and rounded once to float32."""

from __future__ import annotations

from fractions import Fraction

import numba
import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from framering.kernels.fma import fma32


@numba.njit(cache=False)
def _fma(a, b, c):  # type: ignore[no-untyped-def]
    return fma32(a, b, c)


@numba.njit(cache=False)
def _multiply_then_add(a, b, c):  # type: ignore[no-untyped-def]
    return a * b + c


def _exact_rounded(a: np.float32, b: np.float32, c: np.float32) -> np.float32:
    """a * b + c in exact rationals, rounded once to float32 (through float64 only where that
    is exact: float32's 24-bit mantissas multiply into at most 48 bits)."""
    exact = Fraction(float(a)) * Fraction(float(b)) + Fraction(float(c))
    nearest64 = float(exact)  # correctly rounded to float64 ...
    candidates = np.array(
        [
            np.nextafter(np.float32(nearest64), -np.inf),
            np.float32(nearest64),
            np.nextafter(np.float32(nearest64), np.inf),
        ],
        np.float32,
    )  # ... and float32's nearest is one of these, by exact distance (ties to even)
    distances = [abs(Fraction(float(x)) - exact) for x in candidates]
    best = min(distances)
    ties = [x for x, d in zip(candidates, distances, strict=True) if d == best]
    even = [x for x in ties if int(x.view(np.uint32)) % 2 == 0]
    return (even or ties)[0]


def test_fma_rounds_once_where_multiply_then_add_rounds_twice() -> None:
    a = np.float32(1 + 2**-12)
    c = np.float32(-(1 + 2**-11))
    assert _multiply_then_add(a, a, c) == np.float32(0.0)
    assert _fma(a, a, c) == np.float32(2**-24)


finite32 = st.floats(
    width=32, allow_nan=False, allow_infinity=False, min_value=-(2.0**60), max_value=2.0**60
)


@given(finite32, finite32, finite32)
def test_fma_is_the_exact_value_rounded_to_float32(a: float, b: float, c: float) -> None:
    a32, b32, c32 = np.float32(a), np.float32(b), np.float32(c)
    got = _fma(a32, b32, c32)
    want = _exact_rounded(a32, b32, c32)
    assert got == want or (got == 0 and want == 0)


def test_fma_takes_float64_arguments_as_float32() -> None:
    assert _fma(0.5, 3.0, 0.25) == 1.75
    assert _fma(0.1, 1.0, 0.0) == float(np.float32(0.1)) != 0.1
