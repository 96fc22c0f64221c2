"""The stream clock on its own, with stand-in slots whose frames take as long as told."""

from __future__ import annotations

import threading
import time

import numpy as np

from framering.clock import StreamClock, stream_frames


class StandInSlot:
    def __init__(self, seconds: list[float]) -> None:
        self.seconds = seconds
        self.released = False
        self.failed = False
        self.submitted_ns = 0
        self.finished_ns = 0
        self._done_at: float | None = None

    def submit(self, layers: object, tick: float | None = None) -> None:
        self.submitted_ns = time.perf_counter_ns()
        self._done_at = time.perf_counter() + self.seconds[0]

    @property
    def done(self) -> bool:
        done = self._done_at is not None and time.perf_counter() >= self._done_at
        if done and not self.finished_ns:
            self.finished_ns = int(self._done_at * 1e9)  # type: ignore[operator]
        return done

    def wait(self, timeout: float | None = None) -> np.ndarray:
        while not self.done:
            time.sleep(0.0005)
        return np.zeros(1)

    def release(self) -> None:
        self.released = True


class StandInSource:
    slots = 8

    def __init__(self, seconds: list[float]) -> None:
        self.seconds = seconds

    def try_acquire(self) -> StandInSlot:
        return StandInSlot(self.seconds)

    def acquire(self, timeout: float | None = None) -> StandInSlot:
        return StandInSlot(self.seconds)

    async def until_free(self) -> None:
        pass


class Counts:
    def __init__(self) -> None:
        self.events: dict[str, int] = {}

    def stream_event(self, kind: str) -> None:
        self.events[kind] = self.events.get(kind, 0) + 1

    def stream_delivery(self, jitter: float) -> None:
        pass


def test_after_an_overload_the_stream_delivers_again() -> None:
    """Frames far slower than the clock for half a second, then fast: the late frames'
    latencies must not keep every later frame from being tried."""
    seconds = [0.1]
    clock = StreamClock(
        StandInSource(seconds),
        Counts(),
        1,
        lambda t, i: [],
        60.0,
        5,
        "drop",
        None,  # type: ignore[arg-type]
    )
    started = time.perf_counter()
    delivered_late_on: list[int] = []

    def run() -> None:
        for frame in stream_frames(clock):
            if time.perf_counter() - started > 1.0:
                delivered_late_on.append(frame.index)
            if time.perf_counter() - started > 2.0:
                return

    threading.Timer(0.5, lambda: seconds.__setitem__(0, 0.001)).start()
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(5.0)
    assert len(delivered_late_on) >= 30  # about 60 ticks in that second: most delivered
