"""A live stream survives crashes, hangs and garbage (one table of crash scenarios)."""

from __future__ import annotations

import os
import signal
import struct
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

from framering import (
    Engine,
    EngineBrokenError,
    EngineClosedError,
    FrameFailedError,
    Layer,
    WaitTimeoutError,
    shm,
)
from framering.kernels import PixelLayer, composite_stack
from framering.shm import AttachedSegment
from framering.workers import WorkerHandle
from tests import faults
from tests.waiting import wait_until

W, H = 320, 180


def scene(eng: Engine, opacity: float = 0.8) -> tuple[list[Layer], np.ndarray]:
    rng = np.random.default_rng(11)
    background = rng.integers(0, 256, (H, W, 4), dtype=np.uint8)
    overlay = rng.integers(0, 256, (100, 200, 4), dtype=np.uint8)
    sources = [eng.upload(background), eng.upload(overlay)]
    layers = [Layer(sources[0]), Layer(sources[1], x=50, y=40, opacity=opacity)]
    expected = np.empty((H, W, 4), np.uint8)
    composite_stack(
        expected, [PixelLayer(background), PixelLayer(overlay, x=50, y=40, opacity=opacity)]
    )
    return layers, expected


def faulty_engine(kind: str, marker_dir: Path, scope: str, **options: object) -> Engine:
    """A 2-worker engine whose workers fail as ``tests.faults.install`` says."""
    return Engine(
        W,
        H,
        workers=2,
        initializer=faults.install,
        initargs=(kind, str(marker_dir), scope),
        **options,  # type: ignore[arg-type]
    )


# kind of failure, whether the worker process is replaced
CRASH_CASES = [
    pytest.param("sigkill", True, id="SIGKILL mid-frame"),
    pytest.param("segfault", True, id="segfault mid-frame"),
    pytest.param("exit3", True, id="os._exit(3) mid-frame"),
    pytest.param("raise", False, id="exception inside the kernel"),
    pytest.param("hang", True, id="hang past the deadline"),
    pytest.param("startup", True, id="crash during start-up"),
]


@pytest.mark.parametrize(("kind", "replaced"), CRASH_CASES)
def test_a_failure_once_costs_the_caller_nothing_but_latency(
    kind: str, replaced: bool, tmp_path: Path
) -> None:
    with faulty_engine(kind, tmp_path, "once", slots=4, deadline=1.0) as eng:
        layers, expected = scene(eng)
        slots = [eng.acquire(timeout=5) for _ in range(4)]
        for slot in slots:
            slot.submit(layers)
        for slot in slots:
            np.testing.assert_array_equal(slot.wait(timeout=60), expected)
            slot.release()
        metrics = eng.metrics()
        assert (tmp_path / "fired").exists(), "the fault never fired"
        assert metrics.frames_failed == 0
        assert (metrics.worker_restarts >= 1) == replaced
        if kind != "startup":
            assert metrics.retries >= 1
        # the retries did not wait for it, but the replacement comes: full strength again
        wait_until(lambda: eng.metrics().active_workers == 2, "two workers again")


# kind of failure, what the error must say
ALWAYS_FAILING = [
    pytest.param("sigkill", "killed by SIGKILL", id="SIGKILL"),
    pytest.param("segfault", "killed by SIGSEGV", id="segfault"),
    pytest.param("exit3", "exited with code 3", id="os._exit(3)"),
    pytest.param("raise", "injected failure inside the kernel", id="exception"),
    pytest.param("hang", "deadline of 0.5 s", id="hang"),
]


@pytest.mark.parametrize(("kind", "cause"), ALWAYS_FAILING)
def test_a_frame_failing_every_attempt_names_the_cause_and_only_it_fails(
    kind: str, cause: str, tmp_path: Path
) -> None:
    with faulty_engine(kind, tmp_path, "marked", slots=2, deadline=0.5) as eng:
        layers, expected = scene(eng)
        doomed, healthy = eng.acquire(timeout=5), eng.acquire(timeout=5)
        doomed.submit([*layers, Layer(layers[1].source, opacity=faults.MARK)])
        healthy.submit(layers)
        with pytest.raises(FrameFailedError, match=cause) as failure:
            doomed.wait(timeout=60)
        assert failure.value.attempts == 2
        np.testing.assert_array_equal(healthy.wait(timeout=60), expected)
        doomed.release()
        healthy.release()
        again = eng.acquire(timeout=5)  # the failed slot is usable again
        again.submit(layers)
        np.testing.assert_array_equal(again.wait(timeout=60), expected)
        again.release()
        assert eng.metrics().frames_failed == 1


@pytest.mark.parametrize("kind", ["sigkill", "hang"])
def test_frames_queued_behind_a_frame_that_kills_its_worker_spend_no_attempt(
    kind: str, tmp_path: Path
) -> None:
    """One worker holds a doomed frame, a healthy one queued in its pipe behind it and a
    second waiting in the pool's queue: each death sends the frame behind again as never
    started, so the healthy frames come out right whatever the doomed one does to every
    worker it meets, and only the doomed one's retry counts."""
    with Engine(
        W,
        H,
        slots=3,
        workers=1,
        deadline=0.5,
        initializer=faults.install,
        initargs=(kind, str(tmp_path), "marked"),
    ) as eng:
        layers, expected = scene(eng)
        doomed, *healthy = (eng.acquire(timeout=5) for _ in range(3))
        doomed.submit([*layers, Layer(layers[1].source, opacity=faults.MARK)])
        for slot in healthy:
            slot.submit(layers)
        with pytest.raises(FrameFailedError) as failure:
            doomed.wait(timeout=60)
        assert failure.value.attempts == 2
        for slot in healthy:
            np.testing.assert_array_equal(slot.wait(timeout=60), expected)
        metrics = eng.metrics()
        assert metrics.frames_failed == 1
        assert metrics.retries == 1  # the doomed frame's; the others were never started
        for slot in (doomed, *healthy):
            slot.release()


@pytest.mark.timing
def test_workers_that_always_die_while_starting_break_the_engine_with_the_reason(
    tmp_path: Path,
) -> None:
    started = time.monotonic()
    with pytest.raises(EngineBrokenError, match=r"died while starting.*exited with code 1"):
        Engine(W, H, workers=1, initializer=faults.install, initargs=("startup", "", "always"))
    assert time.monotonic() - started < 60


def test_workers_that_fail_to_start_break_the_engine_naming_their_traceback() -> None:
    with pytest.raises(EngineBrokenError, match="after: RuntimeError: no camera on this host"):
        Engine(
            16,
            16,
            workers=1,
            initializer=faults.refuse_to_start,
            initargs=("no camera on this host",),
        )


def test_a_frame_over_previous_content_is_not_retried_after_a_crash(tmp_path: Path) -> None:
    with Engine(
        W, H, slots=2, workers=1, initializer=faults.install, initargs=("sigkill", str(tmp_path))
    ) as eng:
        layers, _ = scene(eng)
        with eng.acquire(timeout=5) as slot:
            slot.submit(layers, clear=False)
            with pytest.raises(FrameFailedError, match="previous content"):
                slot.wait(timeout=60)


def test_chaos_2000_frames_with_random_sigkills_each_delivered_once_and_exact() -> None:
    rng = np.random.default_rng(2026)
    # damage=False: every frame goes to a worker (with damage tracking a still scene would not)
    with Engine(W, H, slots=8, workers=2, max_attempts=6, damage=False) as eng:
        layers, expected = scene(eng)
        delivered: list[int] = []
        in_flight = []
        kills = 0
        for index in range(2000):
            slot = eng.acquire(timeout=30)
            slot.submit(layers)
            in_flight.append((index, slot))
            if index % 150 == 75:
                pids = eng.worker_pids()
                if pids:
                    os.kill(int(rng.choice(pids)), signal.SIGKILL)
                    kills += 1
            while len(in_flight) > 6:
                number, done = in_flight.pop(0)
                np.testing.assert_array_equal(done.wait(timeout=60), expected)
                delivered.append(number)
                done.release()
        for number, done in in_flight:
            np.testing.assert_array_equal(done.wait(timeout=60), expected)
            delivered.append(number)
            done.release()
        metrics = eng.metrics()
    assert delivered == list(range(2000))
    assert kills >= 10 and metrics.worker_restarts >= 10 and metrics.frames_failed == 0


def test_no_worker_process_outlives_its_engine() -> None:
    eng = Engine(16, 16, slots=1, workers=2)
    pids = eng.worker_pids()
    eng.close()
    for pid in pids:
        assert not shm.pid_alive(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


@pytest.mark.parametrize("kind", ["sigkill", "raise"])
def test_a_transform_task_survives_a_crash_once_and_names_the_cause_always(
    kind: str, tmp_path: Path
) -> None:
    pixels = np.random.default_rng(3).integers(0, 256, (40, 60, 4), dtype=np.uint8)
    pixels[..., 3] = 255
    with Engine(
        W,
        H,
        workers=2,
        initializer=faults.install_in_transforms,
        initargs=(kind, str(tmp_path / "once")),
    ) as eng:
        (tmp_path / "once").mkdir()
        source = eng.upload(pixels)
        half = eng.transform(source, size=(30, 20), timeout=60)  # fails once, then retried
        want = eng.transform(source, size=(30, 20), timeout=60)
        np.testing.assert_array_equal(half.pixels, want.pixels)
        for s in (half, want, source):
            eng.free(s)
    with Engine(
        W,
        H,
        workers=1,
        initializer=faults.install_in_transforms,
        initargs=(kind, str(tmp_path / "always"), "always"),
    ) as eng:
        source = eng.upload(pixels)
        cause = "RuntimeError" if kind == "raise" else "SIGKILL"
        with pytest.raises(FrameFailedError, match=cause):
            eng.transform(source, flip="vertical", timeout=60)
        frame = eng.render([Layer(source)])  # frames still work
        np.testing.assert_array_equal(frame[:40, :60], pixels)
        assert eng.metrics().sources == 1  # the failed transform's target was freed


def test_a_hung_transform_times_out_for_the_caller_and_its_source_is_freed(
    tmp_path: Path,
) -> None:
    with Engine(
        W,
        H,
        workers=1,
        deadline=0.5,
        initializer=faults.install_in_transforms,
        initargs=("hang", str(tmp_path), "always"),
    ) as eng:
        source = eng.upload(np.zeros((16, 16, 4), np.uint8))
        with pytest.raises(WaitTimeoutError):
            eng.transform(source, flip="horizontal", timeout=0.2)
        # the deadline kills the hung worker, the retry hangs too, then the target is freed
        wait_until(lambda: eng.metrics().sources == 1, "freed the transform's target")
        assert eng.metrics().sources == 1  # only the uploaded source is left
        assert eng.metrics().worker_restarts >= 1
        eng.render([Layer(source)])  # the replacement worker renders frames


def test_closing_the_engine_fails_a_transform_waiting_in_another_thread(tmp_path: Path) -> None:
    errors: list[BaseException] = []
    with Engine(
        W,
        H,
        workers=1,
        deadline=60,
        initializer=faults.install_in_transforms,
        initargs=("hang", str(tmp_path), "always"),
    ) as eng:
        source = eng.upload(np.zeros((16, 16, 4), np.uint8))

        def transform() -> None:
            try:
                eng.transform(source, flip="vertical", timeout=None)
            except BaseException as error:
                errors.append(error)

        waiter = threading.Thread(target=transform)
        waiter.start()
        wait_until(lambda: eng.metrics().busy_workers == 1, "in the hung worker's hands")
    waiter.join(timeout=30)
    assert not waiter.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], EngineClosedError)


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


@pytest.mark.timing
def test_a_dead_workers_frames_go_to_a_live_worker_without_waiting_for_its_replacement(
    tmp_path: Path,
) -> None:
    with Engine(
        1920,
        1080,
        slots=8,
        workers=2,
        initializer=faults.slow_replacements,
        initargs=(str(tmp_path), 2),
    ) as eng:
        rng = np.random.default_rng(5)
        big = eng.upload(rng.integers(0, 256, (1080, 1920, 4), dtype=np.uint8))
        # a frame of a few hundred milliseconds: still in its worker when the kill lands
        layers = [Layer(big)] + [Layer(big, x=i % 7, opacity=0.5) for i in range(150)]
        expected = eng.render(layers)
        kept = eng.acquire(timeout=5)  # the slot of `expected` (nothing to redo there)
        slot = eng.acquire(timeout=5)  # never used: composited whole
        slot.submit(layers)  # one frame: the other worker stays idle
        (holder,) = [w.pid for w in eng.metrics().workers if w.inflight]
        os.kill(holder, signal.SIGKILL)
        started = time.monotonic()
        np.testing.assert_array_equal(slot.wait(timeout=60), expected)
        slot.release()
        kept.release()
        assert time.monotonic() - started < 8  # the replacement sleeps 10 s before its hello
        metrics = eng.metrics()
        assert metrics.retries >= 1 and metrics.frames_failed == 0
        assert metrics.active_workers == 1  # the replacement was still starting


def test_a_replacement_worker_refuses_a_ring_header_that_was_overwritten() -> None:
    with Engine(W, H, slots=2, workers=1) as eng:
        (name,) = [n for n in shm.list_segments() if eng.token in n and n.endswith("-ring")]
        segment = AttachedSegment.attach(name)
        struct.pack_into("<I", segment.buf, 8, W // 2)  # another process halves the width
        segment.close()
        os.kill(eng.worker_pids()[0], signal.SIGKILL)

        def broken() -> bool:
            try:
                eng.try_acquire()
            except EngineBrokenError:
                return True
            return False

        wait_until(broken, "broken: every replacement refuses the ring", timeout=120)
        with pytest.raises(EngineBrokenError, match="the header of ring"):
            eng.try_acquire()


def test_a_replacement_that_never_starts_is_killed_after_start_timeout_and_replaced(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The only worker dies and its replacement hangs while starting: without a limit every
    frame would wait for ever; after ``start_timeout`` it is killed and the next one serves."""
    with Engine(
        W,
        H,
        workers=1,
        start_timeout=3.0,
        initializer=faults.hang_second_start,
        initargs=(str(tmp_path),),
    ) as eng:
        layers, expected = scene(eng)
        (pid,) = eng.worker_pids()
        os.kill(pid, signal.SIGKILL)
        np.testing.assert_array_equal(eng.render(layers, timeout=60), expected)
        assert len(os.listdir(tmp_path)) == 3  # the first, the hung one, the one that served
        assert eng.metrics().frames_failed == 0
    assert "did not start within 3 s" in caplog.text


def test_a_replacement_that_cannot_be_spawned_breaks_an_engine_left_without_workers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Out of file descriptors when a replacement is spawned: the frames waiting fail with the
    reason and the engine says it is broken, instead of the manager thread crashing (which
    failed frames in flight on live workers too) or frames waiting for ever."""
    with Engine(W, H, workers=1) as eng:
        layers, expected = scene(eng)
        np.testing.assert_array_equal(eng.render(layers), expected)

        def out_of_descriptors(*args: object, **kwargs: object) -> object:
            raise OSError(24, "Too many open files")

        monkeypatch.setattr(WorkerHandle, "spawn", out_of_descriptors)
        (pid,) = eng.worker_pids()
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not eng.worker_pids(), "the worker dead")
        with pytest.raises((FrameFailedError, EngineBrokenError), match="could not start"):
            eng.render(layers, timeout=30)
        with pytest.raises(EngineBrokenError, match="no worker left"):
            eng.render(layers, timeout=30)


def test_waiters_for_a_slot_are_told_at_once_when_the_engine_breaks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every slot held, a thread blocked in acquire() and a coroutine in acquire_async():
    when the engine broke, nothing woke them (no slot can free: release raises), so they
    slept out their whole timeout, or for ever with timeout=None."""
    import asyncio

    with Engine(W, H, workers=1, slots=2) as eng:
        layers, _ = scene(eng)
        held = [eng.acquire(timeout=10) for _ in range(2)]
        told: dict[str, tuple[str, float]] = {}

        def blocked() -> None:
            began = time.monotonic()
            try:
                eng.acquire(timeout=60)
            except Exception as error:
                told["thread"] = (type(error).__name__, time.monotonic() - began)

        async def blocked_async() -> None:
            began = time.monotonic()
            try:
                await eng.acquire_async(timeout=60)
            except Exception as error:
                told["coroutine"] = (type(error).__name__, time.monotonic() - began)

        threads = [
            threading.Thread(target=blocked),
            threading.Thread(target=lambda: asyncio.run(blocked_async())),
        ]
        for thread in threads:
            thread.start()
        time.sleep(0.3)  # both waiting

        def out_of_descriptors(*args: object, **kwargs: object) -> object:
            raise OSError(24, "Too many open files")

        monkeypatch.setattr(WorkerHandle, "spawn", out_of_descriptors)
        (pid,) = eng.worker_pids()
        os.kill(pid, signal.SIGKILL)
        for thread in threads:
            thread.join(timeout=30)
        assert told["thread"][0] == told["coroutine"][0] == "EngineBrokenError"
        assert told["thread"][1] < 20 and told["coroutine"][1] < 20  # not the 60 s timeout
        del held, layers
