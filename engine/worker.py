"""The worker process: attach to the ring once, then composite tasks until told to stop.

Runs in a process started with ``spawn``. It speaks only the binary protocol of
``engine.protocol`` and never lets a bad message or a failing task end it: a message that does
not parse is answered with ERROR, a task that raises is answered with FAILED (carrying the
traceback's text), and the loop goes on. It exits when the parent sends STOP, when its pipe
closes, or when it sees its parent is gone (checked at least every ``PARENT_CHECK_S``).
"""

from __future__ import annotations

import os
import signal
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
from kernels import LayerStack, composite_stack, warmup

# How often an idle worker checks that its parent is alive. A parent killed with SIGKILL
# closes the pipe (seen at once), but a parent stuck with the pipe open is only noticed here.
PARENT_CHECK_S: Final = 0.5


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

    def parent_alive(self) -> bool:
        return os.getppid() == self.parent_pid

    def serve(self) -> None:
        self.conn.send_bytes(protocol.encode_hello(os.getpid()))
        while True:
            if not self.conn.poll(PARENT_CHECK_S):
                if not self.parent_alive():
                    return
                continue
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
                source = self.sources.pop(message.source, None)
                if source is not None:
                    source.close()
            else:
                self.conn.send_bytes(protocol.encode_error(f"unexpected {type(message).__name__}"))

    def attach(self, message: protocol.Attach) -> None:
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
        buffers = []
        opaque = []
        for key in unique.tolist():
            source_id, buffer = key >> 16, key & 0xFFFF
            source = self.sources.get(source_id)
            if source is None:
                raise ValueError(f"unknown source {source_id} (not attached or freed)")
            if buffer >= len(source.views):
                raise ValueError(f"source {source_id} has no buffer {buffer}")
            buffers.append(source.views[buffer])
            first = int(np.flatnonzero(keys == key)[0])
            opaque.append(bool(records["flags"][first] & LAYER_OPAQUE))
        stack = LayerStack.from_buffers(
            ring.width,
            ring.height,
            buffers,
            index=index.reshape(-1),
            x=records["x"],
            y=records["y"],
            opacity=records["opacity"],
            modes=records["mode"],
            premultiplied=(records["flags"] & LAYER_PREMULTIPLIED) != 0,
            opaque=opaque,
        )
        started = time.perf_counter_ns()
        composite_stack(ring.frame(task.slot), stack, rows=(task.y0, task.y1), clear=task.clear)
        return time.perf_counter_ns() - started


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
    warmup()  # loads the kernels from Numba's on-disk cache; the parent compiled them
    try:
        worker = Worker(conn, ring_name, parent_pid)
    except Exception:
        conn.send_bytes(protocol.encode_error(traceback.format_exc()))
        raise
    worker.serve()
