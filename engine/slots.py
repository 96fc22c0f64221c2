"""FrameSlot: the handle a live loop holds for one frame, from acquire to release."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from types import TracebackType
from typing import TYPE_CHECKING

import numpy as np

from framering.errors import EngineClosedError, FrameFailedError, SlotStateError, WaitTimeoutError
from framering.ring import SlotState
from framering.validation import check_timeout

if TYPE_CHECKING:
    from framering.engine import Engine
    from framering.layer import Layer
    from framering.sources import LiveSource, Source


class FrameSlot:
    """One slot of the frame ring, held for one frame.

    Life of a slot: ``eng.acquire()`` -> :meth:`submit` -> :meth:`wait` (read the frame in
    place, hand it to an encoder) -> :meth:`release`. ``with eng.acquire() as slot:`` releases
    on leaving the block. A handle is good for one frame: after release it refuses every call.
    """

    def __init__(self, engine: Engine, index: int, sequence: int) -> None:
        self._engine = engine
        self.index = index
        """Position of the slot in the ring."""
        self.sequence = sequence
        """Frame sequence number, unique per engine, increasing with every acquire."""
        self._done = threading.Event()
        self._released = False
        self._release_when_done = False
        self._submitted = False
        self._failure: BaseException | None = None
        self._pins: list[tuple[Source | LiveSource, int]] = []
        self._reads: tuple[FrameSlot, ...] = ()  # finished frames this frame reads as layers
        self._readers = 0  # frames in flight reading this one as a layer (it stays unfreed)
        self._rgba_kept = True  # the slot's RGBA area holds this frame (readable as a layer)
        self.submitted_ns = 0
        """``time.perf_counter_ns()`` when the frame was submitted (0 before)."""
        self.finished_ns = 0
        """``time.perf_counter_ns()`` when the frame was finished or failed (0 before)."""
        self.kernel_ns = 0
        """Nanoseconds the worker spent on the frame: its transforms, conversions and the
        compositing kernel (not the trip through the pipes)."""

    def __repr__(self) -> str:
        if self._released:
            state = "released"
        elif self._engine.closed:
            state = "engine closed"
        else:
            state = self.state.name
        return f"FrameSlot(index={self.index}, sequence={self.sequence}, {state})"

    @property
    def state(self) -> SlotState:
        """Where the frame is now (see ``framering.ring`` for the state diagram)."""
        if self._released:
            return SlotState.FREE
        self._engine._check_open()
        return self._engine._ring.state(self.index)

    @property
    def done(self) -> bool:
        """True once the frame finished or failed: :meth:`wait` will not block."""
        return self._done.is_set()

    def submit(
        self,
        layers: Sequence[Layer],
        *,
        deadline: float | None = None,
        clear: bool = True,
        keep_rgba: bool = False,
    ) -> None:
        """Send the layer stack (bottom first) to be composited into this slot.

        Args:
            layers: the frame's layers; validated here, in the caller's process.
            deadline: seconds a worker may spend on this frame before it is killed and the
                frame retried (default: the engine's).
            clear: start from transparent black (the default). ``False`` composites over
                whatever the slot held, e.g. the previous frame rendered into it.
            keep_rgba: for an engine whose ``output`` is not ``rgba``: also keep the frame's
                RGBA picture, so that it can be a layer of another frame or be transformed.
                Without it the worker writes only the delivery format (less memory traffic).
                Ignored for ``rgba`` engines, whose frames are RGBA.
        """
        self._engine._submit(self, layers, deadline, clear, keep_rgba)

    def wait(self, timeout: float | None = None) -> np.ndarray:
        """Block until the frame is finished; return it as a view into shared memory.

        The (height, width, 4) uint8 view is valid until :meth:`release`: read it, hand it to
        an encoder, copy it if it must outlive the slot.

        Raises:
            WaitTimeoutError: not finished within ``timeout`` seconds (it keeps rendering).
            FrameFailedError: the frame failed every attempt (``cause`` says why).
            SlotStateError: nothing was submitted, or the slot was released.
            EngineClosedError: the engine closed before the frame finished.
        """
        self._check_usable("wait for")
        if not self._submitted:
            raise SlotStateError(f"{self!r}: wait() before submit()")
        if not self._done.wait(check_timeout(timeout)):
            raise WaitTimeoutError(f"{self!r} not finished within {timeout} s")
        if self._failure is not None:
            raise self._failure
        return self._engine._ring.delivered(self.index)

    async def wait_async(self, timeout: float | None = None) -> np.ndarray:
        """:meth:`wait` for asyncio: the event loop is woken by the engine, nothing polls."""
        self._check_usable("wait for")
        if not self._submitted:
            raise SlotStateError(f"{self!r}: wait_async() before submit()")
        bridge = self._engine._bridge()
        try:
            await asyncio.wait_for(bridge.wait_for(self._done.is_set), check_timeout(timeout))
        except TimeoutError:
            raise WaitTimeoutError(f"{self!r} not finished within {timeout} s") from None
        return self.wait(0)

    def try_wait(self) -> np.ndarray | None:
        """The finished frame, or None if it is not finished yet (never blocks)."""
        self._check_usable("wait for")
        if not self._submitted:
            raise SlotStateError(f"{self!r}: try_wait() before submit()")
        if not self._done.is_set():
            return None
        return self.wait(0)

    def release(self) -> None:
        """Give the slot back to the ring. A frame still in flight is released when it ends."""
        if self._released:
            raise SlotStateError(f"{self!r} was released twice")
        self._engine._release(self)

    def __enter__(self) -> FrameSlot:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._released:
            return
        try:
            self.release()
        except EngineClosedError:
            pass  # closing the engine released everything already

    def _check_usable(self, action: str) -> None:
        if self._released:
            raise SlotStateError(f"cannot {action} {self!r}: it was released")
        self._engine._check_open()

    def _finish(self, failure: BaseException | None, finished_ns: int) -> None:
        """Called by the engine, under its lock, when the frame ends."""
        self._failure = failure
        self.finished_ns = finished_ns
        self._done.set()


def frame_failed(slot: FrameSlot, cause: str, attempts: int) -> FrameFailedError:
    return FrameFailedError(
        f"frame {slot.sequence} (slot {slot.index}) failed after {attempts} attempt(s): {cause}",
        cause=cause,
        attempts=attempts,
    )
