"""Streams: many live streams on one engine, each with its own slots, share and figures.

A :class:`Stream` is what ``Engine.open_stream`` returns. It has the frame-slot API and the
live loop of the engine itself, on its own terms:

- **slots**: it takes slots on its own account (``framering.reservations``): the slots it
  reserved are always there for it, and it borrows idle unreserved ones only in ways that
  cannot starve another stream;
- **workers**: its frames are scheduled in its own flow (``framering.scheduler``): paced
  frames by their tick, earliest first, and the rest shared by weight;
- **figures**: its own recorder, which also counts for the engine's.

The engine's own ``acquire()`` and ``stream()`` are those of its default stream, named
``"default"``, which reserves nothing.
"""

from __future__ import annotations

import weakref
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Final

import numpy as np

from framering.clock import Policy, Scene, StreamClock, StreamFrame, astream_frames, stream_frames
from framering.errors import InvalidValueError, SlotStateError
from framering.frames import FrameTable
from framering.layer import Layer
from framering.lifetime import Lifetime, not_picklable
from framering.metrics import Recorder, StreamMetrics, stream_snapshot
from framering.reservations import SlotAccount
from framering.slots import FrameSlot
from framering.validation import check_timeout

# Slots a live loop (``stream()``) holds at least: the frame shown and the one rendering.
LIVE_LOOP_SLOTS: Final = 2


class Stream:
    """One live stream of an engine; see the module docstring (``Engine.open_stream``)."""

    def __init__(
        self,
        name: str,
        weight: float,
        frames: FrameTable,
        account: SlotAccount,
        recorder: Recorder,
        engine_recorder: Recorder,
        lifetime: Lifetime,
        workers: Callable[[], int],
        on_close: Callable[[Stream], None],
    ) -> None:
        self.name = name
        """Its name in ``Engine.metrics().streams`` and in the log."""
        self.weight = weight
        """Its share of the worker time left over by paced frames, against other streams'."""
        self._frames = frames
        self._account = account
        self._clocks: weakref.WeakSet[StreamClock] = weakref.WeakSet()
        self._recorder = recorder
        self._engine_recorder = engine_recorder
        self._lifetime = lifetime
        self._workers = workers
        self._on_close = on_close

    def __reduce__(self) -> str:
        raise not_picklable(self)

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"{self._account.held} slots held"
        return f"Stream({self.name!r}, weight={self.weight:g}, reserved={self.reserved}, {state})"

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def reserved(self) -> int:
        """Slots of the ring reserved for this stream."""
        return self._account.reserved

    @property
    def slots(self) -> int:
        """Most slots it could hold at once: its own and every slot nobody reserved."""
        others = sum(a.reserved for a in self._frames.accounts() if a is not self._account)
        return self._frames.slots - others

    @property
    def closed(self) -> bool:
        return self._account.closed or self._lifetime.closed

    def close(self) -> None:
        """End the stream: it takes no more slots, and its reservation goes back to the ring
        now (slots it still holds count as borrowed until released). Idempotent."""
        if self._account.closed:
            return
        self._frames.close_account(self._account)
        self._on_close(self)

    # ------------------------------------------------------------------ frames
    def try_acquire(self) -> FrameSlot | None:
        """A slot for this stream, or None if it may take none now (never blocks)."""
        return self._frames.try_acquire(self._account)

    def acquire(self, timeout: float | None = None) -> FrameSlot:
        """A slot for this stream; blocks while it may take none (``Engine.acquire``)."""
        return self._frames.acquire(timeout, self._account)

    async def acquire_async(self, timeout: float | None = None) -> FrameSlot:
        """:meth:`acquire` for asyncio."""
        return await self._frames.acquire_async(timeout, self._account)

    async def until_free(self) -> None:
        """Return once this stream may take a slot (for asyncio drivers)."""
        await self._frames.until_free(self._account)

    def render(self, layers: Sequence[Layer], timeout: float | None = 10.0) -> np.ndarray:
        """Composite one frame and return a copy of it (for one-off use and tests)."""
        timeout = check_timeout(timeout)
        with self.acquire(timeout) as slot:
            slot.submit(layers)
            return slot.wait(timeout).copy()

    def stream(
        self,
        scene: Scene,
        fps: float = 60.0,
        inflight: int | None = None,
        *,
        policy: Policy = "drop",
        frames: int | None = None,
    ) -> Iterator[StreamFrame]:
        """Frames of ``scene(t, index)`` in order, one per tick at ``fps`` (``Engine.stream``,
        on this stream's slots and share; see ``framering.clock``)."""
        return stream_frames(self._clock(scene, fps, inflight, policy, frames))

    def astream(
        self,
        scene: Scene,
        fps: float = 60.0,
        inflight: int | None = None,
        *,
        policy: Policy = "drop",
        frames: int | None = None,
    ) -> AsyncIterator[StreamFrame]:
        """:meth:`stream` for ``async for``."""
        return astream_frames(self._clock(scene, fps, inflight, policy, frames))

    def _clock(
        self, scene: Scene, fps: float, inflight: int | None, policy: str, frames: int | None
    ) -> StreamClock:
        self._lifetime.check_open()
        if self._account.closed:
            raise SlotStateError(f"stream {self.name!r} is closed")
        # a live loop holds the frame it shows while the next one renders: two slots it can
        # count on (its reservation; for the default stream, what nobody reserved)
        default = self._account is self._frames.default_account
        sure = self.slots if default else self.reserved
        if sure < LIVE_LOOP_SLOTS:
            raise InvalidValueError(
                f"stream {self.name!r} has {sure} slot(s) it can count on, and a live loop "
                f"needs {LIVE_LOOP_SLOTS} (one shown while the next renders): "
                + (
                    "reserve fewer slots for the other streams"
                    if default
                    else "open it with slots=2 or more"
                )
            )
        clock = StreamClock(
            self, self._recorder, self._workers(), scene, fps, inflight, policy, frames, self.name
        )
        self._clocks.add(clock)
        return clock

    @property
    def live_loops(self) -> int:
        """Its ``stream()`` and ``astream()`` loops running now (begun, not ended)."""
        return sum(1 for clock in list(self._clocks) if clock.running)

    # ------------------------------------------------------------------ figures
    def metrics(self) -> StreamMetrics:
        """A frozen snapshot of this stream's figures (see :class:`StreamMetrics`)."""
        return stream_snapshot(
            self.name,
            self.weight,
            self._recorder,
            self._engine_recorder,
            slots_held=self._account.held,
            slots_reserved=self._account.reserved,
        )
