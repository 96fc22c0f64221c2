"""The bits of a packed pixel, and the typed constants the pixel loops compute with.

Inside the kernels an RGBA8 pixel is one little-endian ``uint32``: red in bits 0-7, green 8-15,
blue 16-23, alpha 24-31 (``framering.kernels.validate`` refuses a big-endian machine). The
blend loops (``spans``) and the conversions (``convert_out``, ``convert_in``, ``packed``) take
channels apart with the same masks and shifts, defined once here.

Every constant is a numpy scalar of the type the loop needs, never a Python int: Numba types a
Python int as int64, and ``uint32 & int64`` or ``2 * uint64`` widens the whole expression
(to int64, or to float64 for a uint64 index), which halves the vector width or leaves a loop
scalar. The same reason is behind :func:`i32`.
"""

from __future__ import annotations

from typing import Final

import numpy as np

from framering.kernels.jit import KERNEL_INLINE

# Masks of a packed pixel.
U8: Final = np.uint32(0xFF)  # one channel, once shifted down to bits 0-7
RGB_BITS: Final = np.uint32(0x00FFFFFF)  # the three colour bytes
ALPHA_OPAQUE: Final = np.uint32(0xFF000000)  # alpha 255 (OR it into a colour)
# Red and blue as two 16-bit lanes (green and alpha too, after ``>> 8``): four pixels' channels
# add up in their lane without a carry into the other (4 * 255 < 2**16).
RB: Final = np.uint32(0x00FF00FF)
GA: Final = np.uint32(0xFF00FF00)  # green and alpha in place: what an R-B swap keeps
LOW16: Final = np.uint32(0xFFFF)

# Bit offsets of green, blue and alpha: also a shift by one, two or three bytes.
SHIFT_G: Final = np.uint32(8)
SHIFT_B: Final = np.uint32(16)
SHIFT_A: Final = np.uint32(24)

# uint64 steps for indices: ``2 * i`` with a Python int and a uint64 ``i`` is a float64 in Numba.
ONE: Final = np.uint64(1)
TWO: Final = np.uint64(2)
THREE: Final = np.uint64(3)
FOUR: Final = np.uint64(4)

# int32 clamp bounds of a byte.
I0: Final = np.int32(0)
I255: Final = np.int32(255)


@KERNEL_INLINE
def i32(value):  # type: ignore[no-untyped-def]
    """Back to int32: Numba widens int32 arithmetic to int64, which halves the vector width."""
    return np.int32(value)
