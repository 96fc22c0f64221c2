"""The parent-worker protocol: a handful of small binary messages, and never a pixel.

Every message is one ``send_bytes`` on a pipe: a 4-byte header (magic, version, type) and a
fixed-size body, plus, for a render task, a packed array of per-layer records. A 1080p frame of
four layers is a 128-byte message whatever the size of its pixels; the pixels stay in shared
memory and are named by (source id, buffer index, slot index).

    parent -> worker                              worker -> parent
    ATTACH   source id, size, buffers, name       HELLO   protocol version, pid
    DETACH   source id                            DONE    task id, slot, kernel ns
    RENDER   task id, slot, rows, layer records   FAILED  task id, slot, error text
    STOP                                          ERROR   text (a message that did not parse)

Task ids are the tasks' sequence numbers, unique and increasing per engine; with the attempt
counter they tell a retry from a stale reply. Task types to come (transform, composite) take
new message types; a frame split into row
bands is already expressible (``y0``/``y1`` of RENDER).
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import Final

import numpy as np

from engine.errors import ProtocolError

MAGIC: Final = 0xF7
VERSION: Final = 1
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


# Per-layer record of a RENDER task: 24 bytes, aligned.
LAYER_RECORD = np.dtype(
    [
        ("source", "<u4"),
        ("buffer", "<u2"),
        ("mode", "u1"),
        ("flags", "u1"),  # bit 0: the source is opaque; bit 1: premultiplied
        ("x", "<i4"),
        ("y", "<i4"),
        ("opacity", "<f8"),
    ]
)
LAYER_OPAQUE: Final = 1
LAYER_PREMULTIPLIED: Final = 2

_HELLO = struct.Struct("<HI")  # protocol version, pid
_ATTACH = struct.Struct("<IIIHH")  # source id, width, height, buffers, name length
_DETACH = struct.Struct("<I")
_RENDER = struct.Struct("<QIHBxIII")  # task id, slot, attempt, clear, y0, y1, layer count
_DONE = struct.Struct("<QIQ")  # task id, slot, kernel nanoseconds
_FAILED = struct.Struct("<QIH")  # task id, slot, text length


@dataclass(frozen=True, slots=True)
class Hello:
    version: int
    pid: int


@dataclass(frozen=True, slots=True)
class Attach:
    source: int
    width: int
    height: int
    buffers: int
    name: str


@dataclass(frozen=True, slots=True)
class Detach:
    source: int


@dataclass(frozen=True, slots=True)
class Render:
    task: int
    slot: int
    attempt: int
    clear: bool
    y0: int
    y1: int
    layers: np.ndarray  # LAYER_RECORD array


@dataclass(frozen=True, slots=True)
class Done:
    task: int
    slot: int
    kernel_ns: int


@dataclass(frozen=True, slots=True)
class Failed:
    task: int
    slot: int
    text: str


@dataclass(frozen=True, slots=True)
class Error:
    text: str


@dataclass(frozen=True, slots=True)
class Stop:
    pass


Message = Hello | Attach | Detach | Render | Done | Failed | Error | Stop


def _header(kind: Kind) -> bytes:
    return _HEADER.pack(MAGIC, VERSION, kind)


def _text(text: str, limit: int) -> bytes:
    data = text.encode("utf-8", "replace")
    return data[-limit:] if len(data) > limit else data


def encode_hello(pid: int) -> bytes:
    return _header(Kind.HELLO) + _HELLO.pack(VERSION, pid)


def encode_attach(source: int, width: int, height: int, buffers: int, name: str) -> bytes:
    data = name.encode("ascii")
    if len(data) > MAX_NAME_BYTES:
        raise ProtocolError(f"segment name longer than {MAX_NAME_BYTES} bytes: {name!r}")
    return _header(Kind.ATTACH) + _ATTACH.pack(source, width, height, buffers, len(data)) + data


def encode_detach(source: int) -> bytes:
    return _header(Kind.DETACH) + _DETACH.pack(source)


def encode_render(
    task: int, slot: int, attempt: int, clear: bool, y0: int, y1: int, layers: np.ndarray
) -> bytes:
    if layers.dtype != LAYER_RECORD:
        raise ProtocolError("layers must be a LAYER_RECORD array")
    body = _RENDER.pack(task, slot, attempt, clear, y0, y1, len(layers))
    return _header(Kind.RENDER) + body + layers.tobytes()


def encode_done(task: int, slot: int, kernel_ns: int) -> bytes:
    return _header(Kind.DONE) + _DONE.pack(task, slot, kernel_ns)


def encode_failed(task: int, slot: int, text: str) -> bytes:
    data = _text(text, MAX_TEXT_BYTES)
    return _header(Kind.FAILED) + _FAILED.pack(task, slot, len(data)) + data


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
    try:
        kind = Kind(raw_kind)
    except ValueError:
        raise ProtocolError(f"unknown message type {raw_kind}") from None
    body = view[_HEADER.size :]
    if kind is Kind.HELLO:
        return Hello(*_fixed(body, _HELLO, kind))
    if kind is Kind.ATTACH:
        source, width, height, buffers, length = _fixed(body, _ATTACH, kind)
        name = bytes(body[_ATTACH.size : _ATTACH.size + length])
        if len(name) != length or length > MAX_NAME_BYTES:
            raise ProtocolError("ATTACH message with a truncated or overlong name")
        try:
            return Attach(source, width, height, buffers, name.decode("ascii"))
        except UnicodeDecodeError:
            raise ProtocolError("ATTACH segment name is not ASCII") from None
    if kind is Kind.DETACH:
        return Detach(*_fixed(body, _DETACH, kind))
    if kind is Kind.RENDER:
        task, slot, attempt, clear, y0, y1, count = _fixed(body, _RENDER, kind)
        records = body[_RENDER.size :]
        if len(records) != count * LAYER_RECORD.itemsize:
            raise ProtocolError(
                f"RENDER announces {count} layers but carries {len(records)} bytes of records"
            )
        layers = np.frombuffer(records, dtype=LAYER_RECORD).copy()
        return Render(task, slot, attempt, bool(clear), y0, y1, layers)
    if kind is Kind.DONE:
        return Done(*_fixed(body, _DONE, kind))
    if kind is Kind.FAILED:
        task, slot, length = _fixed(body, _FAILED, kind)
        text = bytes(body[_FAILED.size : _FAILED.size + length]).decode("utf-8", "replace")
        return Failed(task, slot, text)
    if kind is Kind.ERROR:
        return Error(bytes(body).decode("utf-8", "replace"))
    return Stop()
