"""Frame format conversions: RGBA8 out to what encoders take, and in from cameras and decoders.

Out (``convert_frame``, and fused into the blend with a :class:`Delivery`): RGBA8 to BGRA,
RGB, BGR, I420 or NV12. In (``convert_to_rgba``): RGBA, BGRA, RGB, BGR, I420 or NV12 to RGBA8.
Alpha is dropped on the way out (as ``cv2.cvtColor`` does: frames handed to an encoder are
opaque) and is 255 on the way in unless the input has alpha.

YUV, with R, G, B in [0, 1] and the matrix's Kr, Kb (``yuv_coefficients``)::

    Y' = Kr R + (1 - Kr - Kb) G + Kb B
    Cb = (B - Y') / (2 (1 - Kb))          Cr = (R - Y') / (2 (1 - Kr))
    limited ("studio") range: Y = 16 + 219 Y',  C = 128 + 224 C
    full range:               Y = 255 Y',       C = 128 + 255 C

and back, the inverse of the same matrix. Every result byte is ``floor(value + 0.5)`` of the
exact value, clamped to [0, 255]. 4:2:0 chroma is the mean of each 2x2 block's chroma on the
way out (``cv2.cvtColor`` takes the block's top-left pixel instead; the two agree on smooth
pictures, not on noise), and each chroma sample covers its 2x2 block on the way in (nearest,
as ``cv2.cvtColor`` does). Planes follow the layout ``cv2`` uses: an (H * 3 / 2, W) uint8
array, Y then U then V (I420) or Y then interleaved UV (NV12). Width and height must be even.

How the kernels get their speed (a 1080p frame: I420 out in ~0.2 ms instead of 5.5 ms):

- Fixed point. Each YUV result is one int32 dot product of the channel bytes with
  coefficients scaled by ``2**FRACTION_BITS``, the rounding half folded into the offset, and
  a shift. LLVM vectorises int32 multiplies 16 lanes wide; float32 needed four conversions a
  pixel and was slower. The coefficients' rounding moves a result by at most 1e-4 (luma),
  4e-4 (4:2:0 chroma) and 5e-4 (RGB from YUV) of a unit from the exact value, so a byte
  differs from the float64 formula's rounding only where the exact value lies that close to
  a half.
- Pixels are read as one little-endian uint32 (``framering.kernels.pointers``), channels taken
  with the shifts and masks of ``framering.kernels.bits``. The four pixels of a chroma block
  are summed per channel in two 16-bit lanes of a uint32 (``p & 0x00FF00FF`` holds R and B),
  and the block's chroma is computed once from the sums (``table`` coefficients are divided
  by 4 for that).
- Every loop is a plain branch-free loop over one row with ``uint64`` indices (see
  ``spans``: signed or mixed indices keep LLVM from vectorising), one output stream
  per loop: a loop writing two output rows of one array was left scalar by LLVM (its
  run-time overlap check failed) and ran 20x slower.
- Three-byte pixels (RGB, BGR) go four at a time as three aligned uint32 words, instead of
  byte by byte.

The row function (``deliver_rows``) is shared by ``convert_frame`` and the whole-stack kernel
(``framering.kernels.stack``), which converts each finished band of rows while it is still in cache:
the two give the same bytes.
"""

from __future__ import annotations

import enum
import functools
from typing import Final

import numba
import numpy as np

from framering.kernels.bits import (
    ALPHA_OPAQUE,
    FOUR,
    GA,
    I0,
    I255,
    LOW16,
    ONE,
    RB,
    RGB_BITS,
    SHIFT_A,
    SHIFT_B,
    SHIFT_G,
    THREE,
    TWO,
    U8,
    i32,
)
from framering.kernels.codes import (
    FORMAT_BGR,
    FORMAT_BGRA,
    FORMAT_I420,
    FORMAT_NV12,
    FORMAT_RGBA,
    NO_DELIVERY,
    format_code,
    format_name,
    matrix_code,
    range_code,
)
from framering.kernels.jit import KERNEL, KERNEL_INLINE
from framering.kernels.pointers import _address_to_voidptr, pixels_at
from framering.kernels.spans import copy_span
from framering.kernels.validate import MAX_SIDE, check_rgba

# (Kr, Kb) of each matrix, keyed by the names of ``codes.MATRIX_NAMES`` (a test checks).
MATRICES: Final = {"bt601": (0.299, 0.114), "bt709": (0.2126, 0.0722)}

# Bits after the binary point of the fixed-point YUV coefficients. More bits, smaller error
# (the error bound halves per bit: 22 gives at most 4e-4 of a unit on 4:2:0 chroma, below the
# 1e-3 the tests allow beyond the half of rounding); the limit is int32: a luma sum reaches
# 255.5 * 2**22, the terms of a chroma sum of four pixels 383.5 * 2**22, under
# 2**31 = 512 * 2**22. RGB from YUV adds terms up to 1124 * 2**20 (BT.709 limited), hence 20
# bits there. ``forward_table`` and ``inverse_table`` check these bounds.
FRACTION_BITS: Final = 22
INVERSE_FRACTION_BITS: Final = 20


class FrameFormat(enum.Enum):
    """Layouts a frame can be delivered in, or a source can come in.

    The members' order is their code (``framering.kernels.codes``: ``FORMAT_NAMES``), which
    the engine's ring header stores: new formats go at the end.
    """

    RGBA = "rgba"
    BGRA = "bgra"
    BGR = "bgr"
    I420 = "i420"
    NV12 = "nv12"
    RGB = "rgb"

    @property
    def code(self) -> int:
        """The format's wire and kernel code (``codes.FORMAT_*``)."""
        return format_code(self.value)

    @classmethod
    def from_code(cls, code: int) -> FrameFormat:
        """The format of a code; ``ValueError`` if there is none."""
        return cls(format_name(code))

    @property
    def yuv420(self) -> bool:
        """Planar 4:2:0 (I420, NV12): even width and height, rows converted in pairs."""
        return self in (FrameFormat.I420, FrameFormat.NV12)

    def shape(self, width: int, height: int) -> tuple[int, ...]:
        """The numpy shape of a frame of this format (what ``cv2`` uses)."""
        if self in (FrameFormat.RGBA, FrameFormat.BGRA):
            return (height, width, 4)
        if self in (FrameFormat.RGB, FrameFormat.BGR):
            return (height, width, 3)
        return (height * 3 // 2, width)

    def nbytes(self, width: int, height: int) -> int:
        """Bytes of a frame of this format."""
        return int(np.prod(self.shape(width, height)))


def source_shape(fmt: FrameFormat | str, width: int, height: int) -> tuple[int, ...]:
    """The numpy shape of a ``width`` x ``height`` picture in format ``fmt``."""
    return FrameFormat(fmt).shape(width, height)


def yuv_coefficients(matrix: str, value_range: str) -> np.ndarray:
    """A (3, 4) float64 array: rows Y, Cb, Cr; columns R, G, B (on 0-255 values), offset."""
    matrix_code(matrix)  # raise ValueError naming the choices
    range_code(value_range)
    kr, kb = MATRICES[matrix]
    kg = 1.0 - kr - kb
    y = np.array([kr, kg, kb])
    cb = (np.array([0.0, 0.0, 1.0]) - y) / (2 * (1 - kb))
    cr = (np.array([1.0, 0.0, 0.0]) - y) / (2 * (1 - kr))
    if value_range == "limited":
        rows = [219 * y, 224 * cb, 224 * cr]
        offsets = [16.0, 128.0, 128.0]
    else:
        rows = [255 * y, 255 * cb, 255 * cr]
        offsets = [0.0, 128.0, 128.0]
    table = np.zeros((3, 4))
    for i, (row, offset) in enumerate(zip(rows, offsets, strict=True)):
        table[i, :3] = row / 255.0
        table[i, 3] = offset
    return table


def _fixed(values: np.ndarray, bits: int) -> np.ndarray:
    return np.round(np.asarray(values) * 2.0**bits).astype(np.int64)


@functools.cache
def forward_table(matrix: str, value_range: str) -> np.ndarray:
    """The int32 fixed-point coefficients of RGB to YUV (read-only, shared).

    ``[yR, yG, yB, yOffset, uR, uG, uB, uOffset, vR, vG, vB, vOffset]`` scaled by
    ``2**FRACTION_BITS``. Luma coefficients apply to one pixel's bytes; chroma coefficients
    are divided by 4 and apply to the sums of a 2x2 block's bytes. Offsets include the 0.5 of
    rounding, so a result is ``(dot + offset) >> FRACTION_BITS``.
    """
    t = yuv_coefficients(matrix, value_range)
    luma = _fixed(np.append(t[0, :3], t[0, 3] + 0.5), FRACTION_BITS)
    cb = _fixed(np.append(t[1, :3] / 4, t[1, 3] + 0.5), FRACTION_BITS)
    cr = _fixed(np.append(t[2, :3] / 4, t[2, 3] + 0.5), FRACTION_BITS)
    # the kernels rely on these: no int32 overflow, luma needs no clamp, chroma only below
    one = 2**FRACTION_BITS
    assert 255 * np.abs(luma[:3]).sum() + luma[3] < 2**31
    assert luma[:3].min() >= 0 and luma[3] > 0 and 255 * luma[:3].sum() + luma[3] < 256 * one
    for c in (cb, cr):
        assert 1020 * np.abs(c[:3]).sum() + c[3] < 2**31
        lowest = 1020 * np.minimum(c[:3], 0).sum() + c[3]
        assert lowest >= 0, "chroma would need a clamp at 0"
    table = np.concatenate([luma, cb, cr]).astype(np.int32)
    table.setflags(write=False)
    return table


@functools.cache
def inverse_table(matrix: str, value_range: str) -> np.ndarray:
    """The int32 fixed-point coefficients of YUV to RGB (read-only, shared).

    ``[kY, rU, rV, rOffset, gU, gV, gOffset, bU, bV, bOffset]`` scaled by
    ``2**INVERSE_FRACTION_BITS``: channel ``c = (kY Y + cU U + cV V + cOffset) >> bits``,
    clamped to [0, 255]. The inverse of ``yuv_coefficients``; its Y column is the same for
    R, G and B (grey has no chroma), so ``kY Y`` is computed once a pixel. Offsets include
    the 0.5 of rounding.
    """
    t = yuv_coefficients(matrix, value_range)
    inverse = np.linalg.inv(t[:, :3])
    offsets = -inverse @ t[:, 3] + 0.5
    assert np.allclose(inverse[:, 0], inverse[0, 0], rtol=0, atol=1e-12)
    fixed = [_fixed(inverse[0, 0], INVERSE_FRACTION_BITS)]
    for c in range(3):
        fixed += list(_fixed(np.append(inverse[c, 1:], offsets[c]), INVERSE_FRACTION_BITS))
    table = np.array(fixed, dtype=np.int64)
    for c in range(3):
        u, v, offset = table[1 + 3 * c : 4 + 3 * c]
        assert 255 * (table[0] + abs(u) + abs(v)) + abs(offset) < 2**31
    table = table.astype(np.int32)
    table.setflags(write=False)
    return table


# The table handed to the kernels when nothing is converted (same type as the real ones).
NO_TABLE: Final = np.zeros(12, np.int32)
NO_TABLE.setflags(write=False)

_SHIFT = np.int32(FRACTION_BITS)
_INVERSE_SHIFT = np.int32(INVERSE_FRACTION_BITS)


@KERNEL_INLINE
def _bytes_at(address, count):  # type: ignore[no-untyped-def]
    """A 1-d ``uint8`` array of ``count`` bytes starting at ``address`` (owns nothing)."""
    return numba.carray(_address_to_voidptr(address), count, np.uint8)


@KERNEL_INLINE
def _swapped(p):  # type: ignore[no-untyped-def]
    """A packed pixel with its bytes 0 and 2 exchanged (RGBA <-> BGRA)."""
    return (p & GA) | ((p & U8) << SHIFT_B) | ((p >> SHIFT_B) & U8)


@KERNEL_INLINE
def _swap_run(src, s, dst, d, n):  # type: ignore[no-untyped-def]
    """``n`` pixels with red and blue exchanged: RGBA to BGRA, or BGRA to RGBA."""
    s = np.uint64(s)
    d = np.uint64(d)
    n = np.uint64(n)
    for i in range(n):
        dst[d + i] = _swapped(src[s + i])


@KERNEL_INLINE
def _pack3_run(src, s, address, n, swap):  # type: ignore[no-untyped-def]
    """``n`` pixels from ``src[s]`` as 3-byte BGR (``swap``) or RGB into bytes at ``address``.

    Four pixels make three uint32 words (q0 q1 q2 q3 -> q0|q1<<24, q1>>8|q2<<16, q2>>16|q3<<8),
    stored aligned: ``head`` single pixels first bring ``address`` to a multiple of 4
    (``address + 3 * head`` is one when ``head = address % 4``).
    """
    out = _bytes_at(address, 3 * n)
    head = min(address % 4, n)
    groups = (n - head) // 4
    words = pixels_at(address + 3 * head, 3 * groups)
    tail = head + 4 * groups
    for i in range(head):
        p = src[s + i]
        q = _swapped(p) if swap else p
        out[3 * i] = np.uint8(q & U8)
        out[3 * i + 1] = np.uint8((q >> SHIFT_G) & U8)
        out[3 * i + 2] = np.uint8((q >> SHIFT_B) & U8)
    g = np.uint64(s + head)
    groups = np.uint64(groups)
    if swap:
        for i in range(groups):
            q0 = _swapped(src[g + FOUR * i])
            q1 = _swapped(src[g + FOUR * i + ONE])
            q2 = _swapped(src[g + FOUR * i + TWO])
            q3 = _swapped(src[g + FOUR * i + THREE])
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
        q = _swapped(p) if swap else p
        out[3 * i] = np.uint8(q & U8)
        out[3 * i + 1] = np.uint8((q >> SHIFT_G) & U8)
        out[3 * i + 2] = np.uint8((q >> SHIFT_B) & U8)


@KERNEL_INLINE
def _unpack3_run(address, dst, d, n, swap):  # type: ignore[no-untyped-def]
    """``n`` 3-byte RGB (or BGR, ``swap``) pixels at ``address`` into ``dst[d]`` as opaque RGBA8.

    The mirror of :func:`_pack3_run`: three aligned uint32 words make four pixels.
    """
    src = _bytes_at(address, 3 * n)
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
        dst[d + i] = (_swapped(q) if swap else q) | ALPHA_OPAQUE
    g = np.uint64(d + head)
    groups = np.uint64(groups)
    if swap:
        for i in range(groups):
            w0 = words[THREE * i]
            w1 = words[THREE * i + ONE]
            w2 = words[THREE * i + TWO]
            dst[g + FOUR * i] = _swapped(w0 & RGB_BITS) | ALPHA_OPAQUE
            dst[g + FOUR * i + ONE] = _swapped((w0 >> SHIFT_A) | ((w1 & LOW16) << SHIFT_G)) | (
                ALPHA_OPAQUE
            )
            dst[g + FOUR * i + TWO] = _swapped((w1 >> SHIFT_B) | ((w2 & U8) << SHIFT_B)) | (
                ALPHA_OPAQUE
            )
            dst[g + FOUR * i + THREE] = _swapped(w2 >> SHIFT_G) | ALPHA_OPAQUE
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
        dst[d + i] = (_swapped(q) if swap else q) | ALPHA_OPAQUE


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
def packed_rows(src, width, y0, y1, address, code):  # type: ignore[no-untyped-def]
    """Rows [y0, y1) of the RGBA8 pixels ``src`` into the RGBA/BGRA/RGB/BGR frame at ``address``."""
    if code in (FORMAT_RGBA, FORMAT_BGRA):
        dst = pixels_at(address, width * y1)
        for y in range(y0, y1):
            if code == FORMAT_BGRA:
                _swap_run(src, y * width, dst, y * width, width)
            else:
                copy_span(dst, y * width, src, y * width, width)
    else:
        for y in range(y0, y1):
            _pack3_run(src, y * width, address + 3 * y * width, width, code == FORMAT_BGR)


@KERNEL_INLINE
def yuv420_rows(src, width, height, y0, y1, address, code, table):  # type: ignore[no-untyped-def]
    """Row pairs [y0, y1) (both even) of the RGBA8 pixels ``src`` into the I420/NV12 frame at
    ``address``: each pair's two luma rows, then its chroma row."""
    out = _bytes_at(address, width * height * 3 // 2)
    luma = width * height
    half = width // 2
    for y in range(y0, y1, 2):
        _luma_run(src, y * width, out, y * width, width, table)
        _luma_run(src, (y + 1) * width, out, (y + 1) * width, width, table)
        if code == FORMAT_I420:
            u = luma + (y // 2) * half
            _chroma_planes_run(src, y * width, (y + 1) * width, out, u, u + luma // 4, half, table)
        else:
            uv = luma + (y // 2) * width
            _chroma_pairs_run(src, y * width, (y + 1) * width, out, uv, half, table)


@KERNEL
def deliver_rows(src, width, height, y0, y1, address, code, table):  # type: ignore[no-untyped-def]
    """Rows [y0, y1) of the RGBA8 frame ``src`` (flat uint32 pixels) converted into the frame
    at ``address`` in format ``code`` (for I420/NV12, y0 and y1 even).

    The one row function of ``convert_frame`` and of the whole-stack kernel's delivery, which
    calls it once per band of rows (not inlined: a call per band costs nothing).
    """
    if code in (FORMAT_I420, FORMAT_NV12):
        yuv420_rows(src, width, height, y0, y1, address, code, table)
    elif code != NO_DELIVERY:
        packed_rows(src, width, y0, y1, address, code)


@KERNEL
def _convert_packed(src_address, width, height, address, code, table):  # type: ignore[no-untyped-def]
    """RGBA8 to RGBA/BGRA/RGB/BGR: the packed-pixel half of :func:`convert_frame`."""
    src = pixels_at(src_address, width * height)
    deliver_rows(src, width, height, 0, height, address, code, table)


# The name tests and older callers know this entry point by.
_swap_rb = _convert_packed


@KERNEL
def _yuv420(src_address, width, height, address, code, table):  # type: ignore[no-untyped-def]
    """RGBA8 to I420/NV12: the 4:2:0 half of :func:`convert_frame`."""
    src = pixels_at(src_address, width * height)
    deliver_rows(src, width, height, 0, height, address, code, table)


def _check_out(out: object, shape: tuple[int, ...], what: str) -> np.ndarray:
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{what} must be a numpy.ndarray, not {type(out).__name__}")
    if type(out) is not np.ndarray:  # a subclass may report any shape it likes
        out = out.view(np.ndarray)
    if out.dtype != np.uint8:
        raise TypeError(f"{what} must have dtype uint8, not {out.dtype}")
    if out.shape != shape or not out.flags.c_contiguous:
        raise ValueError(f"{what} must be C-contiguous with shape {shape}, not {out.shape}")
    return out


def _check_even(fmt: FrameFormat, width: int, height: int) -> None:
    if fmt.yuv420 and (width % 2 or height % 2):
        raise ValueError(f"{fmt.value} needs an even width and height, not {width}x{height}")


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
    out = _check_out(out, fmt.shape(width, height), "out")
    if not out.flags.writeable:
        raise ValueError("out is read-only")
    if np.may_share_memory(frame, out):
        raise ValueError("out shares memory with the frame; convert into another buffer")
    _check_even(fmt, width, height)
    table = forward_table(matrix, value_range)
    if fmt is FrameFormat.RGBA:
        np.copyto(out, frame)
    elif fmt.yuv420:
        _yuv420(frame.ctypes.data, width, height, out.ctypes.data, fmt.code, table)
    elif fmt is FrameFormat.BGRA and out.ctypes.data % 4:
        # the kernel stores whole uint32 pixels: go through an aligned buffer
        np.copyto(out, convert_frame(frame, np.empty_like(out), fmt))
    else:
        _convert_packed(frame.ctypes.data, width, height, out.ctypes.data, fmt.code, table)
    return out


# Rows the whole-stack kernel composites before it converts them into a Delivery, as one band
# (even: 4:2:0 converts row pairs), while they are still in L2 (1 MB of RGBA at 1080p).
# Converting each row pair right after it is composited, while it is in L1, was slower than a
# separate pass (studio-1080p, single thread: I420 +6%, BGR and BGRA +20%): the delivery's
# writes, interleaved row by row with the layers' reads, cost more memory bandwidth than
# re-reading the frame from cache saves. Bands of 128 rows were within -3% to +5% of a
# separate pass. Also the rows of the scratch band of ``composite_stack(write_frame=False)``.
DELIVER_BAND_ROWS = 128


class Delivery:
    """Where ``composite_stack`` writes the finished rows converted, and in which format.

    ``Delivery(fmt, out, matrix=..., value_range=...)`` checks ``out`` once (dtype uint8,
    C-contiguous, writable, a shape of ``fmt``; 4-byte aligned for BGRA) and works out the
    frame size from it; ``composite_stack(frame, layers, deliver=...)`` then checks the frame
    size, the row band (even bounds for I420/NV12) and that ``out`` shares no memory with the
    frame or a layer. Immutable, so one object may be reused for every frame of a slot; it
    keeps ``out`` alive.

    RGBA delivery converts nothing: when ``out`` is the frame itself the frame is the
    delivery; when it is another buffer, the rows are copied into it.
    """

    __slots__ = (
        "_address",
        "_code",
        "_scratch",
        "_table",
        "format",
        "height",
        "matrix",
        "out",
        "value_range",
        "width",
    )

    format: FrameFormat
    out: np.ndarray
    matrix: str
    value_range: str
    width: int
    height: int

    def __init__(
        self,
        fmt: FrameFormat | str,
        out: np.ndarray,
        *,
        matrix: str = "bt709",
        value_range: str = "limited",
    ) -> None:
        fmt = FrameFormat(fmt)
        table = forward_table(matrix, value_range)  # checks both names
        if not isinstance(out, np.ndarray):
            raise TypeError(f"out must be a numpy.ndarray, not {type(out).__name__}")
        if fmt.yuv420:
            rows, width = out.shape if out.ndim == 2 else (0, 0)
            height = rows * 2 // 3
            if out.ndim != 2 or rows % 3:
                raise ValueError(
                    f"out must have shape (height * 3 / 2, width) for {fmt.value}, not {out.shape}"
                )
        else:
            channels = fmt.shape(1, 1)[2]
            if out.ndim != 3 or out.shape[2] != channels:
                raise ValueError(
                    f"out must have shape (height, width, {channels}) for {fmt.value}, "
                    f"not {out.shape}"
                )
            height, width = out.shape[:2]
        if not (1 <= width <= MAX_SIDE and 1 <= height <= MAX_SIDE):
            raise ValueError(
                f"out must be between 1x1 and {MAX_SIDE}x{MAX_SIDE} pixels, not {width}x{height}"
            )
        out = _check_out(out, fmt.shape(width, height), "out")
        if not out.flags.writeable:
            raise ValueError("out is read-only; the kernel writes the delivery in place")
        _check_even(fmt, width, height)
        if fmt in (FrameFormat.RGBA, FrameFormat.BGRA) and out.ctypes.data % 4:
            raise ValueError(f"out must start on a 4-byte boundary for {fmt.value}")
        setattr_ = object.__setattr__
        setattr_(self, "format", fmt)
        setattr_(self, "out", out)
        setattr_(self, "matrix", matrix)
        setattr_(self, "value_range", value_range)
        setattr_(self, "width", width)
        setattr_(self, "height", height)
        setattr_(self, "_address", out.ctypes.data)
        setattr_(self, "_code", fmt.code)
        setattr_(self, "_table", table)
        setattr_(self, "_scratch", None)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("a Delivery is immutable; make a new one")

    def __repr__(self) -> str:
        return (
            f"Delivery({self.format.value!r}, <{self.width}x{self.height}>, "
            f"matrix={self.matrix!r}, value_range={self.value_range!r})"
        )

    def scratch_band(self, width: int) -> tuple[int, int]:
        """(address, rows) of the band of RGBA rows the kernel composites into when the frame
        itself is not written (``composite_stack(write_frame=False)``).

        Made on first use and kept: one per delivery, reused by every frame.
        """
        if width != self.width:
            raise ValueError(f"the delivery is for {self.width}-pixel rows, not {width}")
        if self._scratch is None:
            object.__setattr__(
                self, "_scratch", np.empty((DELIVER_BAND_ROWS, self.width, 4), np.uint8)
            )
        return int(self._scratch.ctypes.data), int(self._scratch.shape[0])

    def kernel_arguments(self, frame: np.ndarray, y0: int, y1: int) -> tuple[int, int, np.ndarray]:
        """(address, code, table) for the whole-stack kernel, after checking ``frame``
        (already a checked RGBA8 array) and the row band against this delivery."""
        height, width = frame.shape[0], frame.shape[1]
        if (width, height) != (self.width, self.height):
            raise ValueError(
                f"the delivery is for {self.width}x{self.height} frames, "
                f"not for this {width}x{height} frame"
            )
        if self.format.yuv420 and (y0 % 2 or y1 % 2):
            raise ValueError(
                f"{self.format.value} converts rows in pairs: rows must start and end on even "
                f"rows, not ({y0}, {y1})"
            )
        if self.format is FrameFormat.RGBA and self._address == frame.ctypes.data:
            return 0, NO_DELIVERY, NO_TABLE  # the frame is the delivery: nothing to convert
        if np.may_share_memory(frame, self.out):
            raise ValueError(
                "the delivery's out shares memory with the frame; deliver into another buffer"
            )
        return self._address, self._code, self._table


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
    src = _bytes_at(src_address, width * height * 3 // 2)
    dst = pixels_at(dst_address, width * height)
    luma = width * height
    half = width // 2
    for y in range(height):
        if code == FORMAT_I420:
            u = luma + (y // 2) * half
            v = u + luma // 4
            step = 1
        else:
            u = luma + (y // 2) * width
            v = u + 1
            step = 2
        _rgba_from_yuv_run(src, y * width, u, v, step, dst, y * width, half, table)


@KERNEL
def _packed_to_rgba(src_address, width, height, dst_address, code):  # type: ignore[no-untyped-def]
    """BGRA, RGB or BGR to RGBA8 (one run: both pictures are contiguous)."""
    n = width * height
    dst = pixels_at(dst_address, n)
    if code == FORMAT_BGRA:
        _swap_run(pixels_at(src_address, n), 0, dst, 0, n)
    else:
        _unpack3_run(src_address, dst, 0, n, code == FORMAT_BGR)


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
    _check_even(fmt, width, height)
    src = _check_out(src, fmt.shape(width, height), "src")
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
