"""Telling the machine's stalls from the engine's: a thread that notices when the process froze.

A timing test on a shared 2-core runner sometimes sees the whole process stop for tens of
milliseconds (the hypervisor takes the CPU, or the kernel runs something else). A paced tick
missed across such a stall says nothing about the engine. :class:`StallWatch` sleeps in short
steps and records every step that overslept by ``threshold`` or more; a test may excuse a miss
only when a recorded stall overlaps it, and only a few of them.

The watch is a Python thread, so it also records a wait for the GIL as a stall: with many
busy threads (the engine's own among them) its wake-up can queue behind several 5 ms switch
intervals. That is why a stall must be longer than such a queue (the threshold) and why a
test excuses only a couple of ticks however many stalls it saw.
"""

from __future__ import annotations

import threading
import time
from types import TracebackType

STEP_S = 0.002


class StallWatch:
    """Records ``(start, end)`` in ``time.perf_counter()`` seconds of each stall of the process
    of at least ``threshold`` seconds while it runs (use as a context manager)."""

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self.stalls: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="stall-watch", daemon=True)

    def _watch(self) -> None:
        while not self._stop.is_set():
            before = time.perf_counter()
            time.sleep(STEP_S)
            after = time.perf_counter()
            if after - before - STEP_S >= self.threshold:
                self.stalls.append((before, after))

    def overlapping(self, start: float, end: float) -> list[tuple[float, float]]:
        """The recorded stalls that overlap ``[start, end]``."""
        return [(a, b) for a, b in self.stalls if a <= end and b >= start]

    def __enter__(self) -> StallWatch:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()
