"""Packed pixels moved between layouts: RGBA <-> BGRA swaps, RGBA <-> 3-byte RGB or BGR.

The loops shared by both directions of conversion (``convert_out`` writes these layouts,
``convert_in`` reads them), kept apart from the YUV arithmetic. A pixel is one uint32
(``framering.kernels.bits``); red and blue are exchanged with two masks and two shifts.

Three-byte pixels go four at a time, as three aligned uint32 words, instead of byte by byte
(a 1080p BGR frame in 0.14 ms instead of 0.20): a head of single pixels first brings the
address to a multiple of 4, then whole groups, then a tail of single pixels.
"""

from __future__ import annotations

import numpy as np

from framering.kernels.bits import (
    ALPHA_OPAQUE,
    FOUR,
    GA,
    LOW16,
    ONE,
    RGB_BITS,
    SHIFT_A,
    SHIFT_B,
    SHIFT_G,
    THREE,
    TWO,
    U8,
)
from framering.kernels.jit import KERNEL_INLINE
from framering.kernels.pointers import bytes_at, pixels_at


@KERNEL_INLINE
def swapped(p):  # type: ignore[no-untyped-def]
    """A packed pixel with its bytes 0 and 2 exchanged (RGBA <-> BGRA)."""
    return (p & GA) | ((p & U8) << SHIFT_B) | ((p >> SHIFT_B) & U8)


@KERNEL_INLINE
def swap_run(src, s, dst, d, n):  # type: ignore[no-untyped-def]
    """``n`` pixels with red and blue exchanged: RGBA to BGRA, or BGRA to RGBA."""
    s = np.uint64(s)
    d = np.uint64(d)
    n = np.uint64(n)
    for i in range(n):
        dst[d + i] = swapped(src[s + i])


@KERNEL_INLINE
def pack3_run(src, s, address, n, swap):  # type: ignore[no-untyped-def]
    """``n`` pixels from ``src[s]`` as 3-byte BGR (``swap``) or RGB into bytes at ``address``.

    Four pixels make three uint32 words (q0 q1 q2 q3 -> q0|q1<<24, q1>>8|q2<<16, q2>>16|q3<<8),
    stored aligned: ``head`` single pixels first bring ``address`` to a multiple of 4
    (``address + 3 * head`` is one when ``head = address % 4``).
    """
    out = bytes_at(address, 3 * n)
    head = min(address % 4, n)
    groups = (n - head) // 4
    words = pixels_at(address + 3 * head, 3 * groups)
    tail = head + 4 * groups
    for i in range(head):
        p = src[s + i]
        q = swapped(p) if swap else p
        out[3 * i] = np.uint8(q & U8)
        out[3 * i + 1] = np.uint8((q >> SHIFT_G) & U8)
        out[3 * i + 2] = np.uint8((q >> SHIFT_B) & U8)
    g = np.uint64(s + head)
    groups = np.uint64(groups)
    if swap:
        for i in range(groups):
            q0 = swapped(src[g + FOUR * i])
            q1 = swapped(src[g + FOUR * i + ONE])
            q2 = swapped(src[g + FOUR * i + TWO])
            q3 = swapped(src[g + FOUR * i + THREE])
            words[THREE * i] = (q0 & RGB_BITS) | (q1 << SHIFT_A)
            words[THREE * i + ONE] = ((q1 >> SHIFT_G) & LOW16) | (q2 << SHIFT_B)
            words[THREE * i + TWO] = ((q2 >> SHIFT_B) & U8) | (q3 << SHIFT_G)
    else:
        for i in range(groups):
            q0 = src[g + FOUR * i]
            q1 = src[g + FOUR * i + ONE]
            q2 = src[g + FOUR * i + TWO]
            q3 = src[g + FOUR * i + THREE]
            words[THREE * i] = (q0 & RGB_BITS) | (q1 << SHIFT_A)
            words[THREE * i + ONE] = ((q1 >> SHIFT_G) & LOW16) | (q2 << SHIFT_B)
            words[THREE * i + TWO] = ((q2 >> SHIFT_B) & U8) | (q3 << SHIFT_G)
    for i in range(tail, n):
        p = src[s + i]
        q = swapped(p) if swap else p
        out[3 * i] = np.uint8(q & U8)
        out[3 * i + 1] = np.uint8((q >> SHIFT_G) & U8)
        out[3 * i + 2] = np.uint8((q >> SHIFT_B) & U8)


@KERNEL_INLINE
def unpack3_run(address, dst, d, n, swap):  # type: ignore[no-untyped-def]
    """``n`` 3-byte RGB (or BGR, ``swap``) pixels at ``address`` into ``dst[d]`` as opaque RGBA8.

    The mirror of :func:`pack3_run`: three aligned uint32 words make four pixels.
    """
    src = bytes_at(address, 3 * n)
    head = min(address % 4, n)
    groups = (n - head) // 4
    words = pixels_at(address + 3 * head, 3 * groups)
    tail = head + 4 * groups
    for i in range(head):
        q = (
            np.uint32(src[3 * i])
            | (np.uint32(src[3 * i + 1]) << SHIFT_G)
            | (np.uint32(src[3 * i + 2]) << SHIFT_B)
        )
        dst[d + i] = (swapped(q) if swap else q) | ALPHA_OPAQUE
    g = np.uint64(d + head)
    groups = np.uint64(groups)
    if swap:
        for i in range(groups):
            w0 = words[THREE * i]
            w1 = words[THREE * i + ONE]
            w2 = words[THREE * i + TWO]
            dst[g + FOUR * i] = swapped(w0 & RGB_BITS) | ALPHA_OPAQUE
            dst[g + FOUR * i + ONE] = swapped((w0 >> SHIFT_A) | ((w1 & LOW16) << SHIFT_G)) | (
                ALPHA_OPAQUE
            )
            dst[g + FOUR * i + TWO] = swapped((w1 >> SHIFT_B) | ((w2 & U8) << SHIFT_B)) | (
                ALPHA_OPAQUE
            )
            dst[g + FOUR * i + THREE] = swapped(w2 >> SHIFT_G) | ALPHA_OPAQUE
    else:
        for i in range(groups):
            w0 = words[THREE * i]
            w1 = words[THREE * i + ONE]
            w2 = words[THREE * i + TWO]
            dst[g + FOUR * i] = w0 | ALPHA_OPAQUE
            dst[g + FOUR * i + ONE] = (w0 >> SHIFT_A) | (w1 << SHIFT_G) | ALPHA_OPAQUE
            dst[g + FOUR * i + TWO] = (w1 >> SHIFT_B) | (w2 << SHIFT_B) | ALPHA_OPAQUE
            dst[g + FOUR * i + THREE] = (w2 >> SHIFT_G) | ALPHA_OPAQUE
    for i in range(tail, n):
        q = (
            np.uint32(src[3 * i])
            | (np.uint32(src[3 * i + 1]) << SHIFT_G)
            | (np.uint32(src[3 * i + 2]) << SHIFT_B)
        )
        dst[d + i] = (swapped(q) if swap else q) | ALPHA_OPAQUE
