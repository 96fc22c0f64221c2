"""An elastic pool: it grows under load, shrinks when idle, and recycles a bloated worker,
without losing, failing or changing a frame."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from pathlib import Path

import numpy as np
import pytest

from framering import Engine, InvalidValueError, Layer, WorkerBudget, elastic
from framering.elastic import BudgetShare, PoolLimits
from framering.slots import FrameSlot
from tests import faults
from tests.waiting import PATIENCE_S, wait_until

W, H = 1280, 720


# A frame of the load takes at least this long on one worker, whatever the CPU: 20 of them
# queued then wait well past the pool's growth threshold (elastic.GROW_WAIT_S, 0.1 s).
HEAVY_FRAME_S = 0.015


def heavy_layers(eng: Engine) -> list[Layer]:
    """A frame of several milliseconds: a queue of them makes work wait. Translucent layers
    are doubled until the fastest of three frames takes ``HEAVY_FRAME_S`` here (a fast CPU
    makes 3 layers in 1 ms; judging by the slowest, or by one, a noisy machine stopped early
    and the pool never felt pressure)."""
    rng = np.random.default_rng(5)
    picture = eng.upload(rng.integers(0, 256, (H, W, 4), dtype=np.uint8))
    layers = [Layer(picture), Layer(picture, opacity=0.5), Layer(picture, x=5, opacity=0.5)]
    for _ in range(3):  # the first frames of a fresh ring fault its pages in: not timed
        eng.render(layers)
    while len(layers) < 400:
        times = []
        for _ in range(3):
            started = time.perf_counter()
            eng.render(layers)
            times.append(time.perf_counter() - started)
        if min(times) >= HEAVY_FRAME_S:
            break
        layers += [Layer(picture, x=i % 7, opacity=0.4) for i in range(len(layers))]
    return layers


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
        self.stop()

    def stop(self) -> None:
        """No new frames; returns once those in flight are done (and checked)."""
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
        layers = heavy_layers(eng)  # (the pool may recycle the bloated worker meanwhile)
        bloated = int((tmp_path / "ballast-pid").read_text())
        with Load(eng, layers, depth=4) as load:
            wait_until(lambda: eng.metrics().recycled_workers == 1, "the bloated worker recycled")
            wait_until(
                lambda: eng.workers == 1 and bloated not in eng.worker_pids(),
                "its replacement ready",
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


def test_a_worker_budget_grants_what_pools_start_with_and_refuses_growth_beyond_its_count() -> None:
    budget = WorkerBudget(3)
    first, second = BudgetShare(budget), BudgetShare(budget)
    first.take_at_start(2)
    second.take_at_start(2)  # a start is never refused, even past the count
    assert budget.taken == 4
    assert not first.try_grow()
    assert budget.contended and second.others_want and not first.others_want
    assert not first.try_grow()  # asking again is still one pool wanting
    second.give_back(2)
    assert not budget.contended  # a worker is free for the wanting pool: nobody need give more
    assert first.try_grow()
    assert budget.taken == 3 and not budget.contended
    assert not second.try_grow()
    second.stop_wanting()  # the pool no longer needs it
    assert not budget.contended
    first.leave()
    first.leave()  # idempotent
    assert budget.taken == 0


def test_a_budget_a_start_took_past_its_total_gives_the_excess_back_to_one_pool_only() -> None:
    budget = WorkerBudget(2)
    grown, started = BudgetShare(budget), BudgetShare(budget)
    grown.take_at_start(1)
    assert grown.try_grow()
    started.take_at_start(1)  # the budget is over: one of the two must retire a worker
    assert grown.give_back_excess()
    assert not started.give_back_excess()  # the same excess is never given back twice
    assert budget.taken == 2
    grown.leave()
    started.leave()
    assert budget.taken == 0
    assert not BudgetShare(None).give_back_excess()  # no budget: never over it


def test_a_pool_over_its_budget_retires_its_newest_ready_worker_unless_one_is_starting() -> None:
    limits = PoolLimits.from_arguments(1, 1, 2, 30.0, None, physical_cores=2)
    first, second = _Worker(head_since=0.0, inflight=2), _Worker(head_since=0.0, inflight=2)
    assert elastic.worker_over_budget(limits, [first, second], 2, 0) is second  # busy or not
    assert elastic.worker_over_budget(limits, [first], 2, 1) is None  # the other is starting
    assert elastic.worker_over_budget(limits, [first], 1, 0) is None  # at its minimum


def test_a_contended_budget_takes_a_worker_from_a_pool_with_nothing_waiting_for_a_second() -> None:
    """Busy or not (a pool cutting frames into bands keeps every worker a little busy), and
    whenever the pool last grew; never below its minimum, never while its own work waits."""
    limits = PoolLimits.from_arguments(1, 1, 2, 30.0, None, physical_cores=2)
    first, busy = _Worker(head_since=0.0), _Worker(head_since=100.9, inflight=1)
    grown = dict(serving=2, waiting=0, last_grow=100.0, queued_at=100.0)
    assert elastic.worker_to_retire(limits, [first, busy], now=101.5, **grown) is None
    contended = dict(grown, contended=True)
    assert elastic.worker_to_retire(limits, [first, busy], now=101.5, **contended) is busy
    assert elastic.worker_to_retire(limits, [first, busy], now=100.5, **contended) is None
    waiting = dict(contended, waiting=1)
    assert elastic.worker_to_retire(limits, [first, busy], now=101.5, **waiting) is None
    minimum = dict(contended, serving=1)
    assert elastic.worker_to_retire(limits, [first], now=200.0, **minimum) is None


class _Worker:
    def __init__(self, head_since: float, inflight: int = 0) -> None:
        self.head_since = head_since
        self.inflight = dict.fromkeys(range(inflight))


def test_a_grown_engine_gives_a_worker_back_at_once_when_another_starts_over_the_budget() -> None:
    """A budget of two: the first engine grows to both under a load that never lets up; the
    second starts with its one worker all the same (a start is never refused), so the first
    retires its extra worker at once, with its own work still waiting, and every frame of it
    stays exact."""
    budget = WorkerBudget(2)
    common = dict(
        slots=40, workers=1, max_workers=2, idle_timeout=60.0, damage=False, worker_budget=budget
    )
    with Engine(W, H, **common) as first:  # type: ignore[arg-type]
        with Load(first, heavy_layers(first), depth=36) as load:
            wait_until(lambda: first.workers == 2, "the first engine grown to 2 workers")
            with Engine(W, H, **common) as second:  # type: ignore[arg-type]
                wait_until(
                    lambda: budget.taken == 2 and first.workers == 1,
                    "the first engine's extra worker given back",
                )
                assert second.workers == 1
                assert first.metrics().queued_tasks > 0  # its own work still waits
        assert load.wrong == 0 and load.frames > 0
        assert first.metrics().scale_downs == 1 and first.metrics().frames_failed == 0


def test_engines_sharing_a_budget_never_run_more_workers_than_it_holds() -> None:
    """Two engines, one worker each to start and a budget of three: the first grows to two under
    load; the second, loaded while the first still is, waits (the budget is contended); once the
    first is idle it gives its extra worker back within seconds, far sooner than its
    idle_timeout, and the second grows. Every frame stays exact."""
    budget = WorkerBudget(3)
    common = dict(
        slots=40, workers=1, max_workers=2, idle_timeout=60.0, damage=False, worker_budget=budget
    )
    with Engine(W, H, **common) as first, Engine(W, H, **common) as second:  # type: ignore[arg-type]
        most = [0]

        def workers_within_budget() -> None:  # ready ones, and the budget's count
            most[0] = max(most[0], first.workers + second.workers, budget.taken)

        with Load(first, heavy_layers(first), depth=36) as load_first:
            wait_until(lambda: first.workers == 2, "the first engine grown to 2 workers")
            with Load(second, heavy_layers(second), depth=36) as load_second:
                wait_until(lambda: budget.contended, "the second engine wanting a worker")
                deadline = time.monotonic() + 1.0
                while time.monotonic() < deadline:  # the budget is full: no growth
                    workers_within_budget()
                    time.sleep(0.01)
                assert second.workers == 1 and second.metrics().scale_ups == 0
                load_first.stop()
                handed_over = time.monotonic()

                def grown() -> bool:
                    workers_within_budget()
                    return second.workers == 2 and first.workers == 1

                wait_until(grown, "the worker handed from the first engine to the second")
                # well before the first engine's 60 s idle_timeout
                assert time.monotonic() - handed_over < PATIENCE_S
        assert most[0] <= 3 and budget.taken == 3
        assert first.metrics().scale_downs == 1 and second.metrics().scale_ups == 1
        for load in (load_first, load_second):
            assert load.wrong == 0 and load.frames > 0
        assert first.metrics().frames_failed == 0 and second.metrics().frames_failed == 0
    assert budget.taken == 0  # closed engines give everything back
