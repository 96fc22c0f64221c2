"""Frame format conversions for encoders: RGBA8 to BGRA, BGR, I420 and NV12 (BT.601/BT.709,
limited or full range), written into a caller's buffer in one pass.

An encoder wants its own format; converting in the process that composited the frame saves
the caller a pass over it. Alpha is dropped (as ``cv2.cvtColor`` does): frames handed to an
encoder are opaque.

YUV, with R, G, B in [0, 1] and the matrix's Kr, Kb::

    Y' = Kr R + (1 - Kr - Kb) G + Kb B
    Cb = (B - Y') / (2 (1 - Kb))          Cr = (R - Y') / (2 (1 - Kr))
    limited ("studio") range: Y = 16 + 219 Y',  C = 128 + 224 C
    full range:               Y = 255 Y',       C = 128 + 255 C

4:2:0 chroma is the mean of each 2x2 block's chroma (``cv2.cvtColor`` takes the block's
top-left pixel instead; the two agree on smooth pictures, not on noise). Planes follow the
layout ``cv2`` uses: an (H * 3 / 2, W) uint8 array, Y then U then V (I420) or Y then
interleaved UV (NV12). Width and height must be even.
"""

from __future__ import annotations

import enum
from typing import Final

import numpy as np

from kernels.jit import KERNEL
from kernels.validate import check_rgba

# (Kr, Kb) of each matrix.
MATRICES: Final = {"bt601": (0.299, 0.114), "bt709": (0.2126, 0.0722)}
RANGES: Final = ("limited", "full")


class FrameFormat(enum.Enum):
    """Layouts a frame can be delivered in."""

    RGBA = "rgba"
    BGRA = "bgra"
    BGR = "bgr"
    I420 = "i420"
    NV12 = "nv12"

    def shape(self, width: int, height: int) -> tuple[int, ...]:
        """The numpy shape of a frame of this format (what ``cv2`` uses)."""
        if self in (FrameFormat.RGBA, FrameFormat.BGRA):
            return (height, width, 4)
        if self is FrameFormat.BGR:
            return (height, width, 3)
        return (height * 3 // 2, width)


def yuv_coefficients(matrix: str, value_range: str) -> np.ndarray:
    """A (3, 4) float64 array: rows Y, Cb, Cr; columns R, G, B (on 0-255 values), offset."""
    if matrix not in MATRICES:
        raise ValueError(f"matrix must be one of {', '.join(MATRICES)}, not {matrix!r}")
    if value_range not in RANGES:
        raise ValueError(f"range must be one of {', '.join(RANGES)}, not {value_range!r}")
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


@KERNEL
def _swap_rb(src, dst, alpha):  # type: ignore[no-untyped-def]
    height, width = src.shape[0], src.shape[1]
    for y in range(height):
        for x in range(width):
            dst[y, x, 0] = src[y, x, 2]
            dst[y, x, 1] = src[y, x, 1]
            dst[y, x, 2] = src[y, x, 0]
            if alpha:
                dst[y, x, 3] = src[y, x, 3]


@KERNEL
def _clamp_round(value):  # type: ignore[no-untyped-def]
    return np.uint8(min(max(value + 0.5, 0.0), 255.0))


@KERNEL
def _yuv420(src, out, table, interleaved):  # type: ignore[no-untyped-def]
    height, width = src.shape[0], src.shape[1]
    chroma = height * width // 4
    flat = out.reshape(-1)
    for y in range(0, height, 2):
        for x in range(0, width, 2):
            cb_sum = 0.0
            cr_sum = 0.0
            for dy in range(2):
                for dx in range(2):
                    r = np.float64(src[y + dy, x + dx, 0])
                    g = np.float64(src[y + dy, x + dx, 1])
                    b = np.float64(src[y + dy, x + dx, 2])
                    luma = table[0, 0] * r + table[0, 1] * g + table[0, 2] * b + table[0, 3]
                    out[y + dy, x + dx] = _clamp_round(luma)
                    cb_sum += table[1, 0] * r + table[1, 1] * g + table[1, 2] * b
                    cr_sum += table[2, 0] * r + table[2, 1] * g + table[2, 2] * b
            cb = _clamp_round(cb_sum * 0.25 + table[1, 3])
            cr = _clamp_round(cr_sum * 0.25 + table[2, 3])
            c = (y // 2) * (width // 2) + x // 2
            if interleaved:  # NV12: Y plane, then Cb Cr pairs
                flat[height * width + 2 * c] = cb
                flat[height * width + 2 * c + 1] = cr
            else:  # I420: Y plane, then the Cb plane, then the Cr plane
                flat[height * width + c] = cb
                flat[height * width + chroma + c] = cr


def convert_frame(
    frame: np.ndarray,
    out: np.ndarray,
    fmt: FrameFormat | str,
    *,
    matrix: str = "bt709",
    value_range: str = "limited",
) -> np.ndarray:
    """Write ``frame`` (RGBA8) into ``out`` in format ``fmt``; returns ``out``.

    ``out`` must have exactly ``FrameFormat(fmt).shape(width, height)`` and dtype uint8.
    """
    frame = check_rgba(frame, "frame", writable=False)
    fmt = FrameFormat(fmt)
    height, width = frame.shape[:2]
    if not isinstance(out, np.ndarray) or out.dtype != np.uint8:
        raise TypeError("out must be a uint8 numpy array")
    if out.shape != fmt.shape(width, height) or not out.flags.c_contiguous:
        raise ValueError(
            f"out must be C-contiguous with shape {fmt.shape(width, height)} for "
            f"{fmt.value}, not {out.shape}"
        )
    if not out.flags.writeable:
        raise ValueError("out is read-only")
    if np.may_share_memory(frame, out):
        raise ValueError("out shares memory with the frame; convert into another buffer")
    if fmt is FrameFormat.RGBA:
        np.copyto(out, frame)
    elif fmt in (FrameFormat.BGRA, FrameFormat.BGR):
        _swap_rb(frame, out, fmt is FrameFormat.BGRA)
    else:
        if width % 2 or height % 2:
            raise ValueError(f"{fmt.value} needs an even width and height, not {width}x{height}")
        table = yuv_coefficients(matrix, value_range)
        _yuv420(frame, out, table, fmt is FrameFormat.NV12)
    return out
