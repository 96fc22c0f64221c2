"""The worker process: attach to the ring once, then composite tasks until told to stop.

Runs in a process started with ``spawn``. It speaks only the binary protocol of
``framering.protocol`` and never lets a bad message or a failing task end it: a message that does
not parse is answered with ERROR, a task that raises is answered with FAILED (carrying the
traceback's text), and the loop goes on. It exits when the parent sends STOP, when its pipe
closes, or when its watchdog thread sees its parent is gone (every ``PARENT_CHECK_S``, even
in the middle of a frame).
"""

from __future__ import annotations

import contextlib
import faulthandler
import os
import signal
import threading
import time
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any, Final

import cv2
import numpy as np

from framering import protocol
from framering.kernels import (
    BufferTable,
    Delivery,
    FrameFormat,
    LayerStack,
    composite_stack,
    convert_to_rgba,
    warmup,
)
from framering.kernels.codes import (
    LAYER_FRAME,
    LAYER_OPAQUE,
    LAYER_PREMULTIPLIED,
    matrix_name,
    range_name,
)
from framering.kernels.transform import Transform, TransformBuffers, TransformCache, apply_transform
from framering.ring import FrameRing, RingHeader, SlotState
from framering.shm import AttachedSegment
from framering.sources import buffer_views
from framering.worker_policy import apply_worker_policy

# How often a worker's watchdog thread checks that its parent is alive. A dead parent also
# closes the pipe, but a worker busy in a frame (or hung in one) only notices through the
# watchdog, which runs while the kernel holds no GIL.
PARENT_CHECK_S: Final = 0.5

_crash_report: Connection | None = None  # faulthandler's file: must stay open
# Buffer tables kept for reuse; a scene switching among more combinations than this just
# rebuilds them (the cache is cleared, not evicted one by one: simple, and rare).
MAX_CACHED_TABLES: Final = 64
# Frames of at most this many layers find their buffers in plain Python, larger ones with numpy
# (one np.unique costs about what 30 layers' worth of dictionary look-ups do).
FEW_LAYERS: Final = 32
# Packed stacks kept for reuse: enough for a show's few repeating stacks, too few to keep up
# with one that changes every frame (it just packs each; the cache is cleared when full).
MAX_CACHED_STACKS: Final = 16
# A record's fields before its picture's version (source, buffer, mode, flags, x, y, opacity):
# what a packed stack is made of. The version changes with every publish of a live source.
_STACK_FIELDS_BYTES: Final = protocol.LAYER_RECORD.fields["version"][1]
# The same fields but the placement (x, y, opacity, which come last of them): stacks that
# differ only there (moves and fades) share their other columns (``LayerStack.with_placement``).
_SHAPE_FIELDS_BYTES: Final = protocol.LAYER_RECORD.fields["x"][1]
_OPACITY_BYTES: Final = protocol.LAYER_RECORD.fields["opacity"][1]
_RECORD_BYTES: Final = protocol.LAYER_RECORD.itemsize


class _AttachedSource:
    def __init__(self, message: protocol.Attach) -> None:
        self.segment = AttachedSegment.attach(message.name)
        self.format = FrameFormat.from_code(message.format)
        self.matrix = matrix_name(message.matrix)
        self.value_range = range_name(message.value_range)
        self.width, self.height = message.width, message.height
        self.views = buffer_views(
            self.segment.buf, message.width, message.height, message.buffers, self.format
        )
        # RGBA pictures of the buffers of a source in another format, converted once per
        # published version: (version, picture) by buffer index
        self.converted: dict[int, tuple[int, np.ndarray]] = {}

    def rgba(self, buffer: int, version: int) -> np.ndarray:
        """Buffer ``buffer`` as an RGBA8 picture (converted if the source holds another
        format, once per version)."""
        view = self.views[buffer]
        if self.format is FrameFormat.RGBA:
            return view
        held = self.converted.get(buffer)
        if held is not None and held[0] == version:
            return held[1]
        if held is not None:
            picture = held[1]
        else:
            picture = np.empty((self.height, self.width, 4), np.uint8)
        convert_to_rgba(
            view, self.format, picture, matrix=self.matrix, value_range=self.value_range
        )
        self.converted[buffer] = (version, picture)
        return picture

    def close(self) -> None:
        self.views = []
        self.converted.clear()
        self.segment.close()


class Worker:
    """The state of one worker process: its ring, its attached sources, its pipe."""

    def __init__(
        self, conn: Connection, ring_name: str, ring_header: RingHeader | None, parent_pid: int
    ) -> None:
        self.conn = conn
        self.parent_pid = parent_pid
        self.ring = FrameRing.attach(ring_name, ring_header)
        self.sources: dict[int, _AttachedSource] = {}
        # Checked buffers per combination of pictures a frame used: a live loop reuses a
        # handful of them, so a frame's set-up is only its per-layer columns.
        self.tables: dict[tuple[object, ...], BufferTable] = {}
        # Packed stacks of plain frames by their records' bytes but the placements, with the
        # positions' and opacities' bytes they were packed at (``_plain_stack``).
        self.stacks: dict[bytes, tuple[bytes, bytes, LayerStack]] = {}
        # Tables of frames with transformed, converted or nested pictures; cleared whenever
        # the transform cache drops an entry (their keys name cache entries by serial).
        self.general_tables: dict[tuple[object, ...], BufferTable] = {}
        # Transformed pictures, reused while their source picture stays the same.
        self.transforms = TransformCache()
        self._drops_seen = 0
        # Per slot: the checked delivery-format view of it (views of the ring, kept for life).
        self.deliveries: dict[int, Delivery] = {}

    def _buffer_table(self, keys: list[int], opaque: list[int]) -> BufferTable:
        """The checked buffers of (source << 16 | buffer) keys, in that order."""
        buffers = []
        for key in keys:
            source_id, buffer = key >> 16, key & 0xFFFF
            buffers.append(self._source(source_id, buffer).views[buffer])
        return BufferTable(buffers, [bool(o) for o in opaque])

    def _source(self, source_id: int, buffer: int) -> _AttachedSource:
        source = self.sources.get(source_id)
        if source is None:
            raise ValueError(f"unknown source {source_id} (not attached or freed)")
        if buffer >= len(source.views):
            raise ValueError(f"source {source_id} has no buffer {buffer}")
        return source

    def _picture(self, record: np.void, own_slot: int) -> tuple[np.ndarray, tuple[object, ...]]:
        """The RGBA picture a layer record names, before its transform, and a key for it."""
        source_id, buffer = int(record["source"]), int(record["buffer"])
        if record["flags"] & LAYER_FRAME:
            if source_id >= self.ring.slots or source_id == own_slot:
                raise ValueError(f"slot {source_id} cannot be read as a layer here")
            if self.ring.state(source_id) is not SlotState.DONE:
                raise RuntimeError(f"slot {source_id} read as a layer holds no finished frame")
            return self.ring.frame(source_id), ("frame", source_id)
        source = self._source(source_id, buffer)
        return source.rgba(buffer, int(record["version"])), (source_id, buffer)

    def _general_table(
        self, records: np.ndarray, transforms: tuple[Transform, ...], own_slot: int
    ) -> tuple[BufferTable, np.ndarray]:
        """The buffer table and per-layer index of a frame with transforms, frames as layers
        or converted sources (one Python step per layer; transforms come from the cache)."""
        self.transforms.begin_frame()
        keys: dict[tuple[object, ...], int] = {}
        pictures: list[np.ndarray] = []
        opaque: list[bool] = []
        index = np.empty(len(records), np.int64)
        for i, record in enumerate(records):
            picture, key = self._picture(record, own_slot)
            number = int(record["transform"])
            if number:
                if number > len(transforms):
                    raise ValueError(f"layer {i} names transform {number} of {len(transforms)}")
                transform = transforms[number - 1]
                picture, serial = self.transforms.get(
                    key, int(record["version"]), picture, transform
                )
                key = ("transformed", serial)  # its buffers change only with the serial
            position = keys.get(key)
            if position is None:
                position = keys[key] = len(pictures)
                pictures.append(picture)
                opaque.append(bool(record["flags"] & LAYER_OPAQUE))
            index[i] = position
        if self.transforms.drops != self._drops_seen:
            # tables holding outputs the cache dropped would keep their memory alive
            self._drops_seen = self.transforms.drops
            self.general_tables.clear()
        cache_key = (*keys, *opaque)
        table = self.general_tables.get(cache_key)
        if table is None:
            table = BufferTable(pictures, opaque)
            if len(self.general_tables) >= MAX_CACHED_TABLES:
                self.general_tables.clear()
            self.general_tables[cache_key] = table
        return table, index

    def serve(self) -> None:
        self.conn.send_bytes(protocol.encode_hello(os.getpid()))
        while True:
            try:
                data = self.conn.recv_bytes()
            except (EOFError, OSError):
                return  # the parent closed the pipe or died
            try:
                message = protocol.decode(data)
            except protocol.ProtocolError as error:
                self.conn.send_bytes(protocol.encode_error(f"unparsable message: {error}"))
                continue
            if isinstance(message, protocol.Stop):
                return
            if isinstance(message, protocol.Render):
                self.conn.send_bytes(self.render(message))
            elif isinstance(message, protocol.Attach):
                self.attach(message)
            elif isinstance(message, protocol.TransformInto):
                self.conn.send_bytes(self.transform_task(message))
            elif isinstance(message, protocol.Detach):
                self.tables.clear()  # tables and stacks hold views of the source's buffers
                self.stacks.clear()
                self.general_tables.clear()
                source = self.sources.pop(message.source, None)
                if source is not None:
                    for buffer in range(len(source.views)):
                        self.transforms.forget((message.source, buffer))
                    source.close()
            else:
                self.conn.send_bytes(protocol.encode_error(f"unexpected {type(message).__name__}"))

    def attach(self, message: protocol.Attach) -> None:
        if message.source in self.sources:
            return  # a replacement worker may be told twice (at spawn and by an upload)
        try:
            self.sources[message.source] = _AttachedSource(message)
        except Exception as error:  # a later RENDER naming it fails with a clear message
            self.conn.send_bytes(protocol.encode_error(f"cannot attach source: {error}"))

    def render(self, task: protocol.Render) -> bytes:
        try:
            kernel_ns = self._render(task)
        except Exception:
            text = traceback.format_exc()
            return protocol.encode_failed(task.task, task.attempt, text)
        return protocol.encode_done(task.task, task.attempt, kernel_ns)

    def transform_task(self, task: protocol.TransformInto) -> bytes:
        try:
            started = time.perf_counter_ns()
            picture, _ = self._picture(task.layer, own_slot=-1)
            transform = task.transform
            target = self._source(task.target, 0)
            out = target.views[0]
            buffers = TransformBuffers(transform, picture.shape[1], picture.shape[0], out=out)
            apply_transform(picture, transform, buffers)
            elapsed = time.perf_counter_ns() - started
        except Exception:
            return protocol.encode_failed(task.task, task.attempt, traceback.format_exc())
        return protocol.encode_done(task.task, task.attempt, elapsed)

    def _render(self, task: protocol.Render) -> int:
        """Composite one task; returns the nanoseconds it took (from the records to the
        finished frame: buffer look-ups, transforms, conversions, compositing)."""
        started = time.perf_counter_ns()
        ring = self.ring
        if task.slot >= ring.slots:
            raise ValueError(f"slot {task.slot} does not exist (ring of {ring.slots})")
        if ring.state(task.slot) is not SlotState.RENDERING:
            raise RuntimeError(f"slot {task.slot} is not RENDERING; refusing to write into it")
        if not len(task.boxes):
            return time.perf_counter_ns() - started  # nothing changed since the slot's frame
        records = task.layers
        if (
            len(task.transforms)
            or (records["flags"] & LAYER_FRAME).any()
            or self._converting(records)
        ):
            table, layer_index = self._general_table(records, task.transforms, task.slot)
            stack = self._stack(table, layer_index, records)
        else:
            stack = self._plain_stack(records)
        deliver = self._delivery(task.slot)
        composite_stack(
            ring.frame(task.slot),
            stack,
            rects=task.boxes,
            clear=task.clear,
            deliver=deliver,
            # the RGBA frame only when it is wanted: composited in L2-sized bands and
            # converted from there, the delivery costs a third of the frame's memory traffic
            write_frame=task.write_frame or deliver is None or not task.clear,
        )
        return time.perf_counter_ns() - started

    def _stack(self, table: BufferTable, index: np.ndarray, records: np.ndarray) -> LayerStack:
        ring = self.ring
        return LayerStack.from_buffers(
            ring.width,
            ring.height,
            table,
            index=index,
            x=records["x"],
            y=records["y"],
            opacity=records["opacity"],
            modes=records["mode"],
            premultiplied=(records["flags"] & LAYER_PREMULTIPLIED) != 0,
        )

    def _plain_stack(self, records: np.ndarray) -> LayerStack:
        """The packed stack of a frame of plain RGBA sources, kept by its records' bytes.

        A live show repeats a few stacks: still overlays over a camera that cycles through
        its buffers differ only in that buffer's number. Packing one (finding its buffers,
        checking and packing its columns) costs 20 us hot and 40-55 us as a worker runs it
        between frames (AMD EPYC Zen 3); the key costs a copy of a few hundred bytes. A
        picture's version is not in the key: the stack holds the buffer, whatever it shows.
        Nor are the placements (x, y, opacity): a move or a fade, which changes them every
        frame, gets the kept stack with new columns for them, unless a layer was dropped
        (opacity 0, outside the frame) when it was packed or would be now, which only a fresh
        packing gets right."""
        if len(records) > FEW_LAYERS:
            table, layer_index = self._plain_table(records)
            return self._stack(table, layer_index, records)
        rows = np.ascontiguousarray(records).view(np.uint8).reshape(len(records), _RECORD_BYTES)
        key = rows[:, :_SHAPE_FIELDS_BYTES].tobytes()
        positions = rows[:, _SHAPE_FIELDS_BYTES:_OPACITY_BYTES].tobytes()
        opacities = rows[:, _OPACITY_BYTES:_STACK_FIELDS_BYTES].tobytes()
        kept = self.stacks.get(key)
        if kept is not None:
            kept_positions, kept_opacities, stack = kept
            if kept_positions == positions and kept_opacities == opacities:
                return stack
            if len(stack) == len(records):  # no layer was dropped when it was packed
                try:
                    if kept_positions == positions:  # a fade: the geometry is kept as well
                        stack = stack.with_opacity(records["opacity"])
                    else:
                        stack = stack.with_placement(records["x"], records["y"], records["opacity"])
                except ValueError:
                    pass  # a layer would be dropped now: packed afresh below
                else:
                    self.stacks[key] = (positions, opacities, stack)
                    return stack
        table, layer_index = self._plain_table(records)
        stack = self._stack(table, layer_index, records)
        if len(self.stacks) >= MAX_CACHED_STACKS:
            self.stacks.clear()
        self.stacks[key] = (positions, opacities, stack)
        return stack

    def _delivery(self, slot: int) -> Delivery | None:
        """Where the kernel writes the slot's frame in the encoder's format, as it finishes
        each band of rows (None for rgba: the composited frame is what is delivered)."""
        if self.ring.format is FrameFormat.RGBA:
            return None
        delivery = self.deliveries.get(slot)
        if delivery is None:
            delivery = self.deliveries[slot] = Delivery(
                self.ring.format,
                self.ring.delivered(slot),
                matrix=self.ring.matrix,
                value_range=self.ring.value_range,
            )
        return delivery

    def _converting(self, records: np.ndarray) -> bool:
        """Some layer reads a source whose pictures are not RGBA."""
        if not any(s.format is not FrameFormat.RGBA for s in self.sources.values()):
            return False  # the usual case: one dictionary scan, no per-layer work
        return any(
            (s := self.sources.get(i)) is not None and s.format is not FrameFormat.RGBA
            for i in set(records["source"].tolist())
        )

    def _plain_table(self, records: np.ndarray) -> tuple[BufferTable, np.ndarray]:
        """The buffer table of a frame of plain RGBA sources, cached per set of buffers.

        A frame's handful of layers is indexed in plain Python (``np.unique`` alone cost
        10 us of a studio frame); a stack of many sprites with numpy."""
        if len(records) <= FEW_LAYERS:
            positions: dict[int, int] = {}
            opaque: list[int] = []
            numbers = []
            for source, buffer, flags in zip(
                records["source"].tolist(),
                records["buffer"].tolist(),
                records["flags"].tolist(),
                strict=True,
            ):
                key = source << 16 | buffer
                position = positions.get(key)
                if position is None:
                    position = positions[key] = len(opaque)
                    opaque.append(0)
                opaque[position] = flags & LAYER_OPAQUE  # (a source's flag: the same each time)
                numbers.append(position)
            keys = list(positions)
            index = np.array(numbers, np.int64)
            cache_key: tuple[object, ...] = (*keys, *opaque)
        else:
            unique, inverse = np.unique(
                records["source"].astype(np.int64) << 16 | records["buffer"], return_inverse=True
            )
            index = inverse.reshape(-1)
            opaque_bits = np.zeros(len(unique), np.int64)
            opaque_bits[index] = records["flags"] & LAYER_OPAQUE
            keys, opaque = unique.tolist(), opaque_bits.tolist()
            cache_key = (unique.tobytes(), opaque_bits.tobytes())
        table = self.tables.get(cache_key)
        if table is None:
            table = self._buffer_table(keys, opaque)
            if len(self.tables) >= MAX_CACHED_TABLES:
                self.tables.clear()
            self.tables[cache_key] = table
        return table, index


def _watch_parent(parent_pid: int) -> None:
    """Exit the worker at once when its parent is gone: nothing may outlive the engine."""
    while True:
        time.sleep(PARENT_CHECK_S)
        if os.getppid() != parent_pid:
            os._exit(0)


def worker_main(
    conn: Connection,
    ring_name: str,
    parent_pid: int,
    initializer: Callable[..., Any] | None = None,
    initargs: tuple[Any, ...] = (),
    ring_header: RingHeader | None = None,
    crash_report: Connection | None = None,
) -> None:
    """Entry point of a worker process (the target given to ``Process``). ``ring_header`` is
    the ring as the engine made it: a header that says otherwise is refused. A fatal signal
    (SIGSEGV, SIGBUS, SIGABRT...) dumps every thread's Python traceback into ``crash_report``,
    which the parent reads and logs when it sees the worker die."""
    if crash_report is not None:
        global _crash_report
        _crash_report = crash_report  # kept open for the life of the process
        faulthandler.enable(file=crash_report.fileno(), all_threads=True)
    # Its own process group: what a terminal or a supervisor (Ray) signals to the parent's
    # group does not reach it, and whoever owns the engine can kill the worker with anything it
    # started by ``killpg``. It dies with its parent anyway (the watchdog below). Ctrl+C is
    # ignored all the same: the parent decides what stops.
    with contextlib.suppress(OSError):
        os.setpgid(0, 0)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # One compositing thread per worker process: N workers must not oversubscribe N cores.
    # (The kernels themselves are single-threaded; OpenCV would otherwise start one thread
    # per core in every worker.)
    cv2.setNumThreads(1)
    threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True).start()
    try:
        apply_worker_policy()  # wake-ups that do not preempt the parent (worker_policy)
        if initializer is not None:
            initializer(*initargs)
        warmup()  # loads the kernels from Numba's on-disk cache; the parent compiled them
        worker = Worker(conn, ring_name, ring_header, parent_pid)
    except BaseException:
        # the parent keeps this text and names its last line when workers keep dying
        conn.send_bytes(protocol.encode_error(traceback.format_exc()))
        raise
    try:
        worker.serve()
    except BaseException:  # a bug of ours: the parent logs this with the worker's exit
        with contextlib.suppress(OSError, ValueError):
            conn.send_bytes(protocol.encode_error(traceback.format_exc()))
        raise
