"""Conversions out: RGBA8 frames to BGRA, RGB, BGR, I420 or NV12, for encoders.

:func:`convert_frame` converts a whole frame; :func:`deliver_rows` is its row function, and the
whole-stack kernel (``framering.kernels.stack``) calls the same function on each finished band
of rows while the band is still in cache, so the two give the same bytes. Alpha is dropped (as
``cv2.cvtColor`` does: frames handed to an encoder are opaque). YUV follows the formulas and
the fixed-point tables of ``framering.kernels.yuv``; 4:2:0 chroma is the mean of each 2x2
block's chroma (``cv2.cvtColor`` takes the block's top-left pixel instead: the two agree on
smooth pictures, not on noise); planes lie where ``framering.kernels.formats`` says.

How the loops get their speed (a 1080p frame: I420 out in ~0.2 ms instead of 5.5 ms):

- Fixed point, int32: each YUV byte is one dot product and a shift (see ``yuv``), every step
  cast back to int32 (``bits.i32``).
- A pixel is one uint32, channels taken with shifts and masks. The four pixels of a chroma
  block are summed per channel in two 16-bit lanes of a uint32 (``p & 0x00FF00FF`` holds R
  and B), and the block's chroma is computed once from the sums (the table's chroma
  coefficients are divided by 4 for that).
- Every loop is a plain branch-free loop over one row with ``uint64`` indices (see ``spans``:
  signed or mixed indices keep LLVM from vectorising), one output stream per loop: a loop
  writing two output rows of one array was left scalar by LLVM (its run-time overlap check
  failed) and ran 20x slower. Hence luma rows, then the pair's chroma, each in its own loop.
- Three-byte pixels go four at a time as three aligned uint32 words (``packed``).
"""

from __future__ import annotations

import numpy as np

from framering.kernels.bits import I255, LOW16, ONE, RB, SHIFT_B, SHIFT_G, TWO, U8, i32
from framering.kernels.codes import (
    FORMAT_BGR,
    FORMAT_BGRA,
    FORMAT_I420,
    FORMAT_NV12,
    FORMAT_RGBA,
    NO_DELIVERY,
)
from framering.kernels.formats import FrameFormat, yuv420_planes_kernel
from framering.kernels.jit import KERNEL, KERNEL_INLINE
from framering.kernels.packed import pack3_run, swap_run
from framering.kernels.pointers import bytes_at, pixels_at
from framering.kernels.spans import copy_span
from framering.kernels.validate import check_rgba, check_uint8
from framering.kernels.yuv import FRACTION_BITS, forward_table

_SHIFT = np.int32(FRACTION_BITS)


@KERNEL_INLINE
def _luma_run(src, s, out, o, n, table):  # type: ignore[no-untyped-def]
    """Y of ``n`` pixels: ``(yR R + yG G + yB B + yOffset) >> FRACTION_BITS``.

    No clamp: with non-negative coefficients summing to 1 (scaled) the result lies in
    [0, 255] (``forward_table`` checks it).
    """
    kr = table[0]
    kg = table[1]
    kb = table[2]
    offset = table[3]
    s = np.uint64(s)
    o = np.uint64(o)
    n = np.uint64(n)
    for i in range(n):
        p = src[s + i]
        r = i32(p & U8)
        g = i32((p >> SHIFT_G) & U8)
        b = i32((p >> SHIFT_B) & U8)
        out[o + i] = np.uint8(i32(r * kr + g * kg + b * kb + offset) >> _SHIFT)


@KERNEL_INLINE
def _block_sums(src, top, bottom, i):  # type: ignore[no-untyped-def]
    """(R, G, B) sums of the 2x2 block ``i`` whose rows start at ``src[top]``, ``src[bottom]``.

    R and B are added in the two 16-bit halves of ``p & 0x00FF00FF`` (at most 4 * 255, no
    carry between them), G in the low half of ``(p >> 8) & 0x00FF00FF``.
    """
    a = src[top + TWO * i]
    b = src[top + TWO * i + ONE]
    c = src[bottom + TWO * i]
    d = src[bottom + TWO * i + ONE]
    rb = (a & RB) + (b & RB) + (c & RB) + (d & RB)
    ga = (
        ((a >> SHIFT_G) & RB)
        + ((b >> SHIFT_G) & RB)
        + ((c >> SHIFT_G) & RB)
        + ((d >> SHIFT_G) & RB)
    )
    return i32(rb & LOW16), i32(ga & LOW16), i32(rb >> SHIFT_B)


@KERNEL_INLINE
def _chroma(r, g, b, kr, kg, kb, offset):  # type: ignore[no-untyped-def]
    """One chroma byte from a block's channel sums (coefficients already divided by 4)."""
    return np.uint8(min(i32(r * kr + g * kg + b * kb + offset) >> _SHIFT, I255))


@KERNEL_INLINE
def _chroma_planes_run(src, top, bottom, out, u, v, m, table):  # type: ignore[no-untyped-def]
    """``m`` Cb bytes at ``out[u]`` and ``m`` Cr bytes at ``out[v]`` (I420) from 2m x 2 pixels."""
    ur, ug, ub, uo = table[4], table[5], table[6], table[7]
    vr, vg, vb, vo = table[8], table[9], table[10], table[11]
    top = np.uint64(top)
    bottom = np.uint64(bottom)
    u = np.uint64(u)
    v = np.uint64(v)
    m = np.uint64(m)
    for i in range(m):
        r, g, b = _block_sums(src, top, bottom, i)
        out[u + i] = _chroma(r, g, b, ur, ug, ub, uo)
        out[v + i] = _chroma(r, g, b, vr, vg, vb, vo)


@KERNEL_INLINE
def _chroma_pairs_run(src, top, bottom, out, uv, m, table):  # type: ignore[no-untyped-def]
    """``m`` (Cb, Cr) byte pairs at ``out[uv]`` (NV12) from 2m x 2 pixels."""
    ur, ug, ub, uo = table[4], table[5], table[6], table[7]
    vr, vg, vb, vo = table[8], table[9], table[10], table[11]
    top = np.uint64(top)
    bottom = np.uint64(bottom)
    uv = np.uint64(uv)
    m = np.uint64(m)
    for i in range(m):
        r, g, b = _block_sums(src, top, bottom, i)
        out[uv + TWO * i] = _chroma(r, g, b, ur, ug, ub, uo)
        out[uv + TWO * i + ONE] = _chroma(r, g, b, vr, vg, vb, vo)


@KERNEL_INLINE
def packed_rows(src, width, x0, y0, x1, y1, address, code):  # type: ignore[no-untyped-def]
    """The box ``[x0, x1) x [y0, y1)`` of the RGBA8 pixels ``src`` into the RGBA/BGRA/RGB/BGR
    frame at ``address``."""
    n = x1 - x0
    if code in (FORMAT_RGBA, FORMAT_BGRA):
        dst = pixels_at(address, width * y1)
        for y in range(y0, y1):
            p = y * width + x0
            if code == FORMAT_BGRA:
                swap_run(src, p, dst, p, n)
            else:
                copy_span(dst, p, src, p, n)
    else:
        for y in range(y0, y1):
            p = y * width + x0
            pack3_run(src, p, address + 3 * p, n, code == FORMAT_BGR)


@KERNEL_INLINE
def yuv420_rows(src, width, height, x0, y0, x1, y1, address, code, table):  # type: ignore[no-untyped-def]
    """The box ``[x0, x1) x [y0, y1)`` (every bound even) of the RGBA8 pixels ``src`` into the
    I420/NV12 frame at ``address``: each row pair's two luma runs, then its chroma run."""
    out = bytes_at(address, width * height * 3 // 2)
    cb, cr, _, pitch = yuv420_planes_kernel(code, width, height)
    half = (x1 - x0) // 2
    for y in range(y0, y1, 2):
        top, bottom = y * width + x0, (y + 1) * width + x0
        _luma_run(src, top, out, top, x1 - x0, table)
        _luma_run(src, bottom, out, bottom, x1 - x0, table)
        chroma_row = (y // 2) * pitch
        if code == FORMAT_I420:
            u, v = cb + chroma_row + x0 // 2, cr + chroma_row + x0 // 2
            _chroma_planes_run(src, top, bottom, out, u, v, half, table)
        else:  # NV12: Cr is the byte after each Cb
            _chroma_pairs_run(src, top, bottom, out, cb + chroma_row + x0, half, table)


@KERNEL
def deliver_rows(src, width, height, x0, y0, x1, y1, address, code, table):  # type: ignore[no-untyped-def]
    """The box ``[x0, x1) x [y0, y1)`` of the RGBA8 frame ``src`` (flat uint32 pixels)
    converted into the frame at ``address`` in format ``code`` (for I420/NV12, every bound
    even).

    The one row function of ``convert_frame`` and of the whole-stack kernel's delivery, which
    calls it once per band of rows of each box it composites (not inlined: a call per band
    costs nothing).
    """
    if code in (FORMAT_I420, FORMAT_NV12):
        yuv420_rows(src, width, height, x0, y0, x1, y1, address, code, table)
    elif code != NO_DELIVERY:
        packed_rows(src, width, x0, y0, x1, y1, address, code)


@KERNEL
def _convert_frame(src_address, width, height, address, code, table):  # type: ignore[no-untyped-def]
    """The kernel behind :func:`convert_frame`: the whole RGBA8 frame at ``src_address``
    through :func:`deliver_rows` into the frame at ``address`` in format ``code``."""
    src = pixels_at(src_address, width * height)
    deliver_rows(src, width, height, 0, 0, width, height, address, code, table)


def convert_frame(
    frame: np.ndarray,
    out: np.ndarray,
    fmt: FrameFormat | str,
    *,
    matrix: str = "bt709",
    value_range: str = "limited",
) -> np.ndarray:
    """Write ``frame`` (RGBA8) into ``out`` in format ``fmt``; returns ``out``.

    ``out`` must have exactly ``FrameFormat(fmt).shape(width, height)``, dtype uint8, be
    C-contiguous, writable and apart from ``frame``. ``matrix`` (``bt601``, ``bt709``) and
    ``value_range`` (``limited``, ``full``) apply to I420 and NV12.
    """
    frame = check_rgba(frame, "frame", writable=False)
    fmt = FrameFormat(fmt)
    height, width = frame.shape[:2]
    out = check_uint8(out, fmt.shape(width, height), "out")
    if not out.flags.writeable:
        raise ValueError("out is read-only")
    if np.may_share_memory(frame, out):
        raise ValueError("out shares memory with the frame; convert into another buffer")
    fmt.check_size(width, height)
    table = forward_table(matrix, value_range)
    if fmt is FrameFormat.RGBA:
        np.copyto(out, frame)
    elif fmt is FrameFormat.BGRA and out.ctypes.data % 4:
        # the kernel stores whole uint32 pixels: go through an aligned buffer
        np.copyto(out, convert_frame(frame, np.empty_like(out), fmt))
    else:
        _convert_frame(frame.ctypes.data, width, height, out.ctypes.data, fmt.code, table)
    return out
