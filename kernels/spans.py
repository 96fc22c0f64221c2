"""Blend one run of layer pixels into one run of destination pixels: the innermost loops.

Every helper takes whole flat ``uint32`` pixel arrays plus offsets (never slices: a slice costs
Numba an atomic reference-count update) and touches exactly ``n`` pixels from ``dst[d]`` and
``src[s]``. Offsets are turned into ``uint64`` before the loop: with a signed index Numba adds a
negative-index wraparound select to every access, which keeps LLVM from vectorising (a row copy
ran 8x slower). A pixel is RGBA8 packed little-endian: red in bits 0-7, green 8-15, blue 16-23,
alpha 24-31 (masks and shifts in ``framering.kernels.bits``).

Rounding contract shared with ``framering.kernels.reference``: every result channel is
``floor(value + 0.5)`` of the exact result, so the frame is RGBA8 again after every layer.

The ``normal`` mode has three branch-free float32 loops that LLVM vectorises, picked per run:

- over an opaque destination (``ab = 1``): ``Co = Cb + as * (Cs - Cb)``, alpha stays 255;
- over a cleared, transparent destination (``ab = 0``): ``Co = Cs``, ``ao = as``, no read of dst;
- over anything else: the full source-over with one division per pixel.

Long runs of the opaque-destination loop are cut in chunks of :data:`CHUNK` pixels whose source
alphas are tested first: all 0 skips the chunk, all 255 at opacity 1 copies it. Everything else
(other blend modes, premultiplied layers) takes the scalar float64 path in :func:`general_span`.
"""

from __future__ import annotations

import numpy as np

from framering.kernels.bits import ALPHA_OPAQUE, RGB_BITS, SHIFT_A, SHIFT_B, SHIFT_G, U8
from framering.kernels.blend import BlendMode, blend_channel
from framering.kernels.jit import KERNEL, KERNEL_INLINE

# Pixels whose alphas are tested together before blending: all 0 skips the chunk, all 255 (at
# opacity 1) copies it. Each test and each call into the vector loop costs tens of nanoseconds
# of set-up, so chunks must be long: at 32 pixels the set-up cost more than the blend it saved
# (sprites-1080p ran at a third of the speed); at 256 a transparent region of an overlay is
# still skipped at a cost of one 1 KiB reduction. Runs shorter than two chunks are blended in
# one go without any test.
CHUNK = 256

_F32_HALF = np.float32(0.5)
_F32_ONE = np.float32(1.0)
_F32_255 = np.float32(255.0)
_F32_INV255 = np.float32(1.0 / 255.0)
# Smallest denominator used for un-premultiplying; where ao is 0 the numerator is 0 too.
_F32_TINY = np.float32(1e-30)

_SOURCE = int(BlendMode.SOURCE)
_ADD = int(BlendMode.ADD)


@KERNEL_INLINE
def _f32(channel):  # type: ignore[no-untyped-def]
    """A channel byte (0-255, held in a uint32) as float32, through int32.

    Converting uint32 straight to float makes LLVM widen every lane to int64 first (half the
    vector width, and a slow int64-to-float conversion); int32 converts 16 lanes at once.
    """
    return np.float32(np.int32(channel))


@KERNEL_INLINE
def _round_u8(value):  # type: ignore[no-untyped-def]
    """floor(value + 0.5) for a value already known to lie in [0, 255]."""
    return np.uint32(np.int32(value + _F32_HALF))


@KERNEL_INLINE
def copy_opaque_span(dst, d, src, s, n):  # type: ignore[no-untyped-def]
    """Copy ``n`` pixels of a layer flagged opaque, as opaque: alpha 255 whatever the bytes
    say, so that a wrong ``opaque=True`` gives the same pixels wherever the layer is copied
    (and the loops that trust an opaque destination see one that is)."""
    d = np.uint64(d)
    s = np.uint64(s)
    n = np.uint64(n)
    for i in range(n):
        dst[d + i] = src[s + i] | ALPHA_OPAQUE


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


@KERNEL_INLINE
def alpha_and_or(pixels, start, n):  # type: ignore[no-untyped-def]
    """(AND, OR) of the alpha bytes of ``n`` pixels: (255, _) means all opaque, (_, 0) all clear."""
    start = np.uint64(start)
    n = np.uint64(n)
    all_bits = np.uint32(0xFFFFFFFF)
    any_bits = np.uint32(0)
    for i in range(n):
        p = pixels[start + i]
        all_bits &= p
        any_bits |= p
    return all_bits >> SHIFT_A, any_bits >> SHIFT_A


@KERNEL_INLINE
def _over_opaque_run(dst, d, src, s, n, k):  # type: ignore[no-untyped-def]
    # ab = 1:  Co = Cb + as * (Cs - Cb),  ao = 1,  with as = Sa * opacity / 255 = Sa * k
    d = np.uint64(d)
    s = np.uint64(s)
    n = np.uint64(n)
    for i in range(n):
        p = src[s + i]
        q = dst[d + i]
        a = _f32(p >> SHIFT_A) * k
        rs = _f32(p & U8)
        gs = _f32((p >> SHIFT_G) & U8)
        bs = _f32((p >> SHIFT_B) & U8)
        rb = _f32(q & U8)
        gb = _f32((q >> SHIFT_G) & U8)
        bb = _f32((q >> SHIFT_B) & U8)
        r = _round_u8(rb + a * (rs - rb))
        g = _round_u8(gb + a * (gs - gb))
        b = _round_u8(bb + a * (bs - bb))
        dst[d + i] = r | (g << SHIFT_G) | (b << SHIFT_B) | ALPHA_OPAQUE


@KERNEL_INLINE
def over_opaque_span(dst, d, src, s, n, k, full_opacity):  # type: ignore[no-untyped-def]
    """Normal, straight-alpha layer over a destination run known to be opaque."""
    if n < 2 * CHUNK:
        _over_opaque_run(dst, d, src, s, n, k)
        return
    i = 0
    while i + CHUNK <= n:
        all_alpha, any_alpha = alpha_and_or(src, s + i, CHUNK)
        if any_alpha == 0:
            pass  # as = 0 everywhere: the destination is already the answer
        elif all_alpha == 255 and full_opacity:
            copy_span(dst, d + i, src, s + i, CHUNK)
        else:
            _over_opaque_run(dst, d + i, src, s + i, CHUNK, k)
        i += CHUNK
    if i < n:
        _over_opaque_run(dst, d + i, src, s + i, n - i, k)


@KERNEL_INLINE
def over_clear_span(dst, d, src, s, n, k):  # type: ignore[no-untyped-def]
    """Normal, straight-alpha layer over a transparent black run: written without reading.

    With ab = 0 source-over reduces to ``Co = Cs``, ``ao = as``; a pixel whose source alpha is 0
    stays transparent black. Gives the same bytes as :func:`over_span` on a zeroed run.
    """
    d = np.uint64(d)
    s = np.uint64(s)
    n = np.uint64(n)
    for i in range(n):
        p = src[s + i]
        a = _round_u8(_f32(p >> SHIFT_A) * k * _F32_255)
        out = (p & RGB_BITS) | (a << SHIFT_A)
        dst[d + i] = out if (p >> SHIFT_A) != 0 else np.uint32(0)


@KERNEL
def over_span(dst, d, src, s, n, k):  # type: ignore[no-untyped-def]
    """Normal, straight-alpha layer over a destination run of any alpha (one division a pixel).

    Straight result colour as a weighted step from the backdrop, which needs one division per
    pixel instead of one per channel and no premultiplied intermediates::

        Co = (as Cs + ab (1 - as) Cb) / ao = Cb + (as / ao) (Cs - Cb)
    """
    d = np.uint64(d)
    s = np.uint64(s)
    n = np.uint64(n)
    for i in range(n):
        p = src[s + i]
        q = dst[d + i]
        sa = _f32(p >> SHIFT_A) * k  # as
        ab = _f32(q >> SHIFT_A) * _F32_INV255
        ao = sa + (ab - ab * sa)  # ao = as + ab (1 - as)
        w = sa / max(ao, _F32_TINY)  # the source's share of the result; ao = 0 only if as = 0
        rb = _f32(q & U8)
        gb = _f32((q >> SHIFT_G) & U8)
        bb = _f32((q >> SHIFT_B) & U8)
        r = _round_u8(rb + w * (_f32(p & U8) - rb))
        g = _round_u8(gb + w * (_f32((p >> SHIFT_G) & U8) - gb))
        b = _round_u8(bb + w * (_f32((p >> SHIFT_B) & U8) - bb))
        a = _round_u8(ao * _F32_255)
        out = r | (g << SHIFT_G) | (b << SHIFT_B) | (a << SHIFT_A)
        dst[d + i] = out if (p >> SHIFT_A) != 0 else q  # as = 0 leaves the pixel untouched


@KERNEL
def _unpack(pixel, shift):  # type: ignore[no-untyped-def]
    return np.float64((pixel >> np.uint32(shift)) & U8)


@KERNEL
def _pack_channel(value, shift):  # type: ignore[no-untyped-def]
    """floor(255 * value + 0.5) of a normalised channel, clamped, shifted into place."""
    v = min(max(value, 0.0), 1.0) * 255.0 + 0.5
    return np.uint32(np.int32(v)) << np.uint32(shift)


@KERNEL
def general_span(dst, d, src, s, n, opacity, mode, premultiplied):  # type: ignore[no-untyped-def]
    """Any blend mode, straight or premultiplied source, any destination: scalar float64.

    Formulas in ``blend``. A source pixel with alpha 0 leaves the destination untouched,
    except in ``source`` mode, which replaces (or, below opacity 1, fades) what is there.
    """
    d = np.uint64(d)
    s = np.uint64(s)
    n = np.uint64(n)
    for i in range(n):
        p = src[s + i]
        q = dst[d + i]
        sa8 = (p >> SHIFT_A) & U8
        if sa8 == 0 and mode != _SOURCE:
            continue
        sa_pixel = np.float64(sa8) / 255.0
        sa = sa_pixel * opacity  # as
        ab = _unpack(q, 24) / 255.0
        if mode == _SOURCE:
            ao = sa + (1.0 - opacity) * ab
        elif mode == _ADD:
            ao = min(1.0, sa + ab)
        else:
            ao = sa + ab * (1.0 - sa)
        out = _pack_channel(ao, 24)
        for shift in (0, 8, 16):
            cb = _unpack(q, shift) / 255.0
            if premultiplied:
                cs = min(1.0, _unpack(p, shift) / np.float64(sa8)) if sa8 != 0 else 0.0
            else:
                cs = _unpack(p, shift) / 255.0
            if mode == _SOURCE:
                co = sa * cs + (1.0 - opacity) * ab * cb
            elif mode == _ADD:
                co = min(1.0, sa * cs + ab * cb)
            else:
                blended = (1.0 - ab) * cs + ab * blend_channel(mode, cb, cs)
                co = sa * blended + ab * (1.0 - sa) * cb
            straight = co / ao if ao > 0.0 else 0.0
            out |= _pack_channel(straight, shift)
        dst[d + i] = out
