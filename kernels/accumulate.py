"""The whole-stack kernel's accumulator: a run of pixels held as premultiplied float32.

A stack is blended into an accumulator of at most :data:`CHUNK` pixels (4 KiB per channel
set, so it stays in L1 cache while every layer covering it is blended in) and rounded to
RGBA8 once, when the run is written back. Accumulating premultiplied colour makes
source-over a pair of multiply-adds per channel with no division; the one division a pixel
is in :func:`write_back`. Layout: one flat float32 array, planar, red at ``[0, CHUNK)``,
green at ``[CHUNK, 2 CHUNK)``, blue, then alpha; colour on a 0-255 scale, alpha on 0-1.

Every loop is one formula per pixel that does not depend on any other pixel, so a run
blended alone gives the same bytes as a longer one, which is what lets damaged boxes, row
bands and any chunking of a row agree byte for byte. Where a loop has a shortcut it is
exact in IEEE arithmetic:

- Storing a layer over transparent black (:func:`store_normal`) equals blending it
  (:func:`blend_normal`) over zeros: ``0 + a * (Cs - 0)`` is ``a * Cs``.
- The alpha update is written ``ab + as (1 - ab)``, so an opaque accumulator stays exactly
  1.0 and its colour is written back unchanged by the division.
- An opaque layer's copy (:func:`load_opaque`) is what blending it at full opacity gives,
  and an RGBA8 pixel loaded (:func:`load_frame`) and written back unchanged is the same
  bytes, except a pixel with alpha 0, which :func:`write_back` keeps as it was.

Blend modes other than ``normal`` take :func:`blend_general`, the W3C formulas of
``framering.kernels.blend`` in scalar float64 on the accumulator's values.
"""

from __future__ import annotations

import numpy as np

from framering.kernels.bits import ALPHA_OPAQUE, SHIFT_A, SHIFT_B, SHIFT_G, U8
from framering.kernels.blend import BlendMode, blend_channel
from framering.kernels.fma import fma32
from framering.kernels.jit import KERNEL, KERNEL_INLINE
from framering.kernels.spans import TAIL  # remainders as one overlapping block

# Pixels in one accumulator: 4 channels x 4 bytes x 256 = 4 KiB, which stays in L1 beside the
# layer rows being read. (512 measured the same on studio-1080p and stress-4k, and slower on
# sprites-1080p, whose spans rarely fill it.)
CHUNK = 256


# Offsets of the four planes.
R = np.uint64(0)
G = np.uint64(CHUNK)
B = np.uint64(2 * CHUNK)
A = np.uint64(3 * CHUNK)

_F32_ZERO = np.float32(0.0)
_F32_HALF = np.float32(0.5)
_F32_ONE = np.float32(1.0)
_F32_255 = np.float32(255.0)
_F32_INV255 = np.float32(1.0 / 255.0)
_F32_TINY = np.float32(1e-30)  # where alpha is 0 colour is 0 too: any positive divisor works

_SOURCE = int(BlendMode.SOURCE)
_ADD = int(BlendMode.ADD)

# Straight backdrop colour at least this close to 1 is 1. Divided back out of float32
# premultiplied values, a white backdrop comes out as 0.99999994, and color-burn jumps there:
# B(1, 0) = 1 but B(1 - e, 0) = 0 (13 levels off the reference in one hypothesis example).
# The snap moves no value by more than 1e-6 (0.0003 of a level).
_CB_ONE = 1.0 - 1e-6


@KERNEL_INLINE
def _f32(channel):  # type: ignore[no-untyped-def]
    """A channel byte (held in a uint32) as float32, through int32: uint32 to float makes
    LLVM widen every lane to int64 first, which halves the vector width."""
    return np.float32(np.int32(channel))


@KERNEL_INLINE
def _round_u8(value):  # type: ignore[no-untyped-def]
    """``floor(value + 0.5)`` of a value in ``[0, 255]`` (give or take a few ulps) as a uint32
    byte: exact halves round up, as the reference and ``docs/kernels.md`` say (``rint`` would
    round them to even, which moves half the channels of a 50% crossfade by one level).

    The value is never negative, so truncation is the floor. No clamp is needed: every value
    is a convex combination of bytes, at most a few ulps above 255, and 255.5 plus a few ulps
    still truncates to 255 without carrying into the next byte.
    """
    return np.uint32(np.int32(value + _F32_HALF))


@KERNEL_INLINE
def _round_u8_product(value, factor):  # type: ignore[no-untyped-def]
    """:func:`_round_u8` of ``value * factor``, with the product and the half added in one
    rounding (:func:`fma32`). Where ``factor`` is 1 it is exactly :func:`_round_u8` of
    ``value``, which is what lets an opaque pixel skip the division."""
    return np.uint32(np.int32(fma32(value, factor, _F32_HALF)))


@KERNEL_INLINE
def _over(p, k, r, g, b, ab):  # type: ignore[no-untyped-def]
    """A straight ``normal`` pixel ``p`` (``k`` = opacity / 255) over premultiplied
    ``(r, g, b, ab)``: the one formula every normal loop, fused or not, computes with.

    Colour is the lerp ``c + as (Cs - c)``, which is ``as Cs + (1 - as) c``, as a subtraction
    and one fused multiply-add (:func:`fma32`, rounded once): it is exactly ``c`` where ``as``
    is 0, exactly ``Cs`` where it is 1, and exactly ``as Cs`` over zeros (what
    :func:`store_normal` stores). Alpha is ``ab + as (1 - ab)`` the same way, which stays
    exactly 1 over an opaque accumulator.
    """
    a = _f32(p >> SHIFT_A) * k
    return (
        fma32(a, _f32(p & U8) - r, r),
        fma32(a, _f32((p >> SHIFT_G) & U8) - g, g),
        fma32(a, _f32((p >> SHIFT_B) & U8) - b, b),
        fma32(a, _F32_ONE - ab, ab),
    )


@KERNEL_INLINE
def _opaque(q):  # type: ignore[no-untyped-def]
    """An opaque pixel as accumulator values: its colour, alpha 1."""
    return _f32(q & U8), _f32((q >> SHIFT_G) & U8), _f32((q >> SHIFT_B) & U8), _F32_ONE


@KERNEL_INLINE
def zero(acc, o, n):  # type: ignore[no-untyped-def]
    """Transparent black at ``[o, o + n)``."""
    o = np.uint64(o)
    n = np.uint64(n)
    for i in range(n):
        acc[R + o + i] = _F32_ZERO
        acc[G + o + i] = _F32_ZERO
        acc[B + o + i] = _F32_ZERO
        acc[A + o + i] = _F32_ZERO


@KERNEL_INLINE
def load_opaque(acc, o, src, s, n):  # type: ignore[no-untyped-def]
    """Replace ``[o, o + n)`` with an opaque layer's pixels: its colour, alpha 1 whatever its
    alpha bytes say (a layer flagged opaque is treated as opaque everywhere)."""
    o = np.uint64(o)
    s = np.uint64(s)
    n = np.uint64(n)
    for i in range(n):
        r, g, b, a = _opaque(src[s + i])
        acc[R + o + i] = r
        acc[G + o + i] = g
        acc[B + o + i] = b
        acc[A + o + i] = a


@KERNEL_INLINE
def load_frame(acc, o, dst, d, n):  # type: ignore[no-untyped-def]
    """``[o, o + n)`` from straight RGBA8 frame pixels (compositing with ``clear=False``)."""
    o = np.uint64(o)
    d = np.uint64(d)
    n = np.uint64(n)
    for i in range(n):
        q = dst[d + i]
        a = _f32(q >> SHIFT_A) * _F32_INV255
        acc[R + o + i] = _f32(q & U8) * a
        acc[G + o + i] = _f32((q >> SHIFT_G) & U8) * a
        acc[B + o + i] = _f32((q >> SHIFT_B) & U8) * a
        acc[A + o + i] = a


@KERNEL_INLINE
def store_normal(acc, o, src, s, n, k):  # type: ignore[no-untyped-def]
    """A straight ``normal`` layer over transparent black, without reading the accumulator:
    the same values as :func:`blend_normal` over zeros. ``k`` is opacity / 255."""
    o = np.uint64(o)
    s = np.uint64(s)
    n = np.uint64(n)
    for i in range(n):
        p = src[s + i]
        a = _f32(p >> SHIFT_A) * k
        acc[R + o + i] = a * _f32(p & U8)
        acc[G + o + i] = a * _f32((p >> SHIFT_G) & U8)
        acc[B + o + i] = a * _f32((p >> SHIFT_B) & U8)
        acc[A + o + i] = a


@KERNEL_INLINE
def blend_normal(acc, o, src, s, n, k):  # type: ignore[no-untyped-def]
    """Source-over of a straight layer: ``c = as Cs + (1 - as) c``, ``a = a + as (1 - a)``."""
    o = np.uint64(o)
    s = np.uint64(s)
    n = np.uint64(n)
    for i in range(n):
        r, g, b, a = _over(
            src[s + i], k, acc[R + o + i], acc[G + o + i], acc[B + o + i], acc[A + o + i]
        )
        acc[R + o + i] = r
        acc[G + o + i] = g
        acc[B + o + i] = b
        acc[A + o + i] = a


@KERNEL_INLINE
def blend_normal_premultiplied(acc, o, src, s, n, opacity, k):  # type: ignore[no-untyped-def]
    """Source-over of a premultiplied layer. Its straight colour is ``min(1, Cp / Sa)`` (as the
    reference clamps an invalid premultiplied pixel), so its contribution on the 0-255 scale
    is ``opacity * min(Cp, Sa)``."""
    o = np.uint64(o)
    s = np.uint64(s)
    n = np.uint64(n)
    for i in range(n):
        p = src[s + i]
        sa = _f32(p >> SHIFT_A)
        a = sa * k
        t = _F32_ONE - a
        ab = acc[A + o + i]
        acc[R + o + i] = opacity * min(_f32(p & U8), sa) + t * acc[R + o + i]
        acc[G + o + i] = opacity * min(_f32((p >> SHIFT_G) & U8), sa) + t * acc[G + o + i]
        acc[B + o + i] = opacity * min(_f32((p >> SHIFT_B) & U8), sa) + t * acc[B + o + i]
        acc[A + o + i] = ab + a * (_F32_ONE - ab)


@KERNEL
def blend_general(acc, o, src, s, n, opacity, mode, premultiplied):  # type: ignore[no-untyped-def]
    """Any blend mode, straight or premultiplied, in scalar float64 (formulas in ``blend``).

    A source pixel with alpha 0 leaves the accumulator as it was, except in ``source`` mode,
    which replaces (or, below opacity 1, fades) what is there.
    """
    o = np.uint64(o)
    s = np.uint64(s)
    n = np.uint64(n)
    keep = 1.0 - opacity
    for i in range(n):
        p = src[s + i]
        sa8 = (p >> SHIFT_A) & U8
        if sa8 == 0 and mode != _SOURCE:
            continue
        sa = np.float64(sa8) / 255.0 * opacity
        ab = np.float64(acc[A + o + i])
        if mode == _SOURCE:
            ao = sa + keep * ab
        elif mode == _ADD:
            ao = min(1.0, sa + ab)
        else:
            ao = sa + ab * (1.0 - sa)
        for plane in (R, G, B):
            shift = np.uint32(plane // np.uint64(CHUNK)) * SHIFT_G
            channel = np.float64((p >> shift) & U8)
            if premultiplied:
                cs = min(1.0, channel / np.float64(sa8)) if sa8 != 0 else 0.0
            else:
                cs = channel / 255.0
            backdrop = np.float64(acc[plane + o + i]) / 255.0  # premultiplied: ab * Cb
            if mode == _SOURCE:
                co = sa * cs + keep * backdrop
            elif mode == _ADD:
                co = min(1.0, sa * cs + backdrop)
            else:
                cb = min(1.0, backdrop / ab) if ab > 0.0 else 0.0
                if cb > _CB_ONE:  # float32 round trip of a white backdrop: see _CB_ONE
                    cb = 1.0
                blended = (1.0 - ab) * cs + ab * blend_channel(mode, cb, cs)
                co = sa * blended + (1.0 - sa) * backdrop
            acc[plane + o + i] = np.float32(co * 255.0)
        acc[A + o + i] = np.float32(ao)


@KERNEL_INLINE
def _pack(r, g, b, a, clear, q):  # type: ignore[no-untyped-def]
    """:func:`write_back` of one pixel's values (``q``: the frame's pixel, if not ``clear``)."""
    inv = _F32_ONE / max(a, _F32_TINY)
    out = (
        _round_u8_product(r, inv)
        | (_round_u8_product(g, inv) << SHIFT_G)
        | (_round_u8_product(b, inv) << SHIFT_B)
        | (_round_u8_product(a, _F32_255) << SHIFT_A)
    )
    if clear:
        return out if a > _F32_ZERO else np.uint32(0)
    kept = q if (q >> SHIFT_A) == 0 else np.uint32(0)
    return out if a > _F32_ZERO else kept


@KERNEL_INLINE
def _write_back_run(dst, d, acc, o, n, clear):  # type: ignore[no-untyped-def]
    """Round ``[o, o + n)`` once to straight RGBA8 into ``dst[d:d + n]``.

    Where alpha is exactly 0 the pixel is transparent black, or, compositing over the frame
    (``clear`` false) onto a pixel whose alpha was already 0, that pixel as it was: nothing
    drawn there changed it, and its colour bytes are kept as any untouched pixel's are.
    """
    o = np.uint64(o)
    d = np.uint64(d)
    n = np.uint64(n)
    for i in range(n):
        q = np.uint32(0) if clear else dst[d + i]
        dst[d + i] = _pack(acc[R + o + i], acc[G + o + i], acc[B + o + i], acc[A + o + i], clear, q)


# Fused passes: the same operations per pixel as the loops above run one after another, with
# the values kept in registers in between instead of the accumulator (float32 values stored
# and loaded are exact, so fusing never changes a byte). Each accumulator pass costs 16 bytes
# of L1 traffic a pixel each way, and on a stack of several layers those passes, not the
# arithmetic, were the bottleneck.


@KERNEL_INLINE
def _pack_opaque(r, g, b):  # type: ignore[no-untyped-def]
    """:func:`_pack` of a pixel whose alpha is exactly 1: division by 1.0 changes nothing."""
    return _round_u8(r) | (_round_u8(g) << SHIFT_G) | (_round_u8(b) << SHIFT_B) | ALPHA_OPAQUE


@KERNEL_INLINE
def write_back(dst, d, acc, o, n, clear):  # type: ignore[no-untyped-def]
    """:func:`_write_back_run` with its remainder done as one more overlapping block of
    :data:`TAIL` pixels (see :data:`TAIL`)."""
    t = n - TAIL
    if n > TAIL and n % TAIL != 0:
        _write_back_run(dst, d, acc, o, n - n % TAIL, clear)
        _write_back_run(dst, d + t, acc, o + t, TAIL, clear)
    else:
        _write_back_run(dst, d, acc, o, n, clear)


@KERNEL_INLINE
def _over_opaque_write_run(dst, d, base, b, src, s, n, k):  # type: ignore[no-untyped-def]
    """:func:`load_opaque` of ``base``, :func:`blend_normal` of ``src``, :func:`write_back`.

    Over an opaque start alpha stays exactly 1, so the write-back's division is by 1.0 and
    leaves colour as it is: the result is written straight, alpha 255.
    """
    d = np.uint64(d)
    b = np.uint64(b)
    s = np.uint64(s)
    n = np.uint64(n)
    for i in range(n):
        r, g, bl, a = _opaque(base[b + i])
        r, g, bl, _ = _over(src[s + i], k, r, g, bl, a)
        dst[d + i] = _pack_opaque(r, g, bl)


@KERNEL_INLINE
def over_opaque_write(dst, d, base, b, src, s, n, k):  # type: ignore[no-untyped-def]
    """:func:`_over_opaque_write_run` with its remainder done as one more overlapping block of
    :data:`TAIL` pixels (see :data:`TAIL`)."""
    t = n - TAIL
    if n < TAIL:
        _over_opaque_write_short(dst, d, base, b, src, s, n, k)
    elif n % TAIL != 0:
        _over_opaque_write_run(dst, d, base, b, src, s, n - n % TAIL, k)
        _over_opaque_write_run(dst, d + t, base, b + t, src, s + t, TAIL, k)
    else:
        _over_opaque_write_run(dst, d, base, b, src, s, n, k)


@KERNEL_INLINE
def _over_opaque_write_short(dst, d, base, b, src, s, n, k):  # type: ignore[no-untyped-def]
    """:func:`_over_opaque_write_run` of fewer than :data:`TAIL` pixels as one masked vector
    block: a loop of a constant TAIL with the pixels past ``n`` masked off, which LLVM turns
    into masked loads and stores (they never touch memory past the run), instead of its
    scalar remainder (sprites-1080p has 2,300 such runs a frame, where sprites' edges meet)."""
    d = np.uint64(d)
    b = np.uint64(b)
    s = np.uint64(s)
    n = np.uint64(n)
    for i in range(np.uint64(TAIL)):
        if i < n:
            r, g, bl, a = _opaque(base[b + i])
            r, g, bl, _ = _over(src[s + i], k, r, g, bl, a)
            dst[d + i] = _pack_opaque(r, g, bl)


@KERNEL_INLINE
def _over_clear_write_run(dst, d, src, s, n, k):  # type: ignore[no-untyped-def]
    """:func:`store_normal` then :func:`write_back` (clear): one layer over transparent black."""
    d = np.uint64(d)
    s = np.uint64(s)
    n = np.uint64(n)
    for i in range(n):
        p = src[s + i]
        a = _f32(p >> SHIFT_A) * k
        r = a * _f32(p & U8)
        g = a * _f32((p >> SHIFT_G) & U8)
        b = a * _f32((p >> SHIFT_B) & U8)
        dst[d + i] = _pack(r, g, b, a, True, np.uint32(0))


@KERNEL_INLINE
def over_clear_write(dst, d, src, s, n, k):  # type: ignore[no-untyped-def]
    """:func:`_over_clear_write_run` with its remainder done as one more overlapping block of
    :data:`TAIL` pixels (see :data:`TAIL`)."""
    t = n - TAIL
    if n > TAIL and n % TAIL != 0:
        _over_clear_write_run(dst, d, src, s, n - n % TAIL, k)
        _over_clear_write_run(dst, d + t, src, s + t, TAIL, k)
    else:
        _over_clear_write_run(dst, d, src, s, n, k)


@KERNEL_INLINE
def blend_normal_pair(acc, o, src1, s1, k1, src2, s2, k2, n):  # type: ignore[no-untyped-def]
    """:func:`blend_normal` of ``src1`` then of ``src2``, in one pass."""
    o = np.uint64(o)
    s1 = np.uint64(s1)
    s2 = np.uint64(s2)
    n = np.uint64(n)
    for i in range(n):
        r, g, b, a = _over(
            src1[s1 + i], k1, acc[R + o + i], acc[G + o + i], acc[B + o + i], acc[A + o + i]
        )
        r, g, b, a = _over(src2[s2 + i], k2, r, g, b, a)
        acc[R + o + i] = r
        acc[G + o + i] = g
        acc[B + o + i] = b
        acc[A + o + i] = a


@KERNEL_INLINE
def _blend_normal_write_run(dst, d, acc, o, src, s, n, k, clear):  # type: ignore[no-untyped-def]
    """:func:`blend_normal` of ``src`` then :func:`write_back`, in one pass."""
    o = np.uint64(o)
    d = np.uint64(d)
    s = np.uint64(s)
    n = np.uint64(n)
    for i in range(n):
        r, g, b, a = _over(
            src[s + i], k, acc[R + o + i], acc[G + o + i], acc[B + o + i], acc[A + o + i]
        )
        q = np.uint32(0) if clear else dst[d + i]
        dst[d + i] = _pack(r, g, b, a, clear, q)


@KERNEL_INLINE
def blend_normal_write(dst, d, acc, o, src, s, n, k, clear):  # type: ignore[no-untyped-def]
    """:func:`_blend_normal_write_run` with its remainder done as one more overlapping block of
    :data:`TAIL` pixels (see :data:`TAIL`)."""
    t = n - TAIL
    if n > TAIL and n % TAIL != 0:
        _blend_normal_write_run(dst, d, acc, o, src, s, n - n % TAIL, k, clear)
        _blend_normal_write_run(dst, d + t, acc, o + t, src, s + t, TAIL, k, clear)
    else:
        _blend_normal_write_run(dst, d, acc, o, src, s, n, k, clear)


@KERNEL_INLINE
def _over_opaque_pair_write_run(dst, d, base, b, src1, s1, k1, src2, s2, k2, n):  # type: ignore[no-untyped-def]
    """:func:`load_opaque` of ``base``, :func:`blend_normal` of ``src1`` and of ``src2``, and
    :func:`write_back`, in one pass (alpha stays exactly 1, as in :func:`over_opaque_write`)."""
    d = np.uint64(d)
    b = np.uint64(b)
    s1 = np.uint64(s1)
    s2 = np.uint64(s2)
    n = np.uint64(n)
    for i in range(n):
        r, g, bl, a = _opaque(base[b + i])
        r, g, bl, a = _over(src1[s1 + i], k1, r, g, bl, a)
        r, g, bl, _ = _over(src2[s2 + i], k2, r, g, bl, a)
        dst[d + i] = _pack_opaque(r, g, bl)


@KERNEL_INLINE
def over_opaque_pair_write(dst, d, base, b, src1, s1, k1, src2, s2, k2, n):  # type: ignore[no-untyped-def]
    """:func:`_over_opaque_pair_write_run` with its remainder done as one more overlapping block of
    :data:`TAIL` pixels (see :data:`TAIL`)."""
    t = n - TAIL
    if n < TAIL:
        _over_opaque_pair_write_short(dst, d, base, b, src1, s1, k1, src2, s2, k2, n)
    elif n % TAIL != 0:
        _over_opaque_pair_write_run(dst, d, base, b, src1, s1, k1, src2, s2, k2, n - n % TAIL)
        _over_opaque_pair_write_run(
            dst, d + t, base, b + t, src1, s1 + t, k1, src2, s2 + t, k2, TAIL
        )
    else:
        _over_opaque_pair_write_run(dst, d, base, b, src1, s1, k1, src2, s2, k2, n)


@KERNEL_INLINE
def _over_opaque_triple_write_run(dst, d, base, b, src1, s1, k1, src2, s2, k2, src3, s3, k3, n):  # type: ignore[no-untyped-def]
    """:func:`_over_opaque_pair_write_run` with a third layer over the second: three layers
    over an opaque start in one pass (sprites-1080p has 3,600 such runs a frame, where four
    sprites' corners meet, which took four accumulator passes)."""
    d = np.uint64(d)
    b = np.uint64(b)
    s1 = np.uint64(s1)
    s2 = np.uint64(s2)
    s3 = np.uint64(s3)
    n = np.uint64(n)
    for i in range(n):
        r, g, bl, a = _opaque(base[b + i])
        r, g, bl, a = _over(src1[s1 + i], k1, r, g, bl, a)
        r, g, bl, a = _over(src2[s2 + i], k2, r, g, bl, a)
        r, g, bl, _ = _over(src3[s3 + i], k3, r, g, bl, a)
        dst[d + i] = _pack_opaque(r, g, bl)


@KERNEL_INLINE
def over_opaque_triple_write(dst, d, base, b, src1, s1, k1, src2, s2, k2, src3, s3, k3, n):  # type: ignore[no-untyped-def]
    """:func:`_over_opaque_triple_write_run` with its remainder done as one more overlapping
    block of :data:`TAIL` pixels (see :data:`TAIL`)."""
    t = n - TAIL
    if n < TAIL:
        _over_opaque_triple_write_short(
            dst, d, base, b, src1, s1, k1, src2, s2, k2, src3, s3, k3, n
        )
    elif n % TAIL != 0:
        _over_opaque_triple_write_run(
            dst, d, base, b, src1, s1, k1, src2, s2, k2, src3, s3, k3, n - n % TAIL
        )
        _over_opaque_triple_write_run(
            dst, d + t, base, b + t, src1, s1 + t, k1, src2, s2 + t, k2, src3, s3 + t, k3, TAIL
        )
    else:
        _over_opaque_triple_write_run(dst, d, base, b, src1, s1, k1, src2, s2, k2, src3, s3, k3, n)


@KERNEL_INLINE
def _over_opaque_pair_write_short(dst, d, base, b, src1, s1, k1, src2, s2, k2, n):  # type: ignore[no-untyped-def]
    """:func:`_over_opaque_pair_write_run` of fewer than :data:`TAIL` pixels, masked (see
    :func:`_over_opaque_write_short`)."""
    d = np.uint64(d)
    b = np.uint64(b)
    s1 = np.uint64(s1)
    s2 = np.uint64(s2)
    n = np.uint64(n)
    for i in range(np.uint64(TAIL)):
        if i < n:
            r, g, bl, a = _opaque(base[b + i])
            r, g, bl, a = _over(src1[s1 + i], k1, r, g, bl, a)
            r, g, bl, _ = _over(src2[s2 + i], k2, r, g, bl, a)
            dst[d + i] = _pack_opaque(r, g, bl)


@KERNEL_INLINE
def _over_opaque_triple_write_short(dst, d, base, b, src1, s1, k1, src2, s2, k2, src3, s3, k3, n):  # type: ignore[no-untyped-def]
    """:func:`_over_opaque_triple_write_run` of fewer than :data:`TAIL` pixels, masked (see
    :func:`_over_opaque_write_short`)."""
    d = np.uint64(d)
    b = np.uint64(b)
    s1 = np.uint64(s1)
    s2 = np.uint64(s2)
    s3 = np.uint64(s3)
    n = np.uint64(n)
    for i in range(np.uint64(TAIL)):
        if i < n:
            r, g, bl, a = _opaque(base[b + i])
            r, g, bl, a = _over(src1[s1 + i], k1, r, g, bl, a)
            r, g, bl, a = _over(src2[s2 + i], k2, r, g, bl, a)
            r, g, bl, _ = _over(src3[s3 + i], k3, r, g, bl, a)
            dst[d + i] = _pack_opaque(r, g, bl)
