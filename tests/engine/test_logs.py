"""Each event the engine logs on logger ``framering``, and the silence of its hot path."""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from framering import Engine, Layer, shm
from tests import faults

W, H = 64, 36


def messages(caplog: pytest.LogCaptureFixture, level: int = logging.DEBUG) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "framering" and r.levelno >= level]


def picture(value: int) -> np.ndarray:
    pixels = np.full((H, W, 4), value, np.uint8)
    pixels[..., 3] = 255
    return pixels


def test_workers_log_their_start_and_exit_with_their_pid(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="framering")
    with Engine(W, H, workers=1) as eng:
        [pid] = eng.worker_pids()
    assert f"worker 0 started (pid {pid})" in messages(caplog)
    assert f"worker 0 exited (pid {pid})" in messages(caplog)


def test_a_crash_is_logged_with_its_signal_the_retry_and_the_workers_traceback(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="framering")
    with Engine(
        W, H, workers=1, initializer=faults.install, initargs=("segfault", str(tmp_path), "once")
    ) as eng:
        source = eng.upload(picture(90))
        eng.render([Layer(source)], timeout=60)  # retried on the replacement
    [crash] = [m for m in messages(caplog, logging.WARNING) if "SIGSEGV" in m]
    assert "worker 0 killed by SIGSEGV (pid" in crash
    assert "1 task(s) retried, 0 failed; starting a replacement" in crash
    # faulthandler's dump of the worker's own stack, down to the line that faulted
    assert "Segmentation fault" in crash and "faults.py" in crash


def test_a_deadline_kill_is_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="framering")
    with Engine(
        W,
        H,
        workers=1,
        deadline=0.5,
        initializer=faults.install,
        initargs=("hang", str(tmp_path), "once"),
    ) as eng:
        source = eng.upload(picture(90))
        eng.render([Layer(source)], timeout=60)
    assert any("exceeded the deadline of 0.5 s" in m for m in messages(caplog, logging.WARNING))


def test_a_failed_attempt_is_logged_as_retried(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="framering")
    with Engine(
        W, H, workers=1, initializer=faults.install, initargs=("raise", str(tmp_path), "once")
    ) as eng:
        source = eng.upload(picture(90))
        eng.render([Layer(source)], timeout=60)
    [retry] = [m for m in messages(caplog, logging.WARNING) if "retrying" in m]
    assert "injected failure inside the kernel" in retry


def test_a_stall_is_logged_once_and_its_end_too(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="framering")
    with Engine(W, H, workers=1) as eng:
        camera = eng.live_source(W, H, opaque=True, stall_timeout=0.05, fallback="transparent")
        with camera.write() as pixels:
            pixels[...] = picture(50)
        time.sleep(0.1)
        for _ in range(5):
            eng.render([Layer(camera)])
        with camera.write() as pixels:
            pixels[...] = picture(60)
        eng.render([Layer(camera)])
    stalls = [m for m in messages(caplog, logging.WARNING) if "stalled" in m]
    assert len(stalls) == 1 and f"live source {camera.id} stalled" in stalls[0]
    assert "frames show nothing in its place" in stalls[0]
    assert any(f"live source {camera.id} publishes again" in m for m in messages(caplog))


def test_reclaimed_shared_memory_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="framering")
    planted = Path(shm.SHM_DIR) / "framering-999996-0badcafe-ring"
    planted.write_bytes(b"")  # its pid is gone and nobody holds its lock: an orphan
    assert planted.name in shm.reclaim_orphans()
    assert f"reclaimed shared memory /dev/shm/{planted.name}" in " ".join(messages(caplog))


def test_a_stream_that_keeps_missing_ticks_is_warned_about(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="framering")
    with Engine(W, H, workers=1) as eng:
        source = eng.upload(picture(70))

        def slow(t: float, index: int) -> list[Layer]:
            time.sleep(0.012)  # the scene itself cannot keep up with 200 fps
            return [Layer(source)]

        with eng.open_stream("slow-show") as stream:
            frames = list(stream.stream(slow, fps=200, frames=150, policy="drop"))
    assert frames  # it went on, dropping what it could not make
    warnings = [m for m in messages(caplog, logging.WARNING) if "slow-show" in m]
    assert len(warnings) == 1  # rate-limited: not once per missed tick
    assert "missed" in warnings[0] and "of its last 60 ticks" in warnings[0]


def test_frames_log_nothing_at_info_or_above(caplog: pytest.LogCaptureFixture) -> None:
    with Engine(W, H, workers=2) as eng:
        source = eng.upload(picture(80))
        caplog.set_level(logging.DEBUG, logger="framering")
        for x in range(60):
            eng.render([Layer(source, x=x % 9)])
        list(eng.stream(lambda t, i: [Layer(source, y=i % 5)], fps=120, frames=30))
        assert messages(caplog, logging.INFO) == []


def test_demo_verbose_shows_the_log(tmp_path: Path) -> None:
    demo = ["demo", "--seconds", "0.3", "--fps", "10", "--workers", "1"]
    result = subprocess.run(
        [sys.executable, "-m", "framering", *demo, "--png", str(tmp_path / "last.png"), "-v"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "INFO    framering: worker 0 started (pid" in result.stderr
    assert "INFO    framering: worker 0 exited (pid" in result.stderr
