"""What the pool dispatches: typed tasks, each knowing its message and whether it may retry.

Two kinds, one type each (no field changes meaning by sentinel):

- :class:`RenderTask` composites rows of one slot of the ring (a frame, or a band of one).
- :class:`TransformTask` writes one transformed picture into a new source
  (``Engine.transform``).

The pool sees only the :class:`Task` surface: an id, attempts, a deadline, whether a retry can
still give the right picture, and the bytes to send. Whoever made the task (the engine's jobs)
hears of its fate through the pool's ``TaskListener``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, Protocol

import numpy as np

from framering import protocol

if TYPE_CHECKING:
    from framering.scheduler import Flow

_NO_TRANSFORMS: Final = np.zeros(0, protocol.TRANSFORM_RECORD)


class TaskListener(Protocol):
    """Who hears of a task's fate (its job), from whichever thread moved the task on: the
    pool's manager thread mostly, a caller's thread when its own ``submit`` dispatched it.

    ``task_dispatched`` and ``task_requeued`` are called with the pool's lock held, so that
    the slot states they record follow the real order of events; they must only record (no
    locks, no blocking). ``task_done`` and ``task_failed`` are called without it, at most
    once between them for a task the pool accepted.
    """

    def task_dispatched(self, task: Task) -> None: ...
    def task_requeued(self, task: Task) -> None: ...
    def task_done(self, task: Task, worker_ns: int) -> None: ...
    def task_failed(self, task: Task, cause: str) -> None: ...


@dataclass(eq=False, kw_only=True)
class Task:
    """The part of a task the pool reads and writes."""

    id: int
    deadline_s: float
    """Seconds a worker may hold the task before it is taken as hung and killed."""
    listener: TaskListener
    """The task's job: told when it is dispatched, requeued, done or failed."""
    attempts: int = 0
    """Times the task was dispatched (the one in flight included)."""
    submitted_ns: int = field(default_factory=time.perf_counter_ns)
    last_cause: str = ""
    """Why the last attempt failed (a dead worker's exit, a traceback)."""
    flow: Flow | None = None
    """The stream whose share of the pool the task uses (None: the default stream's)."""
    tick: float | None = None
    """``time.perf_counter()`` by which a paced frame is due: served earliest first."""
    spread: bool = False
    """One of several bands of a frame: it takes a worker of its own, never a place queued
    behind a busy worker's tasks (``scheduler``'s packing)."""
    charged_ns: float | None = None
    """Worker time the scheduler charged its flow at dispatch, until the measured time
    replaces it (``FairScheduler.charge``)."""

    @property
    def retryable(self) -> bool:
        """A failed or lost attempt may be made again and still give the right result."""
        return True

    @property
    def pixels(self) -> int:
        """Output pixels the task writes, by which its cost is estimated (0: unknown)."""
        return 0

    def encode(self) -> bytes:
        """The message that hands the current attempt to a worker."""
        raise NotImplementedError


@dataclass(eq=False, kw_only=True)
class RenderTask(Task):
    """Composite the boxes ``boxes`` of slot ``slot`` from layer records."""

    slot: int
    records: np.ndarray
    boxes: np.ndarray
    """(k, 4) x0, y0, x1, y1: the whole frame, or the damage since the slot's last frame."""
    transforms: np.ndarray = field(default_factory=lambda: _NO_TRANSFORMS)
    clear: bool = True
    write_frame: bool = True

    def __post_init__(self) -> None:
        # counted once: the scheduler asks at dispatch, at completion and for pressure
        self._pixels = sum((x1 - x0) * (y1 - y0) for x0, y0, x1, y1 in self.boxes.tolist())

    @property
    def pixels(self) -> int:
        return self._pixels

    @property
    def retryable(self) -> bool:
        # composited over the slot's previous content (clear=False): once a worker may have
        # half overwritten it, no retry can give the right picture
        return self.clear

    def encode(self) -> bytes:
        return protocol.encode_render(
            self.id,
            self.attempts,
            self.slot,
            self.clear,
            self.boxes,
            self.records,
            self.transforms,
            self.write_frame,
        )


@dataclass(eq=False, kw_only=True)
class TransformTask(Task):
    """Transform the picture of one layer record into source ``target``'s buffer."""

    target: int
    record: np.ndarray  # LAYER_RECORD array of one
    transform: np.ndarray  # TRANSFORM_RECORD array of one

    def encode(self) -> bytes:
        return protocol.encode_transform(
            self.id, self.attempts, self.target, self.record[0], self.transform[0]
        )
