"""Worker processes as the pool sees them: a handle each, and one watch over all of them.

- :class:`WorkerHandle`: one spawned process, its end of the pipe, its state and the tasks it
  holds. Only the pool changes a handle (under the pool's lock); sending is serialised by the
  handle's own lock, which is never held while the pool's is.
- :class:`WorkerWatch`: one epoll set over every live worker's pipe and process sentinel, plus
  a wake-up pipe, so the manager thread sees a result, a death or a stop request in one wait.
"""

from __future__ import annotations

import contextlib
import enum
import multiprocessing
import multiprocessing.context
import os
import selectors
import signal
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any, Final

import psutil

from framering.framing import MessageReader
from framering.ring import RingHeader
from framering.tasks import Task
from framering.worker import worker_main

# Most worker processes one pool may run.
MAX_WORKERS: Final = 256


def physical_cores() -> int:
    """Physical cores of this machine (psutil), at least 1."""
    return max(1, psutil.cpu_count(logical=False) or psutil.cpu_count() or 1)


_spawned: weakref.WeakSet[multiprocessing.process.BaseProcess] = weakref.WeakSet()


def _forget_workers_in_a_fork() -> None:
    """In an ``os.fork()`` child: the parent's workers are not its children.

    The child inherits multiprocessing's set of the parent's child processes, and at its exit
    multiprocessing would terminate the daemonic ones (our workers) and join the rest. Taking
    them off the child's copy of the set is the only way to stop that: there is no public
    call for it.
    """
    children = getattr(multiprocessing.process, "_children", None)
    if isinstance(children, set):
        children.difference_update(_spawned)


os.register_at_fork(after_in_child=_forget_workers_in_a_fork)


class WorkerState(enum.Enum):
    STARTING = "starting"
    READY = "ready"
    RETIRING = "retiring"
    """Takes no new task; stopped once it holds none (an idle or oversized worker)."""
    DEAD = "dead"
    STOPPED = "stopped"


@dataclass(eq=False)
class WorkerHandle:
    """One worker process, from spawn to its death or stop."""

    index: int
    process: multiprocessing.process.BaseProcess
    conn: Connection
    state: WorkerState = WorkerState.STARTING
    pid: int | None = None
    inflight: dict[int, Task] = field(default_factory=dict)
    head_since: float = field(default_factory=time.monotonic)  # when the oldest task started
    tasks_done: int = 0
    kill_reason: str | None = None
    last_error: str | None = None  # the text of its last ERROR (a start-up traceback...)
    released: bool = False  # its pipe and process handle are closed
    send_lock: threading.Lock = field(default_factory=threading.Lock)
    crash_report: Connection | None = None  # where faulthandler writes a fatal signal's stack
    retire_reason: str = ""  # why it is RETIRING
    stop_sent: bool = False
    written: dict[int, tuple[int, int]] = field(default_factory=dict)
    """Task id -> (place in the pipe, attempt) of each task it holds whose message was written
    to its pipe, or was being written (:meth:`send`); dropped when the task ends here."""
    tasks_written: int = 0
    _process_info: psutil.Process | None = field(default=None, init=False, repr=False)
    _reader: MessageReader = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._reader = MessageReader(self.conn)

    @classmethod
    def spawn(
        cls,
        context: multiprocessing.context.SpawnContext,
        index: int,
        ring_name: str,
        ring_header: RingHeader,
        initializer: Callable[..., Any] | None,
        initargs: tuple[Any, ...],
    ) -> WorkerHandle:
        """Start a worker process attached to the ring ``ring_name`` (which must still have
        the header ``ring_header``)."""
        parent_end, child_end = context.Pipe(duplex=True)
        crash_reader, crash_writer = context.Pipe(duplex=False)
        process = context.Process(
            target=worker_main,
            args=(
                child_end,
                ring_name,
                os.getpid(),
                initializer,
                initargs,
                ring_header,
                crash_writer,
            ),
            name=f"framering-worker-{index}",
            daemon=True,
        )
        try:
            process.start()
        except BaseException:
            for end in (parent_end, child_end, crash_reader, crash_writer):
                end.close()
            raise
        _spawned.add(process)
        child_end.close()
        crash_writer.close()
        os.set_blocking(crash_reader.fileno(), False)
        return cls(index, process, parent_end, crash_report=crash_reader)

    def crash_traceback(self) -> str:
        """What faulthandler wrote when a fatal signal killed the process ('' if nothing:
        a SIGKILL, a clean exit)."""
        if self.crash_report is None:
            return ""
        chunks = []
        with contextlib.suppress(OSError, ValueError):
            while chunk := os.read(self.crash_report.fileno(), 65536):
                chunks.append(chunk)
        return b"".join(chunks).decode("utf-8", "replace")

    @property
    def live(self) -> bool:
        """Starting, ready or retiring: it can still take messages."""
        return self.state in (WorkerState.STARTING, WorkerState.READY, WorkerState.RETIRING)

    def private_memory(self) -> int | None:
        """Bytes of its resident memory that are its own: RSS less shared pages (the ring and
        the sources, which every worker maps, do not count). None if unreadable."""
        if self.pid is None:
            return None
        try:
            if self._process_info is None:
                self._process_info = psutil.Process(self.pid)
            memory = self._process_info.memory_info()
            return int(memory.rss - getattr(memory, "shared", 0))
        except (psutil.Error, OSError):
            return None

    def send(self, data: bytes, task: Task | None = None) -> bool:
        """Write one message (``task``'s, if it is a task's); False if the pipe is gone (the
        death is seen by the watch).

        A task's place in this pipe is noted first (:attr:`written`). A worker takes its tasks
        one at a time in the order they were written, which is not the order they were
        assigned in (two threads send), so after a death the places tell the task it may have
        started from those it cannot have. Noted before the write, so a write that fails or is
        interrupted counts as made: the error that way is only ever to spend an attempt that
        was not used."""
        try:
            with self.send_lock:
                if task is not None:
                    self.tasks_written += 1
                    self.written[task.id] = (self.tasks_written, task.attempts)
                self.conn.send_bytes(data)
        except (OSError, ValueError):
            return False
        return True

    def wrote(self, task: Task) -> bool:
        """``task``'s current attempt was (or was being) written to this pipe."""
        with self.send_lock:
            return self.written.get(task.id, (0, -1))[1] == task.attempts

    def first_written(self, tasks: Sequence[Task]) -> Task | None:
        """Of ``tasks`` (its orphans after a death), the one whose current attempt was written
        to this pipe first: the only one it may have started; None if none was."""
        with self.send_lock:  # no write half noted
            first, first_place = None, 0
            for task in tasks:
                place, attempt = self.written.get(task.id, (0, -1))
                if attempt == task.attempts and (first is None or place < first_place):
                    first, first_place = task, place
            return first

    def receive(self, all_pending: bool) -> list[bytes]:
        """The messages the pipe holds (the watch said it is readable), in one read; or, before
        a death, every one left.

        One read on the hot path: asking ``poll()`` whether there is more costs a system call
        per frame, and the level-triggered watch reports any rest at once anyway.
        """
        if not all_pending:
            return self._reader.read()[0]
        messages: list[bytes] = []
        while True:
            try:
                readable = self.conn.poll()
            except (EOFError, OSError):
                readable = False
            if not readable:
                return messages
            more, still_open = self._reader.read()
            messages += more
            if not still_open:
                return messages

    def overdue(self, now: float, start_timeout: float) -> bool:
        """Its oldest task is past its deadline, or it is still starting ``start_timeout``
        seconds after it was spawned (a hung initializer or spawn, whose death then counts as a
        failed start); pool's lock held: records why it must die."""
        if self.state is WorkerState.STARTING and self.kill_reason is None:
            if now < self.head_since + start_timeout:
                return False
            self.kill_reason = (
                f"worker {self.index} did not start within {start_timeout:g} s; it was killed"
            )
            return True
        if not self.inflight or self.kill_reason is not None:
            return False
        head = next(iter(self.inflight.values()))
        if now < self.head_since + head.deadline_s:
            return False
        self.kill_reason = (
            f"worker {self.index} exceeded the deadline of {head.deadline_s:g} s (hung?) and "
            f"was killed"
        )
        return True

    def join_or_kill(self, deadline: float) -> None:
        """Wait for the process to exit until ``deadline`` (monotonic), then SIGKILL it."""
        try:
            self.process.join(max(0.0, deadline - time.monotonic()))
            if self.process.is_alive():
                self.process.kill()
                self.process.join(1.0)
        except ValueError:
            pass  # released meanwhile by the manager thread: it had exited

    def release(self) -> None:
        """Close its pipe and, once it exited, its process handle (the sentinel's fd would
        otherwise wait for the cyclic garbage collector). Safe to call again."""
        if self.released:
            return
        with self.send_lock:  # a sender must not write to the fd number a new pipe may get
            self.conn.close()
        if self.crash_report is not None:
            self.crash_report.close()
        try:
            if self.process.exitcode is not None:
                self.process.close()
                self.released = True
        except ValueError:
            self.released = True  # closed already

    def kill(self) -> None:
        try:
            self.process.kill()
        except (OSError, AttributeError):
            pass


@dataclass(frozen=True)
class WorkerSnapshot:
    """One worker at one moment (see ``metrics.WorkerMetrics`` for the fields' meaning)."""

    index: int
    pid: int | None
    state: str
    tasks_done: int
    inflight: int
    last_error: str | None


@dataclass
class PoolCounters:
    """What the pool counts as it goes (changed under its lock)."""

    restarts: int = 0
    scale_ups: int = 0
    scale_downs: int = 0
    recycled: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    protocol_errors: int = 0
    stale_replies: int = 0


@dataclass(frozen=True)
class PoolSnapshot:
    """The pool's counters at one moment (what ``Engine.metrics`` reports)."""

    workers: tuple[WorkerSnapshot, ...]
    queued: int
    inflight: int
    retries: int
    counters: PoolCounters


def next_deadline_in(live: list[WorkerHandle], idle: float) -> float:
    """Seconds until the first deadline of the tasks the ``live`` workers hold (``idle`` when
    none is nearer)."""
    now = time.monotonic()
    timeout = idle
    for worker in live:
        if worker.inflight:
            head = next(iter(worker.inflight.values()))
            timeout = min(timeout, worker.head_since + head.deadline_s - now)
    return max(timeout, 0.0)


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


def start_failure_reason(failures: int, last: WorkerHandle) -> str:
    """Why the engine gives up after ``failures`` workers in a row died while starting."""
    reason = (
        f"{failures} workers in a row died while starting; the last one "
        f"{describe_exit(last.process.exitcode)}"
    )
    if last.last_error:  # it sent its traceback: its last line says what went wrong
        return f"{reason} after: {last_line(last.last_error)}"
    return (
        f"{reason}. Workers start with 'spawn', which re-imports the main module: does it "
        f'guard its code with `if __name__ == "__main__":`?'
    )


class WorkerWatch:
    """Waits on every live worker's pipe and sentinel, and a wake-up pipe, at once.

    One epoll set for the life of the pool, changed only when workers come and go:
    ``multiprocessing.connection.wait`` builds and tears down a selector on every call, tens
    of microseconds a frame on the hot path. Only the manager thread waits; any thread wakes.
    """

    def __init__(self, context: multiprocessing.context.SpawnContext) -> None:
        self._wake_reader, self._wake_writer = context.Pipe(duplex=False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._wake_reader, selectors.EVENT_READ, None)
        self._watched: dict[int, tuple[int, int]] = {}  # id(handle) -> its registered fds

    def wake(self) -> None:
        """From any thread: make the current (or next) :meth:`wait` return."""
        try:
            self._wake_writer.send_bytes(b"wake")
        except OSError:
            pass

    def watch(self, live: list[WorkerHandle]) -> None:
        """Watch exactly the pipes and sentinels of ``live``.

        Entries are dropped by file descriptor number, recorded when registered: a dead
        worker's pipe is closed by then, and its number may already belong to its replacement.
        """
        wanted = {id(w): w for w in live}
        for key in [k for k in self._watched if k not in wanted]:
            for fd in self._watched.pop(key):
                try:
                    self._selector.unregister(fd)
                except (KeyError, ValueError):
                    pass
        for key, worker in wanted.items():
            if key not in self._watched:
                conn_fd, sentinel_fd = worker.conn.fileno(), worker.process.sentinel
                self._selector.register(conn_fd, selectors.EVENT_READ, ("result", worker))
                self._selector.register(sentinel_fd, selectors.EVENT_READ, ("death", worker))
                self._watched[key] = (conn_fd, sentinel_fd)

    def wait(self, timeout: float) -> tuple[list[WorkerHandle], list[WorkerHandle]]:
        """Workers with a message to read, and workers whose process ended."""
        results, deaths = [], []
        for key, _ in self._selector.select(timeout):
            if key.data is None:
                self._drain_wake_pipe()
            elif key.data[0] == "result":
                results.append(key.data[1])
            else:
                deaths.append(key.data[1])
        return results, deaths

    def _drain_wake_pipe(self) -> None:
        try:
            while self._wake_reader.poll():
                self._wake_reader.recv_bytes()
        except (EOFError, OSError):
            pass

    def close(self) -> None:
        self._selector.close()
        self._wake_reader.close()
        self._wake_writer.close()
