"""Delivery: where the whole-stack kernel writes each finished band of rows, converted.

A :class:`Delivery` is checked once per buffer (a ring slot's delivery area, say) and reused
for every frame; ``composite_stack(frame, layers, deliver=...)`` then hands the kernel its
address, format code and YUV table (:meth:`Delivery.kernel_arguments`), and the kernel calls
``convert_out.deliver_rows`` on every band of :data:`DELIVER_BAND_ROWS` rows right after
compositing it. With ``write_frame=False`` the bands are composited into the delivery's own
scratch band (:meth:`Delivery.scratch_band`) instead of the frame.
"""

from __future__ import annotations

from typing import Final

import numpy as np

from framering.kernels.codes import NO_DELIVERY
from framering.kernels.formats import FrameFormat
from framering.kernels.validate import MAX_SIDE, check_uint8
from framering.kernels.yuv import forward_table

# Rows the whole-stack kernel composites before it converts them into a Delivery, as one band
# (even: 4:2:0 converts row pairs), while they are still in L2 (1 MB of RGBA at 1080p).
# Converting each row pair right after it is composited, while it is in L1, was slower than a
# separate pass (studio-1080p, single thread: I420 +6%, BGR and BGRA +20%): the delivery's
# writes, interleaved row by row with the layers' reads, cost more memory bandwidth than
# re-reading the frame from cache saves. Bands of 128 rows were within -3% to +5% of a
# separate pass. Also the rows of the scratch band of ``composite_stack(write_frame=False)``.
DELIVER_BAND_ROWS = 128

# The table handed to the kernels when nothing is converted (same type as the real ones).
NO_TABLE: Final = np.zeros(12, np.int32)
NO_TABLE.setflags(write=False)
#: The whole-stack kernel's (address, code, table) when it delivers nothing.
NOTHING_DELIVERED: Final = (0, NO_DELIVERY, NO_TABLE)


class Delivery:
    """Where ``composite_stack`` writes the finished rows converted, and in which format.

    ``Delivery(fmt, out, matrix=..., value_range=...)`` checks ``out`` once (dtype uint8,
    C-contiguous, writable, a shape of ``fmt``; 4-byte aligned for RGBA and BGRA, whose rows
    the kernel stores as whole uint32 pixels) and works out the frame size from it;
    ``composite_stack(frame, layers, deliver=...)`` then checks the frame size, the row band
    (even bounds for I420/NV12) and that ``out`` shares no memory with the frame or a layer.
    Immutable, so one object may be reused for every frame of a slot; it keeps ``out`` alive.

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
        out = check_uint8(out, fmt.shape(width, height), "out")
        if not out.flags.writeable:
            raise ValueError("out is read-only; the kernel writes the delivery in place")
        fmt.check_size(width, height)
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

    def kernel_arguments(self, frame: np.ndarray, boxes: np.ndarray) -> tuple[int, int, np.ndarray]:
        """(address, format code, table) for the whole-stack kernel, after checking ``frame``
        (already a checked RGBA8 array) and the boxes to composite (``(k, 4)`` x0, y0, x1, y1,
        already inside the frame) against this delivery: :data:`NOTHING_DELIVERED` when
        ``out`` is the frame itself (RGBA)."""
        height, width = frame.shape[0], frame.shape[1]
        if (width, height) != (self.width, self.height):
            raise ValueError(
                f"the delivery is for {self.width}x{self.height} frames, "
                f"not for this {width}x{height} frame"
            )
        if self.format.yuv420 and (boxes % 2).any():
            odd = boxes[np.flatnonzero((boxes % 2).any(axis=1))[0]].tolist()
            raise ValueError(
                f"{self.format.value} converts 2x2 blocks: rows and columns must start and "
                f"end on even numbers, not {odd} (x0, y0, x1, y1)"
            )
        if self.format is FrameFormat.RGBA and self._address == frame.ctypes.data:
            return NOTHING_DELIVERED  # the frame is the delivery
        if np.may_share_memory(frame, self.out):
            raise ValueError(
                "the delivery's out shares memory with the frame; deliver into another buffer"
            )
        return self._address, self._code, self._table
