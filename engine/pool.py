"""The worker pool: processes, pipes, one manager thread, dispatch and recovery.

Who owns what::

    caller threads               manager thread (one)                worker processes (spawn)
    --------------               --------------------                ------------------------
    submit(task) --+                                                 +-> worker 0: recv RENDER,
                   | least-loaded READY worker with room?            |   composite into the
                   +-- yes: send RENDER ---------------------------->+   slot, send DONE
                   +-- no: append to `pending`                       |
                                                                     |
                     wait() on every result pipe, every worker's  <--+   DONE / FAILED / ERROR
                     sentinel and a wake-up pipe, at once;
                     the timeout is the nearest task deadline
                       DONE/FAILED -> the task's listener, then dispatch `pending`
                       sentinel    -> worker died: retry its tasks, start a replacement
                       deadline    -> SIGKILL the hung worker (then as above)

Shared state (`pending`, each worker's `inflight`) is guarded by one lock that is never held
while writing to a pipe, so a full pipe can never stall the manager thread (it is held while a
replacement process starts, so that no upload can miss the new worker). At most
``MAX_QUEUED_PER_WORKER`` tasks sit in a worker's pipe; the rest wait in `pending`.
"""

from __future__ import annotations

import enum
import logging
import multiprocessing
import os
import selectors
import signal
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any, Final

from framering import protocol
from framering.errors import EngineBrokenError, EngineClosedError
from framering.tasks import Task
from framering.worker import worker_main

log = logging.getLogger("framering")

# Tasks a worker may hold at once (the one it composites plus the ones queued in its pipe).
# Two keeps a worker busy across the round trip of a completion (it starts the next task
# while the manager handles the last); more only makes a dead worker's backlog longer.
MAX_QUEUED_PER_WORKER: Final = 2
# Consecutive workers that may die before saying hello before the engine calls itself broken.
MAX_START_FAILURES: Final = 3
# How long the manager sleeps when nothing has a deadline (it wakes on any event anyway).
IDLE_WAIT_S: Final = 1.0
# Grace period for workers to exit after STOP before they are killed.
STOP_GRACE_S: Final = 2.0


class WorkerState(enum.Enum):
    STARTING = "starting"
    READY = "ready"
    DEAD = "dead"
    STOPPED = "stopped"


@dataclass(eq=False)
class WorkerHandle:
    index: int
    process: multiprocessing.process.BaseProcess
    conn: Connection
    state: WorkerState = WorkerState.STARTING
    pid: int | None = None
    inflight: dict[int, Task] = field(default_factory=dict)
    head_since: float = field(default_factory=time.monotonic)  # when the oldest task started
    frames_done: int = 0
    kill_reason: str | None = None
    last_error: str | None = None  # the text of its last ERROR (a start-up traceback...)
    send_lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass(frozen=True)
class WorkerSnapshot:
    """One worker at one moment (see ``metrics.WorkerMetrics`` for the fields' meaning)."""

    index: int
    pid: int | None
    state: str
    tasks_done: int
    inflight: int
    last_error: str | None


@dataclass(frozen=True)
class PoolSnapshot:
    """The pool's counters at one moment (what ``Engine.metrics`` reports)."""

    workers: tuple[WorkerSnapshot, ...]
    queued: int
    inflight: int
    restarts: int
    retries: int
    bytes_sent: int
    bytes_received: int
    protocol_errors: int
    stale_replies: int


@dataclass(frozen=True)
class SourceInfo:
    id: int
    name: str
    width: int
    height: int
    buffers: int
    format: int = 0  # format code
    matrix: int = 1
    value_range: int = 0


def last_line(text: str | None) -> str:
    """The last non-empty line of a traceback: the exception and its message."""
    lines = [line for line in (text or "").splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


def describe_exit(exitcode: int | None) -> str:
    """'killed by SIGKILL', 'exited with code 3', ... for a dead worker."""
    if exitcode is None:
        return "vanished (no exit code)"
    if exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exited with code {exitcode}"


class WorkerPool:
    """Persistent worker processes fed with tasks; see the module docstring."""

    def __init__(
        self,
        ring_name: str,
        workers: int,
        *,
        max_attempts: int,
        start_timeout: float,
        initializer: Callable[..., Any] | None = None,
        initargs: tuple[Any, ...] = (),
    ) -> None:
        self._ring_name = ring_name
        self._initializer = initializer
        self._initargs = initargs
        self._count = workers
        self._max_attempts = max_attempts
        self._context = multiprocessing.get_context("spawn")
        self._lock = threading.Lock()
        self._workers: list[WorkerHandle] = []
        self._pending: deque[Task] = deque()
        self._sources: dict[int, SourceInfo] = {}
        self._start_failures = 0
        self._restarts = 0
        self._retries = 0
        self._bytes_sent = 0
        self._bytes_received = 0
        self._protocol_error_count = 0
        self._stale_replies = 0
        self._closing = False
        self._generation = 0  # bumped whenever a worker is added, dies or stops
        self._broken: str | None = None
        self._ready = threading.Condition(self._lock)
        self._wake_reader, self._wake_writer = self._context.Pipe(duplex=False)
        for index in range(workers):
            self._workers.append(self._spawn(index))
        self._manager = threading.Thread(target=self._manage, name="framering-manager", daemon=True)
        self._manager.start()
        with self._ready:
            started = self._ready.wait_for(
                lambda: (
                    self._broken is not None
                    or all(w.state is WorkerState.READY for w in self._workers)
                ),
                start_timeout,
            )
        if self._broken is not None:
            self.stop()
            raise EngineBrokenError(self._broken)
        if not started:
            self.stop()
            raise EngineBrokenError(f"workers did not start within {start_timeout} s")

    # ----------------------------------------------------------------- processes
    def _spawn(self, index: int) -> WorkerHandle:
        """Start a worker process (the caller registers it, then calls _send_sources)."""
        parent_end, child_end = self._context.Pipe(duplex=True)
        process = self._context.Process(
            target=worker_main,
            args=(child_end, self._ring_name, os.getpid(), self._initializer, self._initargs),
            name=f"framering-worker-{index}",
            daemon=True,
        )
        process.start()
        child_end.close()
        return WorkerHandle(index, process, parent_end)

    def _send_sources(self, worker: WorkerHandle, sources: list[SourceInfo]) -> None:
        """ATTACH every source to a new worker, before any RENDER can reach it.

        RENDER only goes to READY workers, READY follows the worker's hello, and hellos are
        handled on the manager thread, which is the thread that calls this for replacements.
        """
        for info in sources:
            self._send(worker, self._attach_message(info))

    @staticmethod
    def _attach_message(info: SourceInfo) -> bytes:
        return protocol.encode_attach(
            info.id,
            info.width,
            info.height,
            info.buffers,
            info.name,
            info.format,
            info.matrix,
            info.value_range,
        )

    def _send(self, worker: WorkerHandle, data: bytes) -> bool:
        """Write one message; False if the worker's pipe is gone (its death is seen elsewhere)."""
        try:
            with worker.send_lock:
                worker.conn.send_bytes(data)
        except (OSError, ValueError):
            return False
        with self._lock:
            self._bytes_sent += len(data)
        return True

    # ----------------------------------------------------------------- sources
    def attach_source(self, info: SourceInfo) -> None:
        with self._lock:
            self._sources[info.id] = info
            targets = [
                w for w in self._workers if w.state in (WorkerState.STARTING, WorkerState.READY)
            ]
        message = self._attach_message(info)
        for worker in targets:
            self._send(worker, message)

    def detach_source(self, source_id: int) -> None:
        with self._lock:
            self._sources.pop(source_id, None)
            targets = [
                w for w in self._workers if w.state in (WorkerState.STARTING, WorkerState.READY)
            ]
        message = protocol.encode_detach(source_id)
        for worker in targets:
            self._send(worker, message)

    # ----------------------------------------------------------------- tasks
    def submit(self, task: Task) -> None:
        """Queue a task; it is sent at once if a worker has room. Refused once stopping."""
        with self._lock:
            if self._broken is not None:
                raise EngineBrokenError(self._broken)
            if self._closing:
                raise EngineClosedError("the engine is closing; no task is taken")
            self._pending.append(task)
            sends = self._assign_pending()
        self._send_all(sends)

    def _assign_pending(self) -> list[tuple[WorkerHandle, Task]]:
        """Move pending tasks to the least-loaded READY workers (lock held). No sending here."""
        sends: list[tuple[WorkerHandle, Task]] = []
        if not self._pending:
            return sends  # the common case on every completion
        while self._pending:
            ready = [w for w in self._workers if w.state is WorkerState.READY]
            if not ready:
                break
            worker = min(ready, key=lambda w: len(w.inflight))
            if len(worker.inflight) >= MAX_QUEUED_PER_WORKER:
                break
            task = self._pending.popleft()
            task.attempts += 1
            task.worker = worker.index
            if not worker.inflight:
                worker.head_since = time.monotonic()
            worker.inflight[task.id] = task
            task.listener.task_dispatched(task)
            sends.append((worker, task))
        return sends

    def _send_all(self, sends: list[tuple[WorkerHandle, Task]]) -> None:
        for worker, task in sends:
            self._send(worker, task.encode())

    def _retryable(self, task: Task) -> bool:
        """Lock held. Whether a task that failed or lost its worker goes back in the queue."""
        return task.attempts < self._max_attempts and task.retryable and not self._closing

    # ----------------------------------------------------------------- manager thread
    def _manage(self) -> None:
        try:
            self._manage_loop()
        except BaseException:  # a bug here must not leave every waiter hanging for ever
            reason = f"the manager thread crashed:\n{traceback.format_exc()}"
            with self._ready:
                self._broken = reason
                tasks = list(self._pending)
                self._pending.clear()
                for worker in self._workers:
                    tasks += worker.inflight.values()
                    worker.inflight.clear()
                self._ready.notify_all()
            for task in tasks:
                task.listener.task_failed(task, reason)
            raise

    def _manage_loop(self) -> None:
        # One epoll set for the life of the pool, changed only when workers come and go:
        # ``multiprocessing.connection.wait`` builds and tears down a selector on every call,
        # tens of microseconds a frame on the hot path.
        selector = selectors.DefaultSelector()
        selector.register(self._wake_reader, selectors.EVENT_READ, None)
        watched: dict[int, tuple[int, int]] = {}  # id(handle) -> its registered fds
        generation = -1
        try:
            while True:
                with self._lock:
                    live = [
                        w
                        for w in self._workers
                        if w.state in (WorkerState.STARTING, WorkerState.READY)
                    ]
                    if self._closing and not live:
                        return
                    timeout = self._next_deadline_in(live)
                if generation != self._generation:
                    generation = self._generation
                    self._watch(selector, watched, live)
                ready = selector.select(timeout)
                for key, _ in ready:
                    if key.data is None:
                        self._drain_wake_pipe()
                    elif key.data[0] == "result":
                        self._drain(key.data[1])
                for key, _ in ready:
                    if key.data is not None and key.data[0] == "death":
                        self._drain(key.data[1], all_pending=True)  # its last results count
                        self._on_death(key.data[1])
                self._kill_overdue(live)
        finally:
            selector.close()

    @staticmethod
    def _watch(
        selector: selectors.BaseSelector,
        watched: dict[int, tuple[int, int]],
        live: list[WorkerHandle],
    ) -> None:
        """Make the selector watch exactly the live workers' pipes and sentinels.

        Entries are dropped by file descriptor number, recorded when registered: a dead
        worker's pipe is closed by then, and its number may already belong to its replacement.
        """
        wanted = {id(w): w for w in live}
        for key in [k for k in watched if k not in wanted]:
            for fd in watched.pop(key):
                try:
                    selector.unregister(fd)
                except (KeyError, ValueError):
                    pass
        for key, worker in wanted.items():
            if key not in watched:
                conn_fd, sentinel_fd = worker.conn.fileno(), worker.process.sentinel
                selector.register(conn_fd, selectors.EVENT_READ, ("result", worker))
                selector.register(sentinel_fd, selectors.EVENT_READ, ("death", worker))
                watched[key] = (conn_fd, sentinel_fd)

    def _drain_wake_pipe(self) -> None:
        try:
            while self._wake_reader.poll():
                self._wake_reader.recv_bytes()
        except (EOFError, OSError):
            pass

    def _next_deadline_in(self, live: list[WorkerHandle]) -> float:
        now = time.monotonic()
        timeout = IDLE_WAIT_S
        for worker in live:
            if worker.inflight:
                head = next(iter(worker.inflight.values()))
                timeout = min(timeout, worker.head_since + head.deadline_s - now)
        return max(timeout, 0.0)

    def _kill_overdue(self, live: list[WorkerHandle]) -> None:
        now = time.monotonic()
        overdue = []
        with self._lock:
            for worker in live:
                if not worker.inflight or worker.kill_reason is not None:
                    continue
                head = next(iter(worker.inflight.values()))
                if now < worker.head_since + head.deadline_s:
                    continue
                worker.kill_reason = f"exceeded its deadline of {head.deadline_s:g} s (hung?)"
                overdue.append(worker)
        for worker in overdue:
            try:
                worker.process.kill()
            except (OSError, AttributeError):
                pass

    def _drain(self, worker: WorkerHandle, *, all_pending: bool = False) -> None:
        """Read one message (the selector said there is one), or all of them before a death.

        One at a time on the hot path: asking ``poll()`` whether there is more costs a system
        call per frame, and the level-triggered selector reports any rest at once anyway.
        """
        while True:
            try:
                if all_pending and not worker.conn.poll():
                    return
                data = worker.conn.recv_bytes()
            except (EOFError, OSError):
                return
            with self._lock:
                self._bytes_received += len(data)
            try:
                message = protocol.decode(data)
            except protocol.ProtocolError:
                self._count_protocol_error()
                continue
            self._handle(worker, message)
            if not all_pending:
                return

    def _count_protocol_error(self) -> None:
        with self._lock:
            self._protocol_error_count += 1

    def _handle(self, worker: WorkerHandle, message: protocol.Message) -> None:
        if isinstance(message, protocol.Hello):
            with self._ready:
                worker.pid = message.pid
                worker.state = WorkerState.READY
                self._start_failures = 0
                sends = self._assign_pending()
                self._ready.notify_all()
            self._send_all(sends)
        elif isinstance(message, protocol.Done | protocol.Failed):
            failed = None
            with self._lock:
                task = worker.inflight.get(message.task)
                if task is None or task.attempts != message.attempt:
                    self._stale_replies += 1  # an attempt this worker no longer holds
                    return
                del worker.inflight[message.task]
                worker.head_since = time.monotonic()
                if isinstance(message, protocol.Done):
                    worker.frames_done += 1
                else:
                    task.last_cause = message.text
                    if self._retryable(task):
                        self._retries += 1
                        self._pending.appendleft(task)
                        task.listener.task_requeued(task)
                    else:
                        failed = task
                sends = self._assign_pending()
            if isinstance(message, protocol.Done):
                task.listener.task_done(task, message.worker_ns)
            elif failed is None:
                log.warning(
                    "task %d failed in worker %d (attempt %d), retrying: %s",
                    task.id,
                    worker.index,
                    task.attempts,
                    last_line(message.text),
                )
            if failed is not None:
                failed.listener.task_failed(failed, failed.last_cause)
            self._send_all(sends)
        elif isinstance(message, protocol.Error):
            with self._lock:
                self._protocol_error_count += 1
                worker.last_error = message.text
            log.warning("worker %d reports: %s", worker.index, message.text.rstrip())

    def _on_death(self, worker: WorkerHandle) -> None:
        worker.process.join(timeout=1.0)
        cause = (
            worker.kill_reason or f"worker {worker.index} {describe_exit(worker.process.exitcode)}"
        )
        failed: list[Task] = []
        replace = False
        with self._ready:
            if worker.state in (WorkerState.DEAD, WorkerState.STOPPED):
                return
            died_starting = worker.state is WorkerState.STARTING
            worker.state = WorkerState.STOPPED if self._closing else WorkerState.DEAD
            self._generation += 1
            orphans = list(worker.inflight.values())
            worker.inflight.clear()
            for task in reversed(orphans):  # oldest first at the front of the queue
                task.last_cause = cause
                if not task.retryable:
                    task.last_cause = (
                        f"{cause}; the frame was composited over the slot's previous content, "
                        f"which the dead worker may have half overwritten, so it is not retried"
                    )
                if self._retryable(task):
                    self._retries += 1
                    self._pending.appendleft(task)
                    task.listener.task_requeued(task)
                else:
                    failed.append(task)
            if not self._closing:
                if died_starting:
                    self._start_failures += 1
                if self._start_failures >= MAX_START_FAILURES:
                    self._broken = (
                        f"{self._start_failures} workers in a row died while starting; the "
                        f"last one {describe_exit(worker.process.exitcode)}"
                        + (
                            f" after: {last_line(worker.last_error)}"
                            if worker.last_error
                            else ". Workers start with 'spawn', which re-imports the main "
                            'module: does it guard its code with `if __name__ == "__main__":`?'
                        )
                    )
                    failed += list(self._pending)
                    self._pending.clear()
                else:
                    replace = True
            self._ready.notify_all()
        worker.conn.close()
        if self._broken is not None and not self._closing:
            log.error("engine broken: %s", self._broken)
        elif replace:
            retried = len(orphans) - len(failed)
            log.warning("%s; %d task(s) retried; starting a replacement", cause, retried)
        for task in failed:
            task.listener.task_failed(task, self._broken or task.last_cause)
        if replace:
            with self._lock:  # registered before the lock drops: no upload can miss it
                replacement = self._spawn(worker.index)
                self._workers[self._workers.index(worker)] = replacement
                self._generation += 1
                self._restarts += 1
                sources = list(self._sources.values())
            self._send_sources(replacement, sources)

    # ----------------------------------------------------------------- shutdown
    def stop(self) -> list[Task]:
        """Stop every worker (STOP, then SIGKILL after a grace period); returns unfinished tasks."""
        with self._lock:
            self._closing = True
            workers = list(self._workers)
            unfinished = list(self._pending)
            self._pending.clear()
        for worker in workers:
            if worker.state in (WorkerState.STARTING, WorkerState.READY):
                self._send(worker, protocol.encode_stop())
        deadline = time.monotonic() + STOP_GRACE_S
        for worker in workers:
            worker.process.join(max(0.0, deadline - time.monotonic()))
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join(1.0)
        try:
            self._wake_writer.send_bytes(b"stop")
        except OSError:
            pass
        if self._manager.is_alive() and threading.current_thread() is not self._manager:
            self._manager.join(5.0)
        with self._lock:
            for worker in workers:
                unfinished += worker.inflight.values()
                worker.inflight.clear()
                if worker.state is not WorkerState.DEAD:
                    worker.state = WorkerState.STOPPED
            self._generation += 1
        for worker in workers:
            worker.conn.close()
        self._wake_reader.close()
        self._wake_writer.close()
        return unfinished

    # ----------------------------------------------------------------- introspection
    def snapshot(self) -> PoolSnapshot:
        """Counters for metrics, taken under the lock."""
        with self._lock:
            return PoolSnapshot(
                workers=tuple(
                    WorkerSnapshot(
                        w.index, w.pid, w.state.value, w.frames_done, len(w.inflight), w.last_error
                    )
                    for w in self._workers
                ),
                queued=len(self._pending),
                inflight=sum(len(w.inflight) for w in self._workers),
                restarts=self._restarts,
                retries=self._retries,
                bytes_sent=self._bytes_sent,
                bytes_received=self._bytes_received,
                protocol_errors=self._protocol_error_count,
                stale_replies=self._stale_replies,
            )

    @property
    def broken(self) -> str | None:
        return self._broken

    def pids(self) -> list[int]:
        with self._lock:
            return [
                w.pid for w in self._workers if w.pid is not None and w.state is WorkerState.READY
            ]
