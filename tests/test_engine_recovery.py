"""Workers that die under a frame are replaced and the frame retried; bad set-ups are refused."""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest

from framering import Engine, Layer, SharedMemoryError
from framering import shm as shm_module


def test_sigkill_mid_frame_is_retried_on_a_live_worker() -> None:
    with Engine(1920, 1080, slots=8, workers=2) as eng:
        rng = np.random.default_rng(5)
        big = eng.upload(rng.integers(0, 256, (1080, 1920, 4), dtype=np.uint8))
        layers = [Layer(big, opacity=o) for o in (1.0, 0.7, 0.6, 0.5, 0.4, 0.3)]
        expected = eng.render(layers)
        slots = [eng.acquire(timeout=5) for _ in range(8)]
        for slot in slots:
            slot.submit(layers)
        os.kill(eng.worker_pids()[0], signal.SIGKILL)
        for slot in slots:
            np.testing.assert_array_equal(slot.wait(timeout=60), expected)
            slot.release()
        metrics = eng.metrics()
        assert metrics.worker_restarts >= 1
        assert metrics.retries >= 1  # it held frames when it died
        assert metrics.frames_failed == 0
        # the replacement serves frames too
        assert np.array_equal(eng.render(layers), expected)


def test_too_small_dev_shm_is_refused_with_the_size_needed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shm_module, "shm_free_bytes", lambda: 64 * 2**20)  # Docker's default
    with pytest.raises(SharedMemoryError, match=r"needs 63\.3 MiB"):
        Engine(1920, 1080, slots=8, workers=1)
