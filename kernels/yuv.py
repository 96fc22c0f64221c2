"""YUV coefficient tables: the BT.601/BT.709 formulas, and their fixed-point form for the kernels.

With R, G, B in [0, 1] and the matrix's Kr, Kb (:data:`MATRICES`)::

    Y' = Kr R + (1 - Kr - Kb) G + Kb B
    Cb = (B - Y') / (2 (1 - Kb))          Cr = (R - Y') / (2 (1 - Kr))
    limited ("studio") range: Y = 16 + 219 Y',  C = 128 + 224 C
    full range:               Y = 255 Y',       C = 128 + 255 C

and back, the inverse of the same matrix (:func:`yuv_coefficients` is the float64 matrix).
Every result byte is ``floor(value + 0.5)`` of the exact value, clamped to [0, 255].

The kernels work in fixed point: each YUV result is one int32 dot product of the channel bytes
with coefficients scaled by ``2**FRACTION_BITS``, the rounding half folded into the offset,
and a shift (:func:`forward_table`; :func:`inverse_table` the other way). LLVM vectorises
int32 multiplies 16 lanes wide; float32 needed four conversions a pixel and was slower. The
coefficients' rounding moves a result by at most 1e-4 (luma), 4e-4 (4:2:0 chroma) and 5e-4
(RGB from YUV) of a unit from the exact value, so a byte differs from the float64 formula's
rounding only where the exact value lies that close to a half. Both tables prove, when they
are built, the bounds the kernels rely on (no int32 overflow, which clamps are needed).
"""

from __future__ import annotations

import functools
from typing import Final

import numpy as np

from framering.kernels.codes import matrix_code, range_code

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
