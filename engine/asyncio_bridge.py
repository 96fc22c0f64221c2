"""Wake an asyncio event loop when frames finish or slots free up: no thread per frame, no polling.

The engine's manager thread finishes frames; an event loop cannot wait on a
``threading.Event``. The bridge is a self-pipe the loop watches with ``add_reader``: after a
completion or a release the engine writes one byte (only while coroutines wait), the loop
wakes, and each waiting future whose condition now holds is resolved. One bridge per engine
and event loop.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable


class AsyncBridge:
    """Futures resolved from the event loop's thread when a condition becomes true."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        os.set_blocking(self._write, False)
        self._waiters: list[tuple[Callable[[], bool], asyncio.Future[None]]] = []
        loop.add_reader(self._read, self._wake)

    def notify(self) -> None:
        """From any thread: something changed; wake the loop if a coroutine waits."""
        if self._waiters:
            try:
                os.write(self._write, b"x")
            except (BlockingIOError, OSError):
                pass  # the pipe is full of wake-ups already, or closed

    async def wait_for(self, condition: Callable[[], bool]) -> None:
        """Return once ``condition()`` is true (checked after every notification)."""
        if condition():
            return
        future: asyncio.Future[None] = self.loop.create_future()
        self._waiters.append((condition, future))
        try:
            if condition():  # it may have become true before we were registered
                return
            await future
        finally:
            self._waiters = [(c, f) for c, f in self._waiters if f is not future]

    def _wake(self) -> None:
        try:
            while os.read(self._read, 4096):
                pass
        except (BlockingIOError, OSError):
            pass
        for condition, future in list(self._waiters):
            if not future.done() and condition():
                future.set_result(None)

    def close(self) -> None:
        """Resolve every waiter (not cancel: a waiter that wakes re-checks its condition and
        raises what it should, ``EngineClosedError``) and stop watching the pipe."""
        for _, future in self._waiters:
            if not future.done() and not self.loop.is_closed():
                future.set_result(None)
        self._waiters = []
        try:
            self.loop.remove_reader(self._read)
        except (RuntimeError, ValueError):
            pass  # the loop is closed already
        os.close(self._read)
        os.close(self._write)
