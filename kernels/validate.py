"""Checks that run in Python before any kernel does: the kernels trust them completely.

Numba compiles the kernels without bounds checks, so everything that could make a kernel read
or write outside a buffer is proven here, with an exception that names what was expected.
"""

from __future__ import annotations

import math
import numbers
import sys
from typing import Final

import numpy as np

# Largest side of a frame or layer, in pixels. 8K UHD (7680x4320) is the largest picture
# anybody composites live today; the margin keeps every offset product well inside int64 and
# every coordinate sum inside int32, and refuses absurd sizes before they reach an allocator.
MAX_SIDE: Final = 16384
# Positions are ints that fit int32 (what the binary task descriptors carry).
INT32_MIN: Final = -(2**31)
INT32_MAX: Final = 2**31 - 1

if sys.byteorder != "little":  # pragma: no cover - every platform numba supports today
    raise ImportError("framering kernels pack RGBA8 pixels as little-endian uint32")


def check_rgba(array: object, what: str, *, writable: bool) -> np.ndarray:
    """Prove ``array`` is an (h, w, 4) uint8, C-contiguous, 4-byte-aligned RGBA8 picture."""
    if not isinstance(array, np.ndarray):
        raise TypeError(
            f"{what} must be a numpy.ndarray of RGBA8 pixels, not {type(array).__name__}"
        )
    if type(array) is not np.ndarray:
        # a subclass may report any shape it likes: sizes must come from a plain ndarray
        array = array.view(np.ndarray)
    if array.dtype != np.uint8:
        raise TypeError(f"{what} must have dtype uint8 (RGBA8), not {array.dtype}")
    if array.ndim != 3 or array.shape[2] != 4:
        raise ValueError(f"{what} must have shape (height, width, 4), not {array.shape}")
    height, width = array.shape[0], array.shape[1]
    if not (1 <= height <= MAX_SIDE and 1 <= width <= MAX_SIDE):
        raise ValueError(
            f"{what} must be between 1x1 and {MAX_SIDE}x{MAX_SIDE} pixels, not {width}x{height}"
        )
    if not array.flags.c_contiguous:
        raise ValueError(f"{what} must be C-contiguous (use numpy.ascontiguousarray)")
    if array.ctypes.data % 4:
        raise ValueError(f"{what} must start on a 4-byte boundary (its pixels are read as uint32)")
    if writable and not array.flags.writeable:
        raise ValueError(f"{what} is read-only; the kernels write the destination in place")
    return array


def check_uint8(array: object, shape: tuple[int, ...], what: str) -> np.ndarray:
    """Prove ``array`` is a uint8, C-contiguous array of exactly ``shape`` (a picture in one of
    the layouts of ``framering.kernels.formats``); returns it as a plain ndarray."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"{what} must be a numpy.ndarray, not {type(array).__name__}")
    if type(array) is not np.ndarray:  # a subclass may report any shape it likes
        array = array.view(np.ndarray)
    if array.dtype != np.uint8:
        raise TypeError(f"{what} must have dtype uint8, not {array.dtype}")
    if array.shape != shape or not array.flags.c_contiguous:
        raise ValueError(f"{what} must be C-contiguous with shape {shape}, not {array.shape}")
    return array


def check_position(value: object, what: str) -> int:
    """An integer (not a bool) that fits in int32."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{what} must be an int, not {type(value).__name__}")
    result = int(value)
    if not INT32_MIN <= result <= INT32_MAX:
        raise ValueError(f"{what} must fit in int32 ([{INT32_MIN}, {INT32_MAX}]), not {result}")
    return result


def check_opacity(value: object, what: str = "opacity") -> float:
    """A finite real number in [0, 1]."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{what} must be a float in [0, 1], not {type(value).__name__}")
    result = float(value)
    if not math.isfinite(result) or not 0.0 <= result <= 1.0:
        raise ValueError(f"{what} must be a finite float in [0, 1], not {result!r}")
    return result


def check_rows(rows: tuple[int, int] | None, height: int) -> tuple[int, int]:
    """A band of destination rows ``[y0, y1)`` with ``0 <= y0 <= y1 <= height``."""
    if rows is None:
        return 0, height
    if not isinstance(rows, tuple) or len(rows) != 2:
        raise TypeError(f"rows must be a (y0, y1) tuple, not {rows!r}")
    y0 = check_position(rows[0], "rows[0]")
    y1 = check_position(rows[1], "rows[1]")
    if not 0 <= y0 <= y1 <= height:
        raise ValueError(f"rows must satisfy 0 <= y0 <= y1 <= {height}, not ({y0}, {y1})")
    return y0, y1


def check_color(color: object) -> tuple[int, int, int, int]:
    """An (r, g, b, a) tuple of four ints in [0, 255]."""
    if not isinstance(color, tuple | list) or len(color) != 4:
        raise TypeError(f"color must be an (r, g, b, a) tuple of ints in [0, 255], not {color!r}")
    channels = []
    for channel in color:
        if isinstance(channel, bool) or not isinstance(channel, numbers.Integral):
            raise TypeError(f"color channels must be ints in [0, 255], not {channel!r}")
        if not 0 <= int(channel) <= 255:
            raise ValueError(f"color channels must be in [0, 255], not {int(channel)}")
        channels.append(int(channel))
    return channels[0], channels[1], channels[2], channels[3]


# Above this many boxes the pairwise overlap test is done with numpy.
PYTHON_OVERLAP_CHECK = 16


def check_rects(rects: object, width: int, height: int) -> np.ndarray:
    """Boxes ``(x0, y0, x1, y1)`` inside a ``width`` x ``height`` frame that do not overlap,
    as a read-only ``(k, 4)`` int64 array (empty boxes are allowed and do nothing).

    The kernel writes each box's pixels once, so overlapping boxes would composite twice over
    the same pixels (with ``clear=False``) or waste the work: both are refused here.
    """
    try:
        boxes = np.array(rects, dtype=np.int64, copy=True)
    except (TypeError, ValueError, OverflowError):
        raise TypeError(f"rects must be (x0, y0, x1, y1) boxes of ints, not {rects!r}") from None
    if boxes.size == 0:
        boxes = boxes.reshape(0, 4)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"rects must have shape (k, 4) (x0, y0, x1, y1), not {boxes.shape}")
    # A worker checks the boxes of every frame it gets: a few boxes are checked in plain
    # Python (2 boxes: 1.9 us, against 15.3 us of numpy calls on tiny arrays), many with numpy.
    listed = boxes.tolist()
    for box in listed:
        x0, y0, x1, y1 = box
        if not (0 <= x0 <= x1 <= width and 0 <= y0 <= y1 <= height):
            raise ValueError(
                f"rects must satisfy 0 <= x0 <= x1 <= {width} and 0 <= y0 <= y1 <= {height}, "
                f"not {box}"
            )
    kept = [i for i, (x0, y0, x1, y1) in enumerate(listed) if x0 < x1 and y0 < y1]
    if len(kept) < len(listed):
        boxes = boxes[kept]
    if len(kept) > PYTHON_OVERLAP_CHECK:
        _refuse_overlaps_numpy(boxes)
    elif len(kept) > 1:
        nonempty = [listed[i] for i in kept]
        for i, a in enumerate(nonempty):
            for b in nonempty[i + 1 :]:
                if a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]:
                    raise ValueError(f"rects overlap: {a} and {b}")
    boxes.setflags(write=False)
    return boxes


def _refuse_overlaps_numpy(boxes: np.ndarray) -> None:
    a, b = boxes[:, None, :], boxes[None, :, :]
    overlap = (
        (a[..., 0] < b[..., 2])
        & (b[..., 0] < a[..., 2])
        & (a[..., 1] < b[..., 3])
        & (b[..., 1] < a[..., 3])
    )
    np.fill_diagonal(overlap, False)
    if overlap.any():
        i, j = np.argwhere(overlap)[0]
        raise ValueError(f"rects overlap: {boxes[i].tolist()} and {boxes[j].tolist()}")
