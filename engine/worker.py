"""The worker process: attach to the ring once, then composite tasks until told to stop.

Runs in a process started with ``spawn``. It speaks only the binary protocol of
``engine.protocol`` and never lets a bad message or a failing task end it: a message that does
not parse is answered with ERROR, a task that raises is answered with FAILED (carrying the
traceback's text), and the loop goes on. It exits when the parent sends STOP, when its pipe
closes, or when its watchdog thread sees its parent is gone (every ``PARENT_CHECK_S``, even
in the middle of a frame).
"""

from __future__ import annotations

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

from engine import protocol
from engine.protocol import LAYER_OPAQUE, LAYER_PREMULTIPLIED
from engine.ring import FrameRing, SlotState
from engine.shm import AttachedSegment
from engine.sources import buffer_views
from kernels import BufferTable, FrameFormat, LayerStack, composite_stack, convert_frame, warmup

# How often a worker's watchdog thread checks that its parent is alive. A dead parent also
# closes the pipe, but a worker busy in a frame (or hung in one) only notices through the
# watchdog, which runs while the kernel holds no GIL.
PARENT_CHECK_S: Final = 0.5
# Buffer tables kept for reuse; a scene switching among more combinations than this just
# rebuilds them (the cache is cleared, not evicted one by one: simple, and rare).
MAX_CACHED_TABLES: Final = 64


class _AttachedSource:
    def __init__(self, message: protocol.Attach) -> None:
        self.segment = AttachedSegment.attach(message.name)
        self.views = buffer_views(self.segment.buf, message.width, message.height, message.buffers)

    def close(self) -> None:
        self.views = []
        self.segment.close()


class Worker:
    """The state of one worker process: its ring, its attached sources, its pipe."""

    def __init__(self, conn: Connection, ring_name: str, parent_pid: int) -> None:
        self.conn = conn
        self.parent_pid = parent_pid
        self.ring = FrameRing.attach(ring_name)
        self.sources: dict[int, _AttachedSource] = {}
        # Checked buffers per combination of (source, buffer) a frame used: a live loop
        # reuses a handful of them, so a frame's set-up is only its per-layer columns.
        self.tables: dict[tuple[bytes, bytes], BufferTable] = {}

    def _buffer_table(self, keys: list[int], opaque: list[int]) -> BufferTable:
        """The checked buffers of (source << 16 | buffer) keys, in that order."""
        buffers = []
        for key in keys:
            source_id, buffer = key >> 16, key & 0xFFFF
            source = self.sources.get(source_id)
            if source is None:
                raise ValueError(f"unknown source {source_id} (not attached or freed)")
            if buffer >= len(source.views):
                raise ValueError(f"source {source_id} has no buffer {buffer}")
            buffers.append(source.views[buffer])
        return BufferTable(buffers, [bool(o) for o in opaque])

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
            elif isinstance(message, protocol.Detach):
                self.tables.clear()  # tables hold views of the source's buffers
                source = self.sources.pop(message.source, None)
                if source is not None:
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
            return protocol.encode_failed(task.task, task.slot, text)
        return protocol.encode_done(task.task, task.slot, kernel_ns)

    def _render(self, task: protocol.Render) -> int:
        ring = self.ring
        if task.slot >= ring.slots:
            raise ValueError(f"slot {task.slot} does not exist (ring of {ring.slots})")
        if ring.state(task.slot) is not SlotState.RENDERING:
            raise RuntimeError(f"slot {task.slot} is not RENDERING; refusing to write into it")
        if not task.y0 <= task.y1 <= ring.height:
            raise ValueError(f"rows [{task.y0}, {task.y1}) outside a frame of {ring.height} rows")
        records = task.layers
        keys = records["source"].astype(np.int64) << 16 | records["buffer"]
        unique, index = np.unique(keys, return_inverse=True)
        opaque_bits = np.zeros(len(unique), np.int64)
        opaque_bits[index.reshape(-1)] = records["flags"] & LAYER_OPAQUE
        cache_key = (unique.tobytes(), opaque_bits.tobytes())
        table = self.tables.get(cache_key)
        if table is None:
            table = self._buffer_table(unique.tolist(), opaque_bits.tolist())
            if len(self.tables) >= MAX_CACHED_TABLES:
                self.tables.clear()
            self.tables[cache_key] = table
        stack = LayerStack.from_buffers(
            ring.width,
            ring.height,
            table,
            index=index.reshape(-1),
            x=records["x"],
            y=records["y"],
            opacity=records["opacity"],
            modes=records["mode"],
            premultiplied=(records["flags"] & LAYER_PREMULTIPLIED) != 0,
        )
        started = time.perf_counter_ns()
        composite_stack(ring.frame(task.slot), stack, rows=(task.y0, task.y1), clear=task.clear)
        if ring.format is not FrameFormat.RGBA:  # what the encoder wants, in the slot
            convert_frame(
                ring.frame(task.slot),
                ring.delivered(task.slot),
                ring.format,
                matrix=ring.matrix,
                value_range=ring.value_range,
            )
        return time.perf_counter_ns() - started


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
) -> None:
    """Entry point of a worker process (the target given to ``Process``)."""
    # Ctrl+C in a terminal reaches the whole process group; the parent decides what stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # One compositing thread per worker process: N workers must not oversubscribe N cores.
    # (The kernels themselves are single-threaded; OpenCV would otherwise start one thread
    # per core in every worker.)
    cv2.setNumThreads(1)
    if initializer is not None:
        initializer(*initargs)
    threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True).start()
    warmup()  # loads the kernels from Numba's on-disk cache; the parent compiled them
    try:
        worker = Worker(conn, ring_name, parent_pid)
    except Exception:
        conn.send_bytes(protocol.encode_error(traceback.format_exc()))
        raise
    worker.serve()
