"""The frame table: which slot of the ring is free, held, in flight or read as a layer.

Every change of a slot's state goes through here, so the ring's state table (what workers
check before writing), the caller's :class:`FrameSlot` handles and the free list never
disagree::

    free --try_acquire/acquire--> held --begin--> in flight --finish--> done (or failed)
      ^                             |                                       |
      +-------------- release ------+------------ release -----------------+
                      (deferred while the frame is in flight or read by frames in flight)

A finished frame shown as a layer of other frames (nesting) gets a reader per frame in flight
that reads it; it is freed only when it is released and its last reader ended.

Each slot is taken on a stream's :class:`SlotAccount`, under the rule of
``framering.reservations`` (reserved slots, and borrowing that never starves another stream).
Waiters for a slot queue in one line: a waiter goes when its stream may take a free slot and
nobody before it in line may.

The table holds one lock (a condition, which blocking ``acquire`` waits on) and the event-loop
bridge that wakes asyncio waiters after a release or a finished frame.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from framering.asyncio_bridge import AsyncBridge
from framering.damage import DamageTracker
from framering.errors import AcquireTimeoutError, ForeignObjectError, SlotStateError
from framering.free_slots import FreeSlots
from framering.lifetime import Lifetime
from framering.reservations import Reservations, SlotAccount
from framering.ring import FrameRing, SlotState
from framering.slots import FrameSlot, Submit
from framering.validation import check_timeout

# Longest single block of a DoneFlag wait: a frame is done far sooner, so this only bounds how
# long a waiter stranded by an interrupted one can sleep past the flag being set.
_WAIT_SLICE_S = 0.25


class DoneFlag:
    """Set once when a frame ends; any thread may wait for it.

    ``threading.Event``'s ``set``/``is_set``/``wait`` on one C lock, held from birth until
    the flag is set, instead of a Condition with Python-level waiter lists: a frame makes one
    and waits on it once, so this is the parent's per-frame cost (3.0 -> 0.35 us to make, set
    and wait, on this project's machines). Set only under the frame table's lock, so never
    twice at once."""

    __slots__ = ("_gate", "_set")

    def __init__(self) -> None:
        self._gate = threading.Lock()
        self._gate.acquire()
        self._set = False

    def set(self) -> None:
        if not self._set:
            self._set = True
            self._gate.release()

    def is_set(self) -> bool:
        return self._set

    def wait(self, timeout: float | None = None) -> bool:
        """True once set; False if ``timeout`` seconds passed first.

        Each waiter that gets the gate hands it on to the next. A waiter interrupted (Ctrl-C)
        just after getting it could leave it held, stranding the others, so a long wait is
        taken in slices of :data:`_WAIT_SLICE_S` that look at the flag itself in between.
        """
        if self._set:
            return True
        deadline = None if timeout is None else time.monotonic() + max(timeout, 0.0)
        while True:
            step = _WAIT_SLICE_S
            if deadline is not None:
                step = min(step, max(deadline - time.monotonic(), 0.0))
            acquired = False
            try:
                acquired = self._gate.acquire(timeout=step)
            finally:
                if acquired:
                    self._gate.release()  # the next waiter goes too
            if acquired or self._set or step < _WAIT_SLICE_S:
                return self._set


@dataclass(eq=False)
class FrameRecord:
    """What happened to one held slot's frame. Written by the :class:`FrameTable` only (under
    its lock); the slot's handle only reads it."""

    done: DoneFlag = field(default_factory=DoneFlag)
    submitted: bool = False
    released: bool = False
    release_when_done: bool = False
    failure: BaseException | None = None
    readers: int = 0
    """Frames in flight that read this one as a layer (it stays unfreed meanwhile)."""
    rgba_kept: bool = True
    """The slot's RGBA area holds this frame (it can be read as a layer)."""
    submitted_ns: int = 0
    finished_ns: int = 0
    worker_ns: int = 0
    account: SlotAccount | None = None
    """The stream that holds the slot."""
    picture_version: int = 0
    """What a layer showing this frame is packed with as its picture's version: equal
    versions, the same pixels (the damage tracker's layer keys and the workers' transform
    cache compare it). The frame's sequence, until it is handed out writable."""
    drawn_on: bool = False
    """Handed out writable: the caller may change its pixels at any time until it is
    released, so every read of it gets a new :attr:`picture_version`."""


@dataclass(eq=False)
class _Turn:
    """One blocked acquirer's place in line (compared by identity)."""

    account: SlotAccount


class FrameTable:
    """The slots of one ring and their frames; see the module docstring."""

    def __init__(
        self,
        ring: FrameRing,
        lifetime: Lifetime,
        token: str,
        submit: Submit,
        damage: DamageTracker,
    ) -> None:
        self.ring = ring
        self._damage = damage
        self.slots = ring.slots
        self.token = token
        """The engine's token: whose slots these are."""
        self._lifetime = lifetime
        self._lock = threading.Condition()
        self._sequence = itertools.count(1)
        self._free = FreeSlots(ring.slots)
        self._reservations = Reservations(ring.slots, submit)
        self.default_account = self._reservations.default
        """The default stream's account (``eng.acquire()``): it reserves nothing."""
        self._waiting: deque[_Turn] = deque()  # blocked acquirers, in the order they came
        self._held: dict[int, tuple[FrameSlot, FrameRecord]] = {}
        self._bridge: AsyncBridge | None = None
        self._closed = False
        lifetime.when_broken(self._wake_from_a_thread)

    def _wake_from_a_thread(self) -> None:
        """The engine broke: wake every waiter for a slot, which then raises
        ``EngineBrokenError`` (no slot will free: releasing raises too). From a thread of its
        own, as the caller holds the pool's lock and this takes the table's."""
        threading.Thread(target=self._wake_all, name="framering-woken", daemon=True).start()

    def _wake_all(self) -> None:
        with self._lock:
            self._lock.notify_all()
        self._notify_async()

    @property
    def lifetime(self) -> Lifetime:
        return self._lifetime

    # ------------------------------------------------------------------ streams
    def open_account(
        self, name: str, reserved: int, submit: Submit, keep_unreserved: int = 0
    ) -> SlotAccount:
        """A stream's account, reserving ``reserved`` slots and leaving ``keep_unreserved``
        to the default stream (``SlotReservationError`` if the ring cannot honour both)."""
        with self._lock:
            self._lifetime.check_open()
            return self._reservations.open(name, reserved, submit, keep_unreserved)

    def close_account(self, account: SlotAccount) -> None:
        """The stream closed: no more slots for it, and its reservation ends now."""
        with self._lock:
            self._reservations.close(account)
            self._free.forget(account)
            self._lock.notify_all()  # borrowers may take what it had reserved
            self._notify_async()

    def accounts(self) -> list[SlotAccount]:
        with self._lock:
            return self._reservations.accounts()

    # ------------------------------------------------------------------ taking and giving back
    def try_acquire(self, account: SlotAccount | None = None) -> FrameSlot | None:
        """A free slot for ``account`` (default: the default stream's), or None if it may
        take none now or a waiter before it may (never blocks)."""
        account = account or self.default_account
        with self._lock:
            self._check_account(account)
            if not self._my_turn(None, account):
                return None
            return self._take(account)

    def acquire(
        self, timeout: float | None = None, account: SlotAccount | None = None
    ) -> FrameSlot:
        """A free slot; blocks while ``account`` may take none (see ``Engine.acquire``).

        Waiters are served in the order they came (first come, first served) among those
        whose stream may take a slot: however many threads share the ring, none is starved by
        the others' quicker re-acquires."""
        account = account or self.default_account
        timeout = check_timeout(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            self._check_account(account)
            if self._my_turn(None, account):
                return self._take(account)
            entry = _Turn(account)
            self._waiting.append(entry)
            try:
                while True:
                    self._check_account(account)
                    if self._my_turn(entry, account):
                        self._leave_line(entry)
                        if self._waiting and self._free:
                            self._lock.notify_all()  # the next in line may go too
                        self._notify_async()  # an async acquirer behind it may go now
                        return self._take(account)
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        raise AcquireTimeoutError(self._busy_message(account, timeout))
                    self._lock.wait(remaining)
            finally:
                if self._leave_line(entry):  # timed out, interrupted or closed
                    self._lock.notify_all()
                    self._notify_async()  # an async acquirer may go now

    def _busy_message(self, account: SlotAccount, timeout: float | None) -> str:
        if account is self.default_account and self._reservations.reserved():
            return (
                f"no slot for the default stream within {timeout} s: it uses only what no "
                f"stream reserved ({self.slots - self._reservations.reserved()} of "
                f"{self.slots} slots), and those stayed busy"
            )
        return (
            f"all {self.slots} slots stayed busy for {timeout} s: frames are not released, "
            f"or are asked for faster than the workers composite them"
        )

    def _check_account(self, account: SlotAccount) -> None:
        """Lock held."""
        self._lifetime.check_open()
        if account.closed:
            raise SlotStateError(f"stream {account.name!r} is closed")

    def _my_turn(self, entry: _Turn | None, account: SlotAccount) -> bool:
        """Lock held. ``account`` may take a slot, and nobody ahead of ``entry`` in line may
        (None: not in line, so everybody in line is ahead)."""
        free = len(self._free)
        if not self._reservations.may_take(account, free):
            return False
        for waiter in self._waiting:
            if waiter is entry:
                return True
            if self._reservations.may_take(waiter.account, free):
                return False
        return True

    def _leave_line(self, entry: _Turn) -> bool:
        """Lock held. Take ``entry`` (by identity) out of the line; False if it is not in it."""
        for i, waiter in enumerate(self._waiting):
            if waiter is entry:
                del self._waiting[i]
                return True
        return False

    async def acquire_async(
        self, timeout: float | None = None, account: SlotAccount | None = None
    ) -> FrameSlot:
        """:meth:`acquire` for asyncio: awaits a free slot without blocking the loop."""
        timeout = check_timeout(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            slot = self.try_acquire(account)
            if slot is not None:
                return slot
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise AcquireTimeoutError(
                    self._busy_message(account or self.default_account, timeout)
                )
            try:
                await asyncio.wait_for(self.until_free(account), remaining)
            except TimeoutError:
                continue  # the loop head raises with the message

    async def until_free(self, account: SlotAccount | None = None) -> None:
        """Return once ``account`` may take a slot or the engine closed (for asyncio)."""
        account = account or self.default_account

        def ready() -> bool:
            with self._lock:
                return (
                    self._lifetime.closed
                    or self._lifetime.broken is not None
                    or account.closed
                    or self._my_turn(None, account)
                )

        await self.bridge().wait_for(ready)

    def _take(self, account: SlotAccount) -> FrameSlot:
        """Lock held; a slot is free."""
        index = self._free.take(account)
        record = FrameRecord(account=account)
        account.held += 1
        slot = FrameSlot(self, index, next(self._sequence), record, account.submit)
        record.picture_version = slot.sequence
        self._held[index] = (slot, record)
        self.ring.set_state(index, SlotState.ACQUIRED)
        self.ring.sequences[index] = slot.sequence
        return slot

    def release(self, slot: FrameSlot) -> None:
        """Give a slot back; a frame in flight, or read by frames in flight, goes when they end."""
        with self._lock:
            self._lifetime.check_open()
            record = self._record(slot)
            if record is None:
                raise ForeignObjectError(f"{slot!r} is not held from this engine")
            if record.released:
                raise SlotStateError(f"{slot!r} was released twice")
            record.released = True
            if (record.submitted and not record.done.is_set()) or record.readers:
                record.release_when_done = True
                return
            self._free_slot(slot)

    def _record(self, slot: FrameSlot) -> FrameRecord | None:
        """Lock held. The record of a slot this table holds, or None."""
        held = self._held.get(slot.index)
        return held[1] if held is not None and held[0] is slot else None

    def _free_slot(self, slot: FrameSlot) -> None:
        """Lock held."""
        record = self._held.pop(slot.index)[1]
        if record.account is not None:
            record.account.held -= 1
        if not self._closed:
            self.ring.set_state(slot.index, SlotState.FREE)
        self._free.give(slot.index, record.account)
        self._lock.notify_all()
        self._notify_async()

    def _free_if_unused(self, slot: FrameSlot) -> None:
        """Lock held. Free a released slot once its frame ended and no frame reads it."""
        record = self._record(slot)
        if (
            record is not None
            and record.release_when_done
            and record.done.is_set()
            and not record.readers
        ):
            self._free_slot(slot)

    # ------------------------------------------------------------------ frames in flight
    def begin(
        self, slot: FrameSlot | None, reads: Sequence[FrameSlot], rgba_kept: bool = True
    ) -> None:
        """A task is about to be sent: into ``slot`` (None for a transform), reading ``reads``.

        Checks that every frame read is still held and finished, and counts a reader on each;
        marks the slot submitted and QUEUED. Raises ``SlotStateError`` (changing nothing) if a
        frame read was released meanwhile.
        """
        with self._lock:
            record, read_records = self._check_submit(slot, reads)
            for read in read_records:
                read.readers += 1  # type: ignore[union-attr]
            if slot is not None and record is not None:
                record.submitted = True
                record.rgba_kept = rgba_kept
                record.submitted_ns = time.perf_counter_ns()
                self.ring.set_state(slot.index, SlotState.QUEUED)

    def finish_unchanged(
        self, slot: FrameSlot, reads: Sequence[FrameSlot], rgba_kept: bool
    ) -> None:
        """A frame whose slot already holds its picture (nothing changed since the slot's last
        frame, ``framering.damage``): done at once, with no worker and no task. The same checks
        as :meth:`begin`."""
        with self._lock:
            record, _ = self._check_submit(slot, reads)
            assert record is not None
            now = time.perf_counter_ns()
            record.submitted = True
            record.rgba_kept = rgba_kept
            record.submitted_ns = record.finished_ns = now
            record.done.set()
            self.ring.set_state(slot.index, SlotState.DONE)
            self._notify_async()

    def _check_submit(
        self, slot: FrameSlot | None, reads: Sequence[FrameSlot]
    ) -> tuple[FrameRecord | None, list[FrameRecord | None]]:
        """Lock held. The records of a slot about to be submitted and of the frames it reads,
        or ``SlotStateError`` if any of them was released (or the slot already submitted)."""
        self._lifetime.check_open()
        records = [self._record(frame) for frame in reads]
        for frame, read in zip(reads, records, strict=True):
            if read is None or read.released:
                raise SlotStateError(f"{frame!r} was released; it cannot be read as a layer")
        record = None if slot is None else self._record(slot)
        if slot is not None and (record is None or record.released):
            raise SlotStateError(f"cannot submit to {slot!r}: it was released")
        if record is not None and record.submitted:
            raise SlotStateError(f"{slot!r} was already submitted; acquire another slot")
        return record, records

    def has_begun(self, slot: FrameSlot) -> bool:
        """``begin`` recorded a frame in ``slot`` (asked after an interrupt)."""
        with self._lock:
            record = self._record(slot)
            return record is not None and record.submitted

    def dispatched(self, slot: FrameSlot, attempts: int) -> None:
        """A worker took the frame (called under the pool's lock: records only)."""
        if not self._closed:
            self.ring.set_state(slot.index, SlotState.RENDERING)
            self.ring.attempts[slot.index] = attempts

    def requeued(self, slot: FrameSlot) -> None:
        """The frame waits for a worker again (under the pool's lock: records only)."""
        if not self._closed:
            self.ring.set_state(slot.index, SlotState.QUEUED)

    def finish(
        self,
        slot: FrameSlot | None,
        reads: Sequence[FrameSlot],
        failure: BaseException | None,
        worker_ns: int = 0,
    ) -> None:
        """A task ended: its slot's frame is done (or failed), and its reads end."""
        now = time.perf_counter_ns()
        with self._lock:
            record = None if slot is None else self._record(slot)
            if slot is not None and record is not None:
                record.worker_ns = worker_ns
                record.failure = failure
                record.finished_ns = now
                record.done.set()  # first: waiters must wake even if the ring is gone
                if not self._closed:
                    state = SlotState.DONE if failure is None else SlotState.FAILED
                    self.ring.set_state(slot.index, state)
                self._free_if_unused(slot)
            for frame in reads:
                read = self._record(frame)
                if read is not None:
                    read.readers -= 1
                    self._free_if_unused(frame)
            self._notify_async()

    # ------------------------------------------------------------------ views and figures
    def delivered(self, slot: FrameSlot, writable: bool) -> np.ndarray:
        """The slot's frame in the delivery format (a view into the ring), read-only unless
        ``writable``: then the slot's next frame is composited whole, since the caller may
        have changed any pixel of it."""
        if writable:
            with self._lock:
                record = self._record(slot)
                if record is not None:
                    record.drawn_on = True
            self._damage.forget(slot.index)
        return self.ring.delivered(slot.index, writable=writable)

    def picture_version(self, slot: FrameSlot) -> int:
        """The version a layer showing ``slot``'s finished frame is packed with now: a new one
        at every read once the frame was handed out writable (the caller may have drawn on it
        again since the last read, which nothing else would tell the damage tracker or a
        worker's transform cache), so those reads are never taken for the pixels of an
        earlier one. Versions come from the sequence numbers, so none repeats."""
        with self._lock:
            record = self._record(slot)
            if record is None:
                return slot.sequence  # (released: the layer's own check refuses it)
            if record.drawn_on:
                record.picture_version = next(self._sequence)
            return record.picture_version

    def state(self, slot: FrameSlot) -> SlotState:
        self._lifetime.check_open()
        return self.ring.state(slot.index)

    def in_use(self) -> int:
        """Slots not free."""
        with self._lock:
            return self.slots - len(self._free)

    # ------------------------------------------------------------------ asyncio
    def bridge(self) -> AsyncBridge:
        """The event-loop bridge of the running loop (made on first use)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._bridge is None or self._bridge.loop is not loop:
                if self._bridge is not None:
                    self._bridge.close()
                self._bridge = AsyncBridge(loop)
            return self._bridge

    def _notify_async(self) -> None:
        bridge = self._bridge
        if bridge is not None:
            bridge.notify()

    def close(self) -> None:
        """Wake every waiter (they see the engine closed) and let the ring go."""
        with self._lock:
            self._closed = True  # the ring's views go below: no state is written after this
            self._lock.notify_all()
            bridge, self._bridge = self._bridge, None
        if bridge is not None:
            bridge.notify()  # async waiters re-check and see the closed engine
            if bridge.loop.is_closed():
                bridge.close()  # nothing can wait on a closed loop: only the pipe is left
            else:
                bridge.loop.call_soon_threadsafe(bridge.close)
        self.ring.release_views()
        self.ring.segment.close_and_unlink()
