"""Copy and fill runs of packed pixels: the integer inner loops.

Every helper takes whole flat ``uint32`` pixel arrays plus offsets (never slices: a slice costs
Numba an atomic reference-count update) and touches exactly ``n`` pixels from ``dst[d]`` and
``src[s]``. Offsets are turned into ``uint64`` before the loop: with a signed index Numba adds a
negative-index wraparound select to every access, which keeps LLVM from vectorising (a row copy
ran 8x slower). A pixel is RGBA8 packed little-endian: red in bits 0-7, green 8-15, blue 16-23,
alpha 24-31 (masks and shifts in ``framering.kernels.bits``).

Blending is done in premultiplied float32 by ``framering.kernels.accumulate``; these loops are
what needs no arithmetic: copies of opaque layers, clears, and frame rows for deliveries.
"""

from __future__ import annotations

import numpy as np

from framering.kernels.bits import ALPHA_OPAQUE
from framering.kernels.jit import KERNEL_INLINE
from framering.kernels.pointers import stream_opaque_lines
from framering.kernels.stores import SMALLEST_MIN_PIXELS

# LLVM vectorises these loops with a body of 64 pixels, then 16, then a scalar remainder
# that costs up to 3 ns a pixel (a 63-pixel run of a blend took 56 ns, a 64-pixel one 30).
# Loops that only write may do their remainder as one more block of the last TAIL pixels,
# overlapping what is done: writing a pixel twice with the same value is harmless.
TAIL = 16


@KERNEL_INLINE
def _copy_opaque_run(dst, d, src, s, n):  # type: ignore[no-untyped-def]
    d = np.uint64(d)
    s = np.uint64(s)
    n = np.uint64(n)
    for i in range(n):
        dst[d + i] = src[s + i] | ALPHA_OPAQUE


@KERNEL_INLINE
def copy_opaque_span(dst, d, src, s, n):  # type: ignore[no-untyped-def]
    """Copy ``n`` pixels of a layer flagged opaque, as opaque: alpha 255 whatever the bytes
    say, so that a wrong ``opaque=True`` gives the same pixels wherever the layer is copied
    (and the loops that trust an opaque destination see one that is). The remainder is one
    overlapping block of :data:`TAIL` (``dst`` and ``src`` never overlap)."""
    if n > TAIL and n % TAIL != 0:
        _copy_opaque_run(dst, d, src, s, n - n % TAIL)
        _copy_opaque_run(dst, d + n - TAIL, src, s + n - TAIL, TAIL)
    else:
        _copy_opaque_run(dst, d, src, s, n)


@KERNEL_INLINE
def copy_opaque_gap(dst, d, src, s, n, stream_min):  # type: ignore[no-untyped-def]
    """:func:`copy_opaque_span` for a frame's long opaque stretches (the background between
    overlays): a run of at least ``stream_min`` pixels (0: never) is written with
    non-temporal stores in whole 64-byte lines, so that its lines are neither read before
    they are overwritten nor kept in the cache in place of the layers' pixels. Only for a
    destination nothing reads back soon (the caller decides; ``stores.stream_min_pixels``).
    A run shorter than :data:`SMALLEST_MIN_PIXELS` is copied ordinarily whatever the caller
    passed: the split into a head, whole lines and a tail needs more than a line."""
    if stream_min == 0 or n < stream_min or n < SMALLEST_MIN_PIXELS:
        copy_opaque_span(dst, d, src, s, n)
        return
    target = dst.ctypes.data + 4 * d
    head = ((64 - (target & 63)) & 63) >> 2  # pixels up to the first whole line
    lines = (n - head) >> 4
    _copy_opaque_run(dst, d, src, s, head)
    stream_opaque_lines(target + 4 * head, src.ctypes.data + 4 * (s + head), lines)
    done = head + 16 * lines
    _copy_opaque_run(dst, d + done, src, s + done, n - done)


@KERNEL_INLINE
def copy_span(dst, d, src, s, n):  # type: ignore[no-untyped-def]
    """Copy ``n`` pixels: ``source`` mode at opacity 1 (and frame rows for deliveries)."""
    d = np.uint64(d)
    s = np.uint64(s)
    n = np.uint64(n)
    for i in range(n):
        dst[d + i] = src[s + i]


@KERNEL_INLINE
def fill_span(dst, d, n, pixel):  # type: ignore[no-untyped-def]
    """Set ``n`` pixels to one packed value."""
    d = np.uint64(d)
    n = np.uint64(n)
    for i in range(n):
        dst[d + i] = pixel
