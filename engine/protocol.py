"""The parent-worker protocol: a handful of small binary messages, and never a pixel.

Every message is one ``send_bytes`` on a pipe: a 4-byte header (magic, version, type) and a
fixed-size body, plus, for a task, packed records: 32 bytes a layer (``LAYER_RECORD``) and 56
a transform (``TRANSFORM_RECORD``), and 16 bytes a box to composite (``x0, y0, x1, y1`` as
int32). A RENDER of four untransformed layers and one box is 176 bytes whatever the size of its
pixels (``tests/engine/test_protocol.py`` holds these figures to the code);
the pixels stay in shared memory and are named by (source id, buffer index, slot index).

    parent -> worker                                 worker -> parent
    ATTACH    source id, size, buffers, format,      HELLO   pid
              YUV matrix and range, segment name
    DETACH    source id                              DONE    task id, attempt, worker ns
    RENDER    task id, attempt, slot, flags, boxes,  FAILED  task id, attempt, traceback
              layer records, transform records
    TRANSFORM task id, attempt, target source id,    ERROR   text: a start-up traceback, a
              one layer record, one transform record         message it could not parse or
    STOP                                                     a source it could not attach

Two task types, each with its own message: RENDER composites into a slot of the ring,
TRANSFORM writes one transformed picture into a source. A reply names its task and the attempt
it answers, so a reply to an attempt the parent gave up on is told from the current one. Task
ids are unique and increasing per engine. A RENDER composites only its boxes: the whole frame,
a band of rows, or the damage since the slot's previous frame (``framering.damage``; a frame
with no damage is never sent, and a RENDER without boxes is answered at once). A layer names
its pixels as (source id, buffer index, version), or, with ``LAYER_FRAME``, as (slot index, 0,
picture version: the frame's sequence, new at every read of a frame handed out writable): a
finished frame of the ring read as a layer (nesting). A transform travels
as its parameters, so a worker needs no state beyond its attached sources to run one, and a
replacement worker runs it the same.

The version is in every header and ``decode`` refuses any other, so a worker of another
version is caught at its first message.
"""

from __future__ import annotations

import enum
import functools
import struct
from dataclasses import dataclass
from typing import Final

import numpy as np

from framering.errors import ProtocolError
from framering.kernels.transform import FLIPS, INTERPOLATIONS, Transform

MAGIC: Final = 0xF7
VERSION: Final = 4
# Longest error text a worker sends back (a traceback's tail is what matters).
MAX_TEXT_BYTES: Final = 4096
# Longest segment name in ATTACH (POSIX allows 255; ours are ~40).
MAX_NAME_BYTES: Final = 200

_HEADER = struct.Struct("<BBH")  # magic, version, message type


class Kind(enum.IntEnum):
    HELLO = 1
    ATTACH = 2
    DETACH = 3
    RENDER = 4
    DONE = 5
    FAILED = 6
    ERROR = 7
    STOP = 8
    TRANSFORM = 9


_KINDS: Final = {int(kind): kind for kind in Kind}  # a dict lookup: Kind(n) costs 0.24 us

# Per-layer record of a RENDER task: 32 bytes, aligned.
LAYER_RECORD = np.dtype(
    [
        ("source", "<u4"),  # source id, or slot index with LAYER_FRAME
        ("buffer", "<u2"),
        ("mode", "u1"),
        ("flags", "u1"),  # LAYER_* bits
        ("x", "<i4"),
        ("y", "<i4"),
        ("opacity", "<f8"),
        ("version", "<u4"),  # which picture the buffer holds (for the transform cache)
        ("transform", "<u2"),  # 0: none; else 1 + index into the task's transform records
        ("pad", "<u2"),
    ]
)
# ``flags`` holds the layer-flag bits of ``framering.kernels.codes`` (LAYER_OPAQUE,
# LAYER_PREMULTIPLIED, LAYER_FRAME), the one numbering of every wire code.

# A transform's parameters (see ``framering.kernels.transform.Transform``): 56 bytes, aligned.
TRANSFORM_RECORD = np.dtype(
    [
        ("crop", "<i4", (4,)),  # x, y, width, height; width 0: no crop
        ("flip", "u1"),  # 0 none, 1 horizontal, 2 vertical, 3 both
        ("rotate", "u1"),  # quarter turns clockwise
        ("interpolation", "u1"),  # index into INTERPOLATIONS
        ("pad", "u1"),
        ("size", "<u4", (2,)),  # width, height; 0: no scaling
        ("pad2", "<u4"),
        ("angle", "<f8"),
        ("center", "<f8", (2,)),  # NaN: the picture's centre
    ]
)

_FLIP_CODES: Final = {None: 0, **{name: i + 1 for i, name in enumerate(FLIPS)}}
_FLIP_NAMES: Final = {code: name for name, code in _FLIP_CODES.items()}
_INTERPOLATION_NAMES: Final = list(INTERPOLATIONS)


def pack_transform(transform: Transform, out: np.ndarray) -> None:
    """Write ``transform`` into ``out``, a TRANSFORM_RECORD array of one element."""
    record = out[0]
    record["crop"] = transform.crop if transform.crop is not None else (0, 0, 0, 0)
    record["flip"] = _FLIP_CODES[transform.flip]
    record["rotate"] = transform.rotate // 90
    record["interpolation"] = _INTERPOLATION_NAMES.index(transform.interpolation)
    record["size"] = transform.size if transform.size is not None else (0, 0)
    record["angle"] = transform.angle
    record["center"] = transform.center if transform.center is not None else (np.nan, np.nan)


def unpack_transform(record: np.void) -> Transform:
    """The :class:`Transform` of a TRANSFORM_RECORD; raises ProtocolError if it makes none."""
    return _transform_from_bytes(record.tobytes())


@functools.lru_cache(maxsize=256)  # a live loop sends the same few transforms every frame
def _transform_from_bytes(data: bytes) -> Transform:
    record = np.frombuffer(data, TRANSFORM_RECORD)[0]
    try:
        crop = tuple(int(v) for v in record["crop"])
        size = tuple(int(v) for v in record["size"])
        center = tuple(float(v) for v in record["center"])
        return Transform(
            crop=crop if crop[2] else None,  # type: ignore[arg-type]
            flip=_FLIP_NAMES[int(record["flip"])],
            rotate=int(record["rotate"]) * 90,
            size=size if size[0] else None,  # type: ignore[arg-type]
            interpolation=_INTERPOLATION_NAMES[int(record["interpolation"])],
            angle=float(record["angle"]),
            center=None if np.isnan(center[0]) else center,  # type: ignore[arg-type]
        )
    except (KeyError, IndexError, TypeError, ValueError) as error:
        raise ProtocolError(f"bad transform record: {error}") from None


_HELLO = struct.Struct("<I")  # pid (the version is in every header)
_ATTACH = struct.Struct("<IIIHBBBxH")  # id, width, height, buffers, format, matrix, range, name len
_DETACH = struct.Struct("<I")
_RENDER = struct.Struct("<QIIBxxxIHH")  # task, attempt, slot, flags, layers, boxes, transforms
# Most boxes a RENDER may carry (the damage planner merges far below this).
MAX_BOXES: Final = 1024
RENDER_CLEAR: Final = 1  # start from transparent black
RENDER_WRITE_FRAME: Final = 2  # write the RGBA frame (not only the delivery format)
_BOX_BYTES: Final = 16  # x0, y0, x1, y1 as int32
_TRANSFORM = struct.Struct("<QII")  # task, attempt, target source id
_DONE = struct.Struct("<QIQ")  # task, attempt, worker nanoseconds
_FAILED = struct.Struct("<QIH")  # task, attempt, text length


@dataclass(frozen=True, slots=True)
class Hello:
    """A worker is ready: it attached to the ring and loaded the kernels."""

    pid: int


@dataclass(frozen=True, slots=True)
class Attach:
    """Map a source's segment: ``buffers`` pictures of ``width`` x ``height`` in ``format``."""

    source: int
    width: int
    height: int
    buffers: int
    name: str
    format: int = 0  # FrameFormat.code: what the buffers hold
    matrix: int = 1  # codes.matrix_code, for YUV formats
    value_range: int = 0  # codes.range_code, for YUV formats


@dataclass(frozen=True, slots=True)
class Detach:
    """Unmap a freed source."""

    source: int


@dataclass(frozen=True, slots=True)
class Render:
    """Composite the boxes ``boxes`` of slot ``slot`` from layer records."""

    task: int
    attempt: int  # echoed in the reply, so a stale reply can be told from the current one
    slot: int
    clear: bool
    boxes: np.ndarray  # (k, 4) int32: x0, y0, x1, y1 (the worker's kernel call checks them)
    layers: np.ndarray  # LAYER_RECORD array
    transforms: tuple[Transform, ...]  # decoded (and so validated) TRANSFORM_RECORDs
    write_frame: bool = True  # False: the worker may deliver without writing the RGBA frame


@dataclass(frozen=True, slots=True)
class TransformInto:
    """Run one transform of one source's picture into another source (``Engine.transform``)."""

    task: int
    attempt: int
    target: int  # source id of the target, whose one buffer receives the result
    layer: np.void  # LAYER_RECORD: the source picture
    transform: Transform


@dataclass(frozen=True, slots=True)
class Done:
    """A task finished; ``worker_ns`` is the time the worker spent on it."""

    task: int
    attempt: int
    worker_ns: int


@dataclass(frozen=True, slots=True)
class Failed:
    """A task raised in the worker; ``text`` is the traceback's tail."""

    task: int
    attempt: int
    text: str


@dataclass(frozen=True, slots=True)
class Error:
    """Something the worker could not do outside a task (start up, parse a message, attach a
    source); ``text`` is its traceback's tail or the reason."""

    text: str


@dataclass(frozen=True, slots=True)
class Stop:
    """Exit after the task in hand."""


Message = Hello | Attach | Detach | Render | TransformInto | Done | Failed | Error | Stop


def _header(kind: Kind) -> bytes:
    return _HEADER.pack(MAGIC, VERSION, kind)


def _text(text: str, limit: int) -> bytes:
    data = text.encode("utf-8", "replace")
    return data[-limit:] if len(data) > limit else data


def encode_hello(pid: int) -> bytes:
    return _header(Kind.HELLO) + _HELLO.pack(pid)


def encode_attach(
    source: int,
    width: int,
    height: int,
    buffers: int,
    name: str,
    fmt: int = 0,
    matrix: int = 1,
    value_range: int = 0,
) -> bytes:
    data = name.encode("ascii")
    if len(data) > MAX_NAME_BYTES:
        raise ProtocolError(f"segment name longer than {MAX_NAME_BYTES} bytes: {name!r}")
    body = _ATTACH.pack(source, width, height, buffers, fmt, matrix, value_range, len(data))
    return _header(Kind.ATTACH) + body + data


def encode_detach(source: int) -> bytes:
    return _header(Kind.DETACH) + _DETACH.pack(source)


_NO_TRANSFORMS = np.zeros(0, TRANSFORM_RECORD)


def encode_render(
    task: int,
    attempt: int,
    slot: int,
    clear: bool,
    boxes: np.ndarray,
    layers: np.ndarray,
    transforms: np.ndarray = _NO_TRANSFORMS,
    write_frame: bool = True,
) -> bytes:
    """``boxes``: (k, 4) ints, x0, y0, x1, y1 of each box to composite."""
    if layers.dtype != LAYER_RECORD or transforms.dtype != TRANSFORM_RECORD:
        raise ProtocolError("layers and transforms must be LAYER_RECORD and TRANSFORM_RECORD")
    if len(transforms) > 0xFFFF:
        raise ProtocolError("a task carries at most 65535 transforms")
    if boxes.ndim != 2 or boxes.shape[1] != 4 or len(boxes) > MAX_BOXES:
        raise ProtocolError(f"boxes must be a (k, 4) array of at most {MAX_BOXES} boxes")
    flags = (RENDER_CLEAR if clear else 0) | (RENDER_WRITE_FRAME if write_frame else 0)
    body = _RENDER.pack(task, attempt, slot, flags, len(layers), len(boxes), len(transforms))
    return b"".join(
        (
            _header(Kind.RENDER),
            body,
            boxes.astype("<i4", copy=False).tobytes(),
            layers.tobytes(),
            transforms.tobytes(),
        )
    )


def encode_transform(
    task: int, attempt: int, target: int, layer: np.ndarray, transform: np.ndarray
) -> bytes:
    if layer.dtype != LAYER_RECORD or transform.dtype != TRANSFORM_RECORD:
        raise ProtocolError("a TRANSFORM carries one LAYER_RECORD and one TRANSFORM_RECORD")
    return (
        _header(Kind.TRANSFORM)
        + _TRANSFORM.pack(task, attempt, target)
        + layer.tobytes()
        + transform.tobytes()
    )


def encode_done(task: int, attempt: int, worker_ns: int) -> bytes:
    return _header(Kind.DONE) + _DONE.pack(task, attempt, worker_ns)


def encode_failed(task: int, attempt: int, text: str) -> bytes:
    data = _text(text, MAX_TEXT_BYTES)
    return _header(Kind.FAILED) + _FAILED.pack(task, attempt, len(data)) + data


def encode_error(text: str) -> bytes:
    return _header(Kind.ERROR) + _text(text, MAX_TEXT_BYTES)


def encode_stop() -> bytes:
    return _header(Kind.STOP)


def _fixed(body: memoryview, layout: struct.Struct, kind: Kind) -> tuple[int, ...]:
    if len(body) < layout.size:
        raise ProtocolError(f"{kind.name} message too short: {len(body)} < {layout.size} bytes")
    return layout.unpack_from(body)


def decode(data: bytes | bytearray | memoryview) -> Message:
    """Parse one message; anything malformed raises :class:`ProtocolError`, never more."""
    view = memoryview(data)
    if len(view) < _HEADER.size:
        raise ProtocolError(f"message of {len(view)} bytes is shorter than a header")
    magic, version, raw_kind = _HEADER.unpack_from(view)
    if magic != MAGIC:
        raise ProtocolError(f"bad magic byte 0x{magic:02x} (expected 0x{MAGIC:02x})")
    if version != VERSION:
        raise ProtocolError(f"protocol version {version}, this side speaks {VERSION}")
    kind = _KINDS.get(raw_kind)
    if kind is None:
        raise ProtocolError(f"unknown message type {raw_kind}")
    body = view[_HEADER.size :]
    if kind is Kind.HELLO:
        return Hello(*_fixed(body, _HELLO, kind))
    if kind is Kind.ATTACH:
        source, width, height, buffers, fmt, matrix, value_range, length = _fixed(
            body, _ATTACH, kind
        )
        name = bytes(body[_ATTACH.size : _ATTACH.size + length])
        if len(name) != length or length > MAX_NAME_BYTES:
            raise ProtocolError("ATTACH message with a truncated or overlong name")
        try:
            text = name.decode("ascii")
        except UnicodeDecodeError:
            raise ProtocolError("ATTACH segment name is not ASCII") from None
        return Attach(source, width, height, buffers, text, fmt, matrix, value_range)
    if kind is Kind.DETACH:
        return Detach(*_fixed(body, _DETACH, kind))
    if kind is Kind.RENDER:
        task, attempt, slot, flags, count, count_b, count_t = _fixed(body, _RENDER, kind)
        records = body[_RENDER.size :]
        box_bytes = count_b * _BOX_BYTES
        layer_end = box_bytes + count * LAYER_RECORD.itemsize
        if len(records) != layer_end + count_t * TRANSFORM_RECORD.itemsize or count_b > MAX_BOXES:
            raise ProtocolError(
                f"RENDER announces {count} layers, {count_b} boxes and {count_t} transforms but "
                f"carries {len(records)} bytes of records"
            )
        boxes = np.frombuffer(records[:box_bytes], "<i4").reshape(count_b, 4)
        # read-only views of the message's own bytes (a copy of the records cost the worker
        # 2 us a frame, a third of the decoding): nothing writes them
        layers = np.frombuffer(records[box_bytes:layer_end], dtype=LAYER_RECORD)
        transforms = np.frombuffer(records[layer_end:], dtype=TRANSFORM_RECORD)
        decoded = tuple(unpack_transform(record) for record in transforms) if count_t else ()
        clear, write_frame = bool(flags & RENDER_CLEAR), bool(flags & RENDER_WRITE_FRAME)
        return Render(task, attempt, slot, clear, boxes, layers, decoded, write_frame)
    if kind is Kind.TRANSFORM:
        task, attempt, target = _fixed(body, _TRANSFORM, kind)
        records = body[_TRANSFORM.size :]
        if len(records) != LAYER_RECORD.itemsize + TRANSFORM_RECORD.itemsize:
            raise ProtocolError(f"TRANSFORM carries {len(records)} bytes of records")
        layer = np.frombuffer(records[: LAYER_RECORD.itemsize], dtype=LAYER_RECORD)[0].copy()
        transform = np.frombuffer(records[LAYER_RECORD.itemsize :], TRANSFORM_RECORD)[0]
        return TransformInto(task, attempt, target, layer, unpack_transform(transform))
    if kind is Kind.DONE:
        return Done(*_fixed(body, _DONE, kind))
    if kind is Kind.FAILED:
        task, attempt, length = _fixed(body, _FAILED, kind)
        text = bytes(body[_FAILED.size : _FAILED.size + length]).decode("utf-8", "replace")
        return Failed(task, attempt, text)
    if kind is Kind.ERROR:
        return Error(bytes(body).decode("utf-8", "replace"))
    return Stop()
