"""Paced, in-order output: frames on a fixed clock, and what to do when one is late.

A live loop wants frame ``i`` at ``start + i / fps``. ``Engine.stream`` submits each frame
with its tick, a little ahead of it (at most ``inflight`` at once), and hands them over in
order on that clock. How far ahead adapts to the stream's own latency: a frame that finished
with time to spare moves the next submissions later, a late one moves them earlier. Frames
submitted just in time hold few slots, and never wait behind work that is not due yet
(the pool serves ticks earliest first). When a frame is not finished by its tick, the policy
decides:

- ``drop``: skip the tick; the late frame is thrown away when it finishes. Frames whose tick
  has already passed are not even submitted, so overload never builds a queue and latency
  stays bounded.
- ``repeat``: emit the previous frame again at that tick (``repeated=True``), and throw the
  late one away.
- ``block``: wait for the late frame and shift the clock by the delay (nothing is lost, the
  stream runs slower).

A frame that failed every attempt (``FrameFailedError``) is handled like a late one under
``drop`` and ``repeat``: its tick is dropped (or shows the previous frame), it counts in
``frames_failed`` and ``stream_dropped`` (or ``stream_repeated``), and the stream goes on.
Under ``block``, which promises every frame, the error is raised.

A yielded :class:`StreamFrame`'s pixels are a read-only view into shared memory, valid until
the next frame is requested: encode or copy it before asking for the next (read-only because
its slot keeps the picture for damage tracking, see ``FrameSlot.wait``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import statistics
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Final, Literal, Protocol

import numpy as np

from framering.errors import EngineBrokenError, EngineClosedError, InvalidValueError
from framering.layer import Layer
from framering.metrics import Recorder
from framering.slots import FrameSlot
from framering.validation import check_count, check_fps

Policy = Literal["drop", "repeat", "block"]
POLICIES: Final = ("drop", "repeat", "block")
# Longest a `block` stream waits for one late frame before it gives up with an error.
BLOCK_LIMIT_S: Final = 30.0
# Recent frames whose submit-to-done time says which ticks are too near to be worth
# compositing (``drop``, ``repeat``). Small, so the stream adapts within a fraction of a second
# when the load changes.
LATENCY_WINDOW: Final = 8
# How long before its tick a frame should finish: the margin added to the slowest recent
# frame's latency to decide how far ahead to submit, a share of the interval with a floor for
# the machine's scheduling noise.
SLACK_SHARE: Final = 0.5
MIN_SLACK_S: Final = 0.004
# A warning is logged when at least MISS_WARN_SHARE of the last MISS_WINDOW ticks were missed
# (late, dropped or failed), at most once per MISS_WARN_EVERY_S for a stream.
MISS_WINDOW: Final = 60
MISS_WARN_SHARE: Final = 0.1
MISS_WARN_EVERY_S: Final = 10.0

log = logging.getLogger("framering")

Scene = Callable[[float, int], Sequence[Layer]]


@dataclass(frozen=True)
class StreamFrame:
    """One delivered frame. Times are ``time.perf_counter_ns()`` values."""

    pixels: np.ndarray
    """Read-only view into shared memory in the engine's output format, valid until the next
    frame."""
    index: int
    """Frame (tick) number from 0."""
    pts: float
    """Presentation time in seconds from the start of the stream (``index / fps``)."""
    submitted_ns: int
    finished_ns: int
    delivered_ns: int
    repeated: bool = False
    """True when this is the previous frame shown again (``repeat`` policy)."""


class SlotSource(Protocol):
    """Where a stream takes its slots from (the engine's frame table)."""

    slots: int

    def try_acquire(self) -> FrameSlot | None: ...
    def acquire(self, timeout: float | None = None) -> FrameSlot: ...
    async def until_free(self) -> None: ...


class StreamClock:
    """The stream's schedule, and the bookkeeping shared by the sync and async drivers."""

    def __init__(
        self,
        source: SlotSource,
        recorder: Recorder,
        workers: int,
        scene: Scene,
        fps: float,
        inflight: int | None,
        policy: str,
        frames: int | None,
        name: str = "default",
    ) -> None:
        fps = check_fps(fps)
        if policy not in POLICIES:
            raise InvalidValueError(f"policy must be one of {', '.join(POLICIES)}, not {policy!r}")
        if not callable(scene):
            raise InvalidValueError("scene must be a callable scene(t, index) -> layers")
        inflight = check_count(inflight, "inflight", 1)
        frames = check_count(frames, "frames", 0)
        default = min(source.slots - 1, 2 * max(workers, 1) + 1)
        self.inflight = max(1, min(source.slots - 1, inflight or default))
        self.name = name
        self.source = source
        self.recorder = recorder
        self.scene = scene
        self.interval = 1.0 / fps
        self.policy = policy
        self.frames = frames
        self.start = math.inf  # the first tick: set by begin()
        self.running = False
        """Between :meth:`begin` and :meth:`close`: the loop holds slots and wants more."""
        self.submit_next = 0  # next tick to submit
        # frames submitted, in tick order; None: a tick skipped under ``repeat``, which shows
        # the previous frame again when it comes
        self.pending: deque[tuple[int, FrameSlot | None]] = deque()
        # Recent submit-to-done times (a late frame counts with how long it had by its tick):
        # a frame is only submitted for a tick at least that far ahead, so under overload the
        # stream composites the frames it can deliver instead of ones it will throw away.
        self.recent: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self.previous: StreamFrame | None = None
        self.previous_slot: FrameSlot | None = None
        self.slack = max(MIN_SLACK_S, SLACK_SHARE * self.interval)
        self.starved = False  # the last submit_ahead found no slot it could take
        self.misses: deque[bool] = deque(maxlen=MISS_WINDOW)
        self.warned_at = -math.inf

    def begin(self) -> None:
        """Start the schedule: the first tick is one frame from now. Called by the driver
        at its first step, not when the stream is made, so that time between making the
        iterator and asking it for a frame is not counted as missed ticks."""
        self.start = time.perf_counter() + self.interval
        self.running = True

    def tick(self, index: int) -> float:
        return self.start + index * self.interval

    def ahead(self) -> float:
        """How long before its tick a frame is submitted: as long as the slowest of the last
        few frames took, plus a margin; two intervals until the first frames say. (Stable:
        frames served earliest tick first wait only behind frames due before them, so
        submitting earlier does not make the next frames slower.)"""
        if not self.recent:
            return min(self.inflight, 2) * self.interval
        return min(self.inflight * self.interval, max(self.recent) + self.slack)

    def next_submit_at(self) -> float:
        """``time.perf_counter()`` when the next frame is due to be submitted (infinity when
        none can be: all submitted, ``inflight`` pending, or no slot free for it)."""
        if (
            self.starved
            or len(self.pending) >= self.inflight
            or (self.frames is not None and self.submit_next >= self.frames)
        ):
            return math.inf
        return self.tick(self.submit_next) - self.ahead()

    def settled(self, missed: bool) -> None:
        """A tick was served (``missed``: late, dropped or failed): warn when the stream keeps
        missing ticks."""
        self.misses.append(missed)
        if missed and len(self.misses) == MISS_WINDOW:
            count = sum(self.misses)
            now = time.monotonic()
            if count >= MISS_WARN_SHARE * MISS_WINDOW and now - self.warned_at >= (
                MISS_WARN_EVERY_S
            ):
                self.warned_at = now
                log.warning(
                    "stream %r missed %d of its last %d ticks at %.4g fps (policy %s): the "
                    "workers cannot keep up with every stream's frames",
                    self.name,
                    count,
                    MISS_WINDOW,
                    1 / self.interval,
                    self.policy,
                )

    def finished(self) -> bool:
        """Every tick of a bounded stream was submitted (or skipped) and handed on."""
        return self.frames is not None and self.submit_next >= self.frames and not self.pending

    def submit_ahead(self, blocking: bool = True) -> None:
        """Submit the frames whose time to be submitted has come while there is room; skip
        ticks already past."""
        recorder = self.recorder
        self.starved = False
        while len(self.pending) < self.inflight and (
            self.frames is None or self.submit_next < self.frames
        ):
            index = self.submit_next
            now = time.perf_counter()
            tick = self.tick(index)
            if tick - self.ahead() > now:
                return  # not due yet: the driver wakes for it (next_submit_at)
            # under drop and repeat, a tick nearer than a typical frame takes is not worth
            # compositing: under overload the stream sheds frames instead of building a queue
            # (never more than a frame submitted on time has left: after an overload the
            # recent latencies are long, and the stream must still try the next frame)
            lead = statistics.median(self.recent) if self.recent else 0.0
            lead = min(lead, self.ahead() - self.slack)
            if self.policy != "block" and tick < now + lead:
                self.submit_next += 1  # too late to be worth compositing
                if self.policy == "repeat" and (self.previous_slot is not None or self.pending):
                    self.pending.append((index, None))  # its tick shows the frame before
                else:
                    recorder.stream_event("dropped")
                    self.settled(missed=True)
                continue
            slot = self.source.try_acquire()
            if slot is None:
                if self.pending or not blocking:
                    self.starved = True
                    return  # delivering frees one (or the async driver awaits one)
                slot = self.source.acquire(timeout=BLOCK_LIMIT_S)
            try:
                slot.submit(self.scene(index * self.interval, index), tick=tick)
            except BaseException:
                slot.release()  # the scene or its layers failed: the slot goes back
                raise
            self.pending.append((index, slot))
            self.submit_next += 1

    def deliver(self, index: int, slot: FrameSlot, repeated: bool = False) -> StreamFrame:
        now = time.perf_counter_ns()
        if not repeated:
            self.recent.append((slot.finished_ns - slot.submitted_ns) / 1e9)
        frame = StreamFrame(
            slot.wait(0),
            index,
            index * self.interval,
            slot.submitted_ns,
            slot.finished_ns,
            now,
            repeated,
        )
        self.recorder.stream_delivery((now / 1e9) - self.tick(index))
        if self.previous_slot is not None and self.previous_slot is not slot:
            self.previous_slot.release()
        self.previous_slot = slot
        self.previous = frame
        return frame

    def late(self, index: int, slot: FrameSlot) -> StreamFrame | None:
        """The frame for ``index`` missed its tick: apply the policy (not ``block``)."""
        self.recorder.stream_event("late")
        self.recent.append(time.perf_counter() - slot.submitted_ns / 1e9)  # and counting
        return self.missed(index, slot)

    def missed(self, index: int, slot: FrameSlot) -> StreamFrame | None:
        """No frame for ``index`` (late, or failed every attempt): drop the tick, or show
        the previous frame again under ``repeat``; the stream goes on either way."""
        slot.release()  # a late one is thrown away when it finishes
        if self.policy == "repeat" and self.previous is not None and self.previous_slot:
            self.recorder.stream_event("repeated")
            return self.deliver(index, self.previous_slot, repeated=True)
        self.recorder.stream_event("dropped")
        return None

    def hand_over(self) -> StreamFrame | None:
        """The head frame's tick has come: deliver it, or apply the policy if it is late.

        With ``block`` the driver has waited for the frame already; a delay of more than half
        a frame shifts the clock.
        """
        index, slot = self.pending.popleft()
        if slot is None:  # skipped under repeat: the previous frame again, if it is still held
            self.settled(missed=True)
            if self.previous_slot is not None and not self.previous_slot.released:
                self.recorder.stream_event("repeated")
                return self.deliver(index, self.previous_slot, repeated=True)
            self.recorder.stream_event("dropped")
            return None
        if self.policy == "block":
            lag = time.perf_counter() - self.tick(index)
            self.settled(lag > self.interval / 2)
            if lag > self.interval / 2:
                self.recorder.stream_event("late")
                self.start += lag  # shift the clock
            return self.deliver(index, slot)
        done = slot.done  # before failed: a failure is set before done, never after
        if slot.failed:  # counted in frames_failed; a live stream goes on without it
            self.settled(missed=True)
            return self.missed(index, slot)
        if done:
            self.settled(missed=False)
            return self.deliver(index, slot)
        self.settled(missed=True)
        return self.late(index, slot)

    def close(self) -> None:
        """Give back every slot the stream holds. Quietly once the engine is closed or
        broken, which let go of every slot already (an ``astream`` left with ``break`` is
        closed by the event loop, often after the engine)."""
        self.running = False
        slots = [slot for _, slot in self.pending if slot is not None]
        if self.previous_slot is not None:
            slots.append(self.previous_slot)
        self.pending.clear()
        self.previous_slot = None
        for slot in slots:
            if not slot.released:
                with contextlib.suppress(EngineClosedError, EngineBrokenError):
                    slot.release()


def stream_frames(clock: StreamClock) -> Iterator[StreamFrame]:
    """The synchronous driver of a :class:`StreamClock` (``Engine.stream``): it sleeps until
    the head frame's tick or the next frame's time to be submitted, whichever comes first."""
    clock.begin()
    try:
        while not clock.finished():
            clock.submit_ahead()
            now = time.perf_counter()
            if not clock.pending:
                wake = clock.next_submit_at()
                if wake > now and wake != math.inf:
                    time.sleep(wake - now)
                continue
            index, slot = clock.pending[0]
            tick = clock.tick(index)
            wake = min(tick, clock.next_submit_at())
            if wake > now:
                time.sleep(wake - now)  # deliver on the tick, not before
            if tick > time.perf_counter():
                continue  # woke to submit the next frame
            if clock.policy == "block":
                slot.wait(BLOCK_LIMIT_S)
            frame = clock.hand_over()
            if frame is not None:
                yield frame
    finally:
        clock.close()


async def astream_frames(clock: StreamClock) -> AsyncIterator[StreamFrame]:
    """The asyncio driver (``Engine.astream``): the same clock and policies, with
    ``asyncio.sleep`` for ticks and the engine's event-loop bridge for free slots."""
    clock.begin()
    try:
        while not clock.finished():
            clock.submit_ahead(blocking=False)
            now = time.perf_counter()
            if not clock.pending:
                if clock.starved:
                    await clock.source.until_free()
                else:
                    wake = clock.next_submit_at()
                    if wake > now and wake != math.inf:
                        await asyncio.sleep(wake - now)
                continue
            index, slot = clock.pending[0]
            tick = clock.tick(index)
            wake = min(tick, clock.next_submit_at())
            if wake > now:
                await asyncio.sleep(wake - now)
            if tick > time.perf_counter():
                continue
            if clock.policy == "block":
                await slot.wait_async(BLOCK_LIMIT_S)
            frame = clock.hand_over()
            if frame is not None:
                yield frame
    finally:
        clock.close()
