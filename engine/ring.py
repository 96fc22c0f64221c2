"""The frame ring: every output frame slot of an engine in one shared-memory segment.

Byte layout (little-endian; created by the parent, attached by every worker)::

    offset 0      header, 64 bytes
                    0  magic     8s   b"FRMRING1"
                    8  width     u32  frame width in pixels
                   12  height    u32  frame height in pixels
                   16  slots     u32  number of slots
                   20  format    u8   delivery format: 0 rgba, 1 bgra, 2 bgr, 3 i420, 4 nv12,
                                      5 rgb
                   21  matrix    u8   YUV matrix: 0 bt601, 1 bt709
                   22  range     u8   YUV range: 0 limited, 1 full
                   23  (pad)     u8
                   24  stride    u64  bytes from one slot's pixels to the next
                   32  pixels    u64  offset of slot 0's pixels
                   40  (reserved)
    offset 64     slot table, 16 bytes a slot
                    0  state     u32  SlotState (written by the parent only)
                    4  attempt   u32  how many times the current frame was dispatched
                    8  sequence  u64  frame sequence number, unique per engine
    offset pixels slot 0 pixels: height x width x 4 bytes of RGBA8, padded to a page; then,
                  unless the format is rgba, the frame in the delivery format (what
                  ``wait()`` returns), padded to `stride`
                  slot 1 pixels ...

Slot pixels start on page boundaries (``stride`` is a multiple of 4096), so a slot never
shares a page, let alone a cache line, with another slot that a different worker writes.

Slot states, all written by the parent::

    FREE --acquire--> ACQUIRED --submit--> QUEUED --dispatch--> RENDERING --+--> DONE
     ^ ^                  |                  ^  |                          |      |
     | +--- release ------+                  |  +-- refused, closed ---+   |      |
     |    (nothing submitted)                +-- retry (worker died or |---+      |
     |                                           answered FAILED)      v          |
     +------------------------------- release ---------------------- FAILED <-----+
                                                                  (no attempt left)

Workers read the table only to check that a task still owns its slot before writing into it.
"""

from __future__ import annotations

import enum
import struct
from typing import Final, NamedTuple

import numpy as np

from framering.kernels import FrameFormat
from framering.kernels.codes import matrix_code, matrix_name, range_code, range_name
from framering.shm import AttachedSegment, CreatedSegment

MAGIC: Final = b"FRMRING1"
HEADER_BYTES: Final = 64
PAGE: Final = 4096
MAX_SLOTS: Final = 1024
_HEADER = struct.Struct("<8sIIIBBBxQQ")
SLOT_TABLE = np.dtype([("state", "<u4"), ("attempt", "<u4"), ("sequence", "<u8")])


class SlotState(enum.IntEnum):
    FREE = 0
    ACQUIRED = 1
    QUEUED = 2
    RENDERING = 3
    DONE = 4
    FAILED = 5


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def delivery_bytes(fmt: FrameFormat, width: int, height: int) -> int:
    """Bytes of a slot's delivery area (none for rgba: the composited frame is delivered)."""
    if fmt is FrameFormat.RGBA:
        return 0
    return _round_up(fmt.nbytes(width, height), PAGE)


def ring_bytes(
    width: int, height: int, slots: int, fmt: FrameFormat = FrameFormat.RGBA
) -> tuple[int, int, int]:
    """(total size, slot stride, pixels offset) of a ring."""
    stride = _round_up(width * height * 4, PAGE) + delivery_bytes(fmt, width, height)
    pixels = _round_up(HEADER_BYTES + slots * SLOT_TABLE.itemsize, PAGE)
    return pixels + slots * stride, stride, pixels


class RingHeader(NamedTuple):
    """The ring's geometry as its header stores it (codes for the format, matrix, range)."""

    width: int
    height: int
    slots: int
    format: int
    matrix: int
    value_range: int
    stride: int
    pixels: int


class FrameRing:
    """Typed views of a ring segment: its header, slot table and slot pixels."""

    def __init__(
        self, segment: CreatedSegment | AttachedSegment, expected: RingHeader | None = None
    ) -> None:
        self.segment = segment
        buf = segment.buf
        if len(buf) < HEADER_BYTES:
            raise ValueError(f"segment {segment.name} is too small to be a framering ring")
        magic, *fields = _HEADER.unpack_from(buf)
        if magic != MAGIC:
            raise ValueError(f"segment {segment.name} is not a framering ring")
        self.header = RingHeader(*fields)
        if expected is not None and self.header != expected:
            raise ValueError(
                f"the header of ring {segment.name} says {self.header}, but the engine made "
                f"{expected}: something overwrote it, and its views would be wrong"
            )
        width, height, slots, fmt, matrix, value_range, stride, pixels = self.header
        if len(buf) < pixels + slots * stride:
            raise ValueError(f"ring {segment.name} is smaller than its header says")
        self.width: int = width
        self.height: int = height
        self.slots: int = slots
        self.table = np.ndarray((slots,), SLOT_TABLE, buffer=buf, offset=HEADER_BYTES)
        # field views made once: a structured-array field lookup costs a microsecond or two,
        # and every frame changes its slot's state five times
        self._states = self.table["state"]
        self.attempts = self.table["attempt"]
        self.sequences = self.table["sequence"]
        self._frames = [
            np.ndarray((height, width, 4), np.uint8, buffer=buf, offset=pixels + i * stride)
            for i in range(slots)
        ]
        self.format = FrameFormat.from_code(fmt)
        self.matrix = matrix_name(matrix)
        self.value_range = range_name(value_range)
        rgba_bytes = _round_up(width * height * 4, PAGE)
        self._delivered = (
            self._frames
            if self.format is FrameFormat.RGBA
            else [
                np.ndarray(
                    self.format.shape(width, height),
                    np.uint8,
                    buffer=buf,
                    offset=pixels + i * stride + rgba_bytes,
                )
                for i in range(slots)
            ]
        )
        # what callers are handed: a frame is read in place, and written only when asked for
        # (``FrameSlot.wait(writable=True)``), since damage tracking keeps it for the next frame
        self._read_only = [view.view() for view in self._delivered]
        for view in self._read_only:
            view.flags.writeable = False

    @classmethod
    def create(
        cls,
        name: str,
        width: int,
        height: int,
        slots: int,
        fmt: FrameFormat = FrameFormat.RGBA,
        matrix: str = "bt709",
        value_range: str = "limited",
    ) -> FrameRing:
        size, stride, pixels = ring_bytes(width, height, slots, fmt)
        segment = CreatedSegment.create(name, size, f"a ring of {slots} {width}x{height} slots")
        _HEADER.pack_into(
            segment.buf,
            0,
            MAGIC,
            width,
            height,
            slots,
            fmt.code,
            matrix_code(matrix),
            range_code(value_range),
            stride,
            pixels,
        )
        return cls(segment)

    @classmethod
    def attach(cls, name: str, expected: RingHeader | None = None) -> FrameRing:
        """Map a ring made elsewhere; with ``expected`` (what the engine made, sent to each
        worker at its start), refuse a header that disagrees."""
        return cls(AttachedSegment.attach(name), expected)

    def frame(self, slot: int) -> np.ndarray:
        """The (height, width, 4) uint8 RGBA view a slot is composited into (no copy)."""
        return self._frames[slot]

    def delivered(self, slot: int, *, writable: bool = True) -> np.ndarray:
        """The slot's frame in the delivery format (the RGBA view itself for rgba); a
        read-only view unless ``writable``."""
        return self._delivered[slot] if writable else self._read_only[slot]

    def state(self, slot: int) -> SlotState:
        return SlotState(int(self._states[slot]))

    def set_state(self, slot: int, state: SlotState) -> None:
        self._states[slot] = state

    def release_views(self) -> None:
        """Drop this object's views so the segment can be unmapped."""
        self._frames = []
        self._delivered = []
        self._read_only = []
        self.table = np.empty(0, SLOT_TABLE)
        self._states = self.table["state"]
        self.attempts = self.table["attempt"]
        self.sequences = self.table["sequence"]
