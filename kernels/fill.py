"""Solid fill and clear of a frame or of a rectangle of it (replace, not blend)."""

from __future__ import annotations

import numpy as np

from framering.kernels.jit import KERNEL
from framering.kernels.pointers import pixels_at
from framering.kernels.spans import fill_span
from framering.kernels.validate import check_color, check_position, check_rgba, check_rows


@KERNEL
def fill_kernel(dst_address, width, height, pixel, x0, x1, y0, y1):  # type: ignore[no-untyped-def]
    """Set the pixels of rows [y0, y1) and columns [x0, x1), already clipped to the frame."""
    dst = pixels_at(dst_address, width * height)
    for y in range(y0, y1):
        fill_span(dst, y * width + x0, x1 - x0, pixel)


def pack_rgba(color: tuple[int, int, int, int]) -> np.uint32:
    """An (r, g, b, a) colour as the little-endian uint32 the kernels store."""
    r, g, b, a = check_color(color)
    return np.uint32(r | (g << 8) | (b << 16) | (a << 24))


def fill(
    frame: np.ndarray,
    color: tuple[int, int, int, int],
    *,
    rect: tuple[int, int, int, int] | None = None,
    rows: tuple[int, int] | None = None,
) -> None:
    """Set every pixel of ``frame`` (or of ``rect`` = (x, y, w, h), clipped) to ``color``.

    ``color`` is straight RGBA8. Only rows ``[y0, y1)`` of ``rows`` are touched.
    """
    frame = check_rgba(frame, "frame", writable=True)
    height, width = frame.shape[0], frame.shape[1]
    pixel = pack_rgba(color)
    y0, y1 = check_rows(rows, height)
    x0, x1 = 0, width
    if rect is not None:
        if not isinstance(rect, tuple) or len(rect) != 4:
            raise TypeError(f"rect must be an (x, y, w, h) tuple, not {rect!r}")
        rx, ry, rw, rh = (check_position(v, f"rect[{i}]") for i, v in enumerate(rect))
        if rw < 0 or rh < 0:
            raise ValueError(f"rect width and height must be >= 0, not {rw}x{rh}")
        x0, x1 = max(rx, 0), min(rx + rw, width)
        y0, y1 = max(ry, y0), min(ry + rh, y1)
    if x0 >= x1 or y0 >= y1:
        return
    fill_kernel(frame.ctypes.data, width, height, pixel, x0, x1, y0, y1)


def clear(
    frame: np.ndarray,
    *,
    rect: tuple[int, int, int, int] | None = None,
    rows: tuple[int, int] | None = None,
) -> None:
    """Set ``frame`` (or ``rect``) to transparent black."""
    fill(frame, (0, 0, 0, 0), rect=rect, rows=rows)
