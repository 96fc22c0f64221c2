"""An elastic pool: it grows under load, shrinks when idle, and recycles a bloated worker,
without losing, failing or changing a frame."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from pathlib import Path

import numpy as np
import pytest

from framering import Engine, InvalidValueError, Layer
from framering.slots import FrameSlot
from tests import faults
from tests.waiting import wait_until

W, H = 1280, 720


# A frame of the load takes at least this long on one worker, whatever the CPU: 20 of them
# queued then wait well past the pool's growth threshold (elastic.GROW_WAIT_S, 0.1 s).
HEAVY_FRAME_S = 0.015


def heavy_layers(eng: Engine) -> list[Layer]:
    """A frame of several milliseconds: a queue of them makes work wait. Translucent layers
    are added until a frame takes ``HEAVY_FRAME_S`` here (a fast CPU makes 3 layers in 2 ms)."""
    rng = np.random.default_rng(5)
    picture = eng.upload(rng.integers(0, 256, (H, W, 4), dtype=np.uint8))
    base = [Layer(picture), Layer(picture, opacity=0.5), Layer(picture, x=5, opacity=0.5)]
    for _ in range(3):  # the first frames of a fresh ring fault its pages in: not timed
        eng.render(base)
    started = time.perf_counter()
    for _ in range(3):
        eng.render(base)
    per_frame = (time.perf_counter() - started) / 3
    # each layer costs about a third of those three
    extra = max(0, min(40, math.ceil(len(base) * HEAVY_FRAME_S / per_frame) - len(base)))
    return base + [Layer(picture, x=i % 7, opacity=0.4) for i in range(extra)]


class Load:
    """A greedy client keeping ``depth`` frames in flight until stopped; it checks that every
    frame completes with the reference bytes."""

    def __init__(self, eng: Engine, layers: list[Layer], depth: int) -> None:
        self.eng, self.layers, self.depth = eng, layers, depth
        self.reference = eng.render(layers)
        self.frames = 0
        self.wrong = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(60)

    def _run(self) -> None:
        inflight: deque[FrameSlot] = deque()
        while not self._stop.is_set() or inflight:
            if not self._stop.is_set() and len(inflight) < self.depth:
                slot = self.eng.acquire(timeout=30)
                slot.submit(self.layers)
                inflight.append(slot)
                continue
            slot = inflight.popleft()
            frame = slot.wait(30)  # raises if the frame failed: the test then fails
            self.frames += 1
            self.wrong += not np.array_equal(frame, self.reference)
            slot.release()


def test_limits_that_contradict_each_other_are_refused() -> None:
    with pytest.raises(InvalidValueError, match="min_workers"):
        Engine(64, 36, min_workers=3, max_workers=2)
    with pytest.raises(InvalidValueError, match="between"):
        Engine(64, 36, workers=4, max_workers=2)


def test_the_pool_grows_under_load_and_shrinks_when_idle(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="framering")
    with Engine(W, H, slots=24, workers=1, max_workers=2, idle_timeout=1.0, damage=False) as eng:
        layers = heavy_layers(eng)
        assert eng.workers == 1
        with Load(eng, layers, depth=20) as load:
            wait_until(lambda: eng.workers == 2, "grown to 2 workers")
            grown_at = load.frames
            wait_until(lambda: load.frames > grown_at + 50, "frames on the grown pool")
        assert eng.metrics().scale_ups == 1  # never beyond max_workers
        wait_until(lambda: eng.workers == 1, "shrunk back to 1 worker")
        with Load(eng, layers, depth=20) as again:  # a second step grows it again
            wait_until(lambda: eng.workers == 2, "grown again")
        metrics = eng.metrics()
        assert metrics.scale_ups == 2 and metrics.scale_downs == 1
        assert metrics.frames_failed == 0 and metrics.retries == 0
        assert load.wrong == 0 and again.wrong == 0 and load.frames > 50
    messages = [r.getMessage() for r in caplog.records]
    assert any("pool growing to 2 workers" in m and "waited" in m for m in messages)
    assert any("retired after" in m and "pool shrinking to 1" in m for m in messages)


def test_a_worker_over_max_worker_rss_is_recycled_between_frames(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="framering")
    with Engine(
        W,
        H,
        slots=8,
        workers=1,
        damage=False,
        max_worker_rss=BALLAST_LIMIT,
        initializer=faults.ballast_once,
        initargs=(str(tmp_path), BALLAST_MB),
    ) as eng:
        layers = heavy_layers(eng)
        [first] = eng.worker_pids()
        with Load(eng, layers, depth=4) as load:
            wait_until(lambda: eng.metrics().recycled_workers == 1, "the bloated worker recycled")
            wait_until(
                lambda: eng.workers == 1 and eng.worker_pids() != [first], "its replacement ready"
            )
            recycled_at = load.frames
            wait_until(lambda: load.frames > recycled_at + 20, "frames after the recycle")
        metrics = eng.metrics()
        assert metrics.recycled_workers == 1  # the lean replacement stays
        assert metrics.frames_failed == 0 and metrics.retries == 0 and load.wrong == 0
    assert any(
        "recycled" in r.getMessage() and "max_worker_rss" in r.getMessage() for r in caplog.records
    )


# The ballast is far above what a worker holds by itself (numpy, Numba and OpenCV: ~150 MiB of
# private memory), and the limit between the two.
BALLAST_MB = 700
BALLAST_LIMIT = 500 * 2**20
