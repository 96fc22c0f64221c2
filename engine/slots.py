"""FrameSlot: the handle a live loop holds for one frame, from acquire to release."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Protocol

import numpy as np

from framering.errors import (
    EngineClosedError,
    ForeignObjectError,
    FrameFailedError,
    SlotStateError,
    WaitTimeoutError,
)
from framering.lifetime import not_picklable
from framering.ring import SlotState
from framering.validation import check_timeout

if TYPE_CHECKING:
    from framering.frames import FrameRecord, FrameTable
    from framering.layer import Layer


class Submit(Protocol):
    """What a slot's :meth:`FrameSlot.submit` hands its frame to (the engine's jobs)."""

    def __call__(
        self,
        slot: FrameSlot,
        layers: Sequence[Layer],
        deadline: float | None,
        clear: bool,
        keep_rgba: bool,
        tick: float | None,
    ) -> None: ...


class FrameSlot:
    """One slot of the frame ring, held for one frame.

    Life of a slot: ``eng.acquire()`` -> :meth:`submit` -> :meth:`wait` (read the frame in
    place, hand it to an encoder) -> :meth:`release`. ``with eng.acquire() as slot:`` releases
    on leaving the block. A handle is good for one frame: after release it refuses every call.
    """

    def __init__(
        self, table: FrameTable, index: int, sequence: int, record: FrameRecord, submit: Submit
    ) -> None:
        self._table = table
        self._record = record  # written by the table only
        self._submit = submit
        self.index = index
        """Position of the slot in the ring."""
        self.sequence = sequence
        """Frame sequence number, unique per engine, increasing with every acquire."""

    def __reduce__(self) -> str:
        raise not_picklable(self)

    def __repr__(self) -> str:
        if self._record.released:
            state = "released"
        elif self._table.lifetime.closed:
            state = "engine closed"
        else:
            state = self.state.name
        return f"FrameSlot(index={self.index}, sequence={self.sequence}, {state})"

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the frame."""
        return (self._table.ring.width, self._table.ring.height)

    @property
    def submitted_ns(self) -> int:
        """``time.perf_counter_ns()`` when the frame was submitted (0 before)."""
        return self._record.submitted_ns

    @property
    def finished_ns(self) -> int:
        """``time.perf_counter_ns()`` when the frame was finished or failed (0 before)."""
        return self._record.finished_ns

    @property
    def kernel_ns(self) -> int:
        """Nanoseconds the worker spent on the frame: its transforms, conversions and the
        compositing kernel (not the trip through the pipes)."""
        return self._record.worker_ns

    @property
    def failed(self) -> bool:
        """True once the frame failed (every attempt, or the engine closed): :meth:`wait`
        raises why."""
        return self._record.done.is_set() and self._record.failure is not None

    @property
    def released(self) -> bool:
        """True once :meth:`release` was called (the handle refuses every call then)."""
        return self._record.released

    @property
    def state(self) -> SlotState:
        """Where the frame is now (see ``framering.ring`` for the state diagram)."""
        if self._record.released:
            return SlotState.FREE
        return self._table.state(self)

    @property
    def done(self) -> bool:
        """True once the frame finished or failed: :meth:`wait` will not block."""
        return self._record.done.is_set()

    def submit(
        self,
        layers: Sequence[Layer],
        *,
        deadline: float | None = None,
        clear: bool = True,
        keep_rgba: bool = False,
        tick: float | None = None,
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
            tick: the ``time.perf_counter()`` by which the frame is due, for a live loop on
                its own clock (``stream()`` gives every frame its tick). Frames with a tick
                are composited earliest tick first, ahead of frames without one, whichever
                stream they belong to; frames without a tick share the rest by the
                streams' weights.
        """
        self._check_usable("submit to")
        if self._record.submitted:
            raise SlotStateError(f"{self!r} was already submitted; acquire another slot")
        self._submit(self, layers, deadline, clear, keep_rgba, tick)

    def wait(self, timeout: float | None = None, *, writable: bool = False) -> np.ndarray:
        """Block until the frame is finished; return it as a view into shared memory.

        The view (``(height, width, 4)`` uint8 for rgba, the delivery format's shape
        otherwise) is valid until :meth:`release`: read it, hand it to an encoder, copy it if
        it must outlive the slot. It is read-only, because the slot keeps its picture for its
        next frame, which only recomposites what changed (damage tracking): writing into it
        raises numpy's ``ValueError: assignment destination is read-only``. To draw on the
        frame in place, ask for ``writable=True``; the slot's next frame is then composited
        whole.

        Raises:
            WaitTimeoutError: not finished within ``timeout`` seconds (it keeps rendering).
            FrameFailedError: the frame failed every attempt (``cause`` says why).
            SlotStateError: nothing was submitted, or the slot was released.
            EngineClosedError: the engine closed before the frame finished.
        """
        self._check_usable("wait for")
        record = self._record
        if not record.submitted:
            raise SlotStateError(f"{self!r}: wait() before submit()")
        if not record.done.wait(check_timeout(timeout)):
            raise WaitTimeoutError(f"{self!r} not finished within {timeout} s")
        if record.failure is not None:
            raise record.failure
        return self._table.delivered(self, writable)

    async def wait_async(
        self, timeout: float | None = None, *, writable: bool = False
    ) -> np.ndarray:
        """:meth:`wait` for asyncio: the event loop is woken by the engine, nothing polls."""
        self._check_usable("wait for")
        if not self._record.submitted:
            raise SlotStateError(f"{self!r}: wait_async() before submit()")
        bridge = self._table.bridge()
        try:
            done = self._record.done.is_set
            await asyncio.wait_for(bridge.wait_for(done), check_timeout(timeout))
        except TimeoutError:
            raise WaitTimeoutError(f"{self!r} not finished within {timeout} s") from None
        return self.wait(0, writable=writable)

    def try_wait(self, *, writable: bool = False) -> np.ndarray | None:
        """The finished frame (as :meth:`wait` gives it), or None if it is not finished yet
        (never blocks)."""
        self._check_usable("wait for")
        if not self._record.submitted:
            raise SlotStateError(f"{self!r}: try_wait() before submit()")
        if not self._record.done.is_set():
            return None
        return self.wait(0, writable=writable)

    def release(self) -> None:
        """Give the slot back to the ring. A frame still in flight is released when it ends."""
        if self._record.released:
            raise SlotStateError(f"{self!r} was released twice")
        self._table.release(self)

    def __enter__(self) -> FrameSlot:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._record.released:
            return
        try:
            self.release()
        except EngineClosedError:
            pass  # closing the engine released everything already

    def _check_usable(self, action: str) -> None:
        if self._record.released:
            raise SlotStateError(f"cannot {action} {self!r}: it was released")
        self._table.lifetime.check_open()

    def picture_version(self) -> int:
        """The version of its picture a layer showing this frame is packed with
        (``FrameTable.picture_version``)."""
        return self._table.picture_version(self)

    def check_readable(self, token: str, what: str) -> None:
        """Raise unless this is a finished frame of engine ``token`` that a layer (or a
        transform) can read: submitted, finished, not failed, not released, RGBA kept."""
        if self._table.token != token:
            raise ForeignObjectError(f"{what} {self!r} belongs to another engine")
        record = self._record
        if record.released or not record.submitted or not record.done.is_set():
            raise SlotStateError(
                f"{what} {self!r} is not a finished frame: submit it and wait() for it before "
                f"using it as a layer, and do not release it"
            )
        if record.failure is not None:
            raise SlotStateError(f"{what} {self!r} failed; it has no picture to show")
        if not record.rgba_kept:
            raise SlotStateError(
                f"{what} {self!r} was delivered in {self._table.ring.format.value} only; "
                f"submit it with keep_rgba=True to show it as a layer"
            )


def frame_failed(slot: FrameSlot, cause: str, attempts: int) -> FrameFailedError:
    return FrameFailedError(
        f"frame {slot.sequence} (slot {slot.index}) failed after {attempts} attempt(s): {cause}",
        cause=cause,
        attempts=attempts,
    )
