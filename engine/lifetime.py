"""Whether an engine is open, closed by its owner, or broken: one object every room asks.

"You closed it" and "it broke" stay apart (``EngineClosedError`` and ``EngineBrokenError``), as
the errors module explains; every room of the engine raises them through :meth:`check_open`.

An engine belongs to the process that made it. Its threads, pipes and locks do not survive
``os.fork()``: in a forked child every call raises :class:`ForeignProcessError`, and closing
(the atexit hook included) does nothing, so the child can never disturb the parent's workers.
"""

from __future__ import annotations

import atexit
import multiprocessing.util  # noqa: F401 (its exit hook registered first: see below)
import os
import threading
import weakref
from collections.abc import Callable
from typing import Protocol

from framering.errors import EngineBrokenError, EngineClosedError, ForeignProcessError


def not_picklable(thing: object) -> TypeError:
    """The error for pickling an engine or one of its objects: they live in one process."""
    return TypeError(
        f"{type(thing).__name__} cannot be pickled: it lives in the process that made its "
        f"engine (threads, pipes, shared memory). Send pixels or layer parameters to another "
        f"process, and make an engine there"
    )


class Closable(Protocol):
    def close(self) -> None: ...


_open: weakref.WeakSet[Closable] = weakref.WeakSet()

# This process's pid, kept current by a fork hook: an engine's every call checks it, and
# reading a global costs less than asking the kernel each time.
_this_pid = os.getpid()


def _forked() -> None:
    global _this_pid
    _this_pid = os.getpid()


os.register_at_fork(after_in_child=_forked)


@atexit.register
def _close_what_is_open() -> None:
    """Close every engine still open at interpreter exit, so no segment outlives us.

    Exit hooks run last registered first. ``multiprocessing.util`` registers one that
    terminates every child process, and it is imported above, before this registration, so
    that engines close first: the other way round the pool saw its workers killed and started
    replacements while the interpreter shut down."""
    for owner in list(_open):
        owner.close()


def close_at_exit(owner: Closable) -> None:
    """Have ``owner.close()`` called at interpreter exit unless it was closed before."""
    _open.add(owner)


def forget_at_exit(owner: Closable) -> None:
    _open.discard(owner)


class Lifetime:
    """Open until :meth:`close`; broken once the pool says why it cannot go on."""

    def __init__(self, name: str) -> None:
        self.name = name
        """How errors name the engine (its repr when it was made)."""
        self._closed = False
        self._closed_fully = False
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._broken: str | None = None
        self._when_broken: list[Callable[[], None]] = []

    def when_broken(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` when the engine breaks (from the thread that found it, which
        may hold the pool's lock: it must not block)."""
        self._when_broken.append(callback)

    def break_with(self, reason: str) -> None:
        """The engine cannot go on, because of ``reason`` (the pool tells, from any thread)."""
        self._broken = reason
        for callback in self._when_broken:
            callback()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def broken(self) -> str | None:
        return self._broken

    def begin_close(self) -> bool:
        """Mark the engine closed. False when there is nothing to do: it closed fully before,
        or this process is not its owner (a forked child). True again after a close that was
        interrupted, so that the next one finishes the job."""
        with self._lock:
            if self._closed_fully or os.getpid() != self._pid:
                return False
            self._closed = True
            return True

    def closed_fully(self) -> None:
        """Every step of the close ran: later closes do nothing."""
        self._closed_fully = True

    def check_open(self) -> None:
        """Raise unless usable here: :class:`ForeignProcessError` in a forked child,
        :class:`EngineClosedError` once closed, :class:`EngineBrokenError` once broken."""
        if _this_pid != self._pid:
            raise ForeignProcessError(
                f"{self.name} belongs to process {self._pid}, not to this one ({os.getpid()}): "
                f"an engine does not survive os.fork(); make one in the child instead"
            )
        if self._closed:
            raise EngineClosedError(f"{self.name} was closed")
        if self._broken is not None:
            raise EngineBrokenError(self._broken)

    def ended_early(self, what: str) -> BaseException | None:
        """The error for ``what`` cut short by a close or a breakage, or None if neither."""
        if self._closed:
            return EngineClosedError(f"{self.name} was closed before {what} finished")
        broken = self._broken
        return EngineBrokenError(broken) if broken is not None else None
