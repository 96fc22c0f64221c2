"""Conversions in: pictures from cameras and decoders (RGBA, BGRA, RGB, BGR, I420, NV12) to RGBA8.

:func:`convert_to_rgba` is what the engine's workers call once per new picture of a live
source, before it is blended. Alpha is 255 unless the input has alpha. YUV is the inverse of
the matrix in ``framering.kernels.yuv`` (fixed point, :func:`~framering.kernels.yuv.inverse_table`),
each chroma sample covering its 2x2 block (nearest, as ``cv2.cvtColor`` does), planes where
``framering.kernels.formats`` says. The loops follow the same rules as ``convert_out``: int32
fixed point, ``uint64`` indices, one output stream per loop, three-byte pixels four at a time.
"""

from __future__ import annotations

import numpy as np

from framering.kernels.bits import ALPHA_OPAQUE, I0, I255, ONE, SHIFT_B, SHIFT_G, TWO, i32
from framering.kernels.codes import FORMAT_BGR, FORMAT_BGRA
from framering.kernels.formats import FrameFormat, yuv420_planes_kernel
from framering.kernels.jit import KERNEL, KERNEL_INLINE
from framering.kernels.packed import swap_run, unpack3_run
from framering.kernels.pointers import bytes_at, pixels_at
from framering.kernels.validate import check_rgba, check_uint8
from framering.kernels.yuv import INVERSE_FRACTION_BITS, inverse_table

_INVERSE_SHIFT = np.int32(INVERSE_FRACTION_BITS)


@KERNEL_INLINE
def _yuv_pixel(y, k, dr, dg, db):  # type: ignore[no-untyped-def]
    """One opaque RGBA8 pixel from its luma byte and its block's chroma terms."""
    base = i32(i32(y) * k)
    r = min(max(i32(base + dr) >> _INVERSE_SHIFT, I0), I255)
    g = min(max(i32(base + dg) >> _INVERSE_SHIFT, I0), I255)
    b = min(max(i32(base + db) >> _INVERSE_SHIFT, I0), I255)
    return np.uint32(r) | (np.uint32(g) << SHIFT_G) | (np.uint32(b) << SHIFT_B) | ALPHA_OPAQUE


@KERNEL_INLINE
def _rgba_from_yuv_run(src, y, u, v, step, dst, d, m, table):  # type: ignore[no-untyped-def]
    """2m RGBA8 pixels at ``dst[d]`` from the luma bytes ``src[y]`` and m chroma samples at
    ``src[u]``, ``src[v]`` (``step`` bytes apart: 1 for I420, 2 for NV12)."""
    k = table[0]
    ru, rv, ro = table[1], table[2], table[3]
    gu, gv, go = table[4], table[5], table[6]
    bu, bv, bo = table[7], table[8], table[9]
    y = np.uint64(y)
    u = np.uint64(u)
    v = np.uint64(v)
    d = np.uint64(d)
    m = np.uint64(m)
    if step == 1:
        for i in range(m):
            cb = i32(src[u + i])
            cr = i32(src[v + i])
            dr = i32(i32(cb * ru) + i32(cr * rv) + ro)
            dg = i32(i32(cb * gu) + i32(cr * gv) + go)
            db = i32(i32(cb * bu) + i32(cr * bv) + bo)
            dst[d + TWO * i] = _yuv_pixel(src[y + TWO * i], k, dr, dg, db)
            dst[d + TWO * i + ONE] = _yuv_pixel(src[y + TWO * i + ONE], k, dr, dg, db)
    else:
        for i in range(m):
            cb = i32(src[u + TWO * i])
            cr = i32(src[v + TWO * i])
            dr = i32(i32(cb * ru) + i32(cr * rv) + ro)
            dg = i32(i32(cb * gu) + i32(cr * gv) + go)
            db = i32(i32(cb * bu) + i32(cr * bv) + bo)
            dst[d + TWO * i] = _yuv_pixel(src[y + TWO * i], k, dr, dg, db)
            dst[d + TWO * i + ONE] = _yuv_pixel(src[y + TWO * i + ONE], k, dr, dg, db)


@KERNEL
def _yuv420_to_rgba(src_address, width, height, dst_address, code, table):  # type: ignore[no-untyped-def]
    """I420/NV12 to opaque RGBA8, one output row at a time (each chroma row serves two)."""
    src = bytes_at(src_address, width * height * 3 // 2)
    dst = pixels_at(dst_address, width * height)
    cb, cr, step, pitch = yuv420_planes_kernel(code, width, height)
    half = width // 2
    for y in range(height):
        chroma_row = (y // 2) * pitch
        _rgba_from_yuv_run(
            src, y * width, cb + chroma_row, cr + chroma_row, step, dst, y * width, half, table
        )


@KERNEL
def _packed_to_rgba(src_address, width, height, dst_address, code):  # type: ignore[no-untyped-def]
    """BGRA, RGB or BGR to RGBA8 (one run: both pictures are contiguous)."""
    n = width * height
    dst = pixels_at(dst_address, n)
    if code == FORMAT_BGRA:
        swap_run(pixels_at(src_address, n), 0, dst, 0, n)
    else:
        unpack3_run(src_address, dst, 0, n, code == FORMAT_BGR)


def convert_to_rgba(
    src: np.ndarray,
    fmt: FrameFormat | str,
    out: np.ndarray,
    *,
    matrix: str = "bt709",
    value_range: str = "limited",
) -> np.ndarray:
    """Write ``src``, a picture in format ``fmt``, into ``out`` as RGBA8; returns ``out``.

    Args:
        src: a uint8 C-contiguous array of shape ``source_shape(fmt, width, height)``:
            (h, w, 4) for rgba/bgra, (h, w, 3) for rgb/bgr, (h * 3 / 2, w) for i420/nv12
            (as ``cv2`` lays them out; width and height even).
        fmt: the format of ``src``.
        out: (h, w, 4) uint8 C-contiguous writable RGBA8 destination, apart from ``src``;
            its size is the picture's size. Alpha is 255 unless ``src`` has alpha.
        matrix, value_range: the YUV matrix (``bt601``, ``bt709``) and range (``limited``,
            ``full``) of i420/nv12 input.
    """
    fmt = FrameFormat(fmt)
    out = check_rgba(out, "out", writable=True)
    height, width = out.shape[0], out.shape[1]
    table = inverse_table(matrix, value_range)  # checks both names
    fmt.check_size(width, height)
    src = check_uint8(src, fmt.shape(width, height), "src")
    if np.may_share_memory(src, out):
        raise ValueError("src shares memory with out; convert into another buffer")
    if fmt is FrameFormat.RGBA:
        np.copyto(out, src)
    elif fmt.yuv420:
        _yuv420_to_rgba(src.ctypes.data, width, height, out.ctypes.data, fmt.code, table)
    else:
        if fmt is FrameFormat.BGRA and src.ctypes.data % 4:
            src = src.copy()  # the kernel reads whole uint32 pixels
        _packed_to_rgba(src.ctypes.data, width, height, out.ctypes.data, fmt.code)
    return out
