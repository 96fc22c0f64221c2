"""Many streams on one engine: reservations, fair shares by weight, paced frames first."""

from __future__ import annotations

import asyncio
import gc
import threading
import time
from collections import deque
from collections.abc import Iterator

import numpy as np
import pytest

from framering import (
    Engine,
    InvalidValueError,
    Layer,
    SlotReservationError,
    SlotStateError,
    Stream,
)
from framering.slots import FrameSlot
from tests.stalls import StallWatch

W, H = 640, 360


@pytest.fixture(scope="module")
def eng() -> Iterator[Engine]:
    # damage=False: a greedy loop re-submitting one scene must cost the workers every frame
    with Engine(W, H, slots=24, workers=2, damage=False) as engine:
        yield engine


@pytest.fixture(scope="module")
def layers(eng: Engine) -> list[Layer]:
    rng = np.random.default_rng(3)
    background = eng.upload(rng.integers(0, 256, (H, W, 4), dtype=np.uint8))
    overlay = eng.upload(rng.integers(0, 256, (H, W, 4), dtype=np.uint8))
    return [Layer(background), Layer(overlay, opacity=0.6), Layer(overlay, x=7, opacity=0.4)]


def greedy(stream: Stream, layers: list[Layer], stop: threading.Event, ahead: int) -> None:
    """Submit as fast as the stream's slots allow, keeping ``ahead`` frames in flight."""
    inflight: deque[FrameSlot] = deque()
    try:
        while not stop.is_set():
            slot = stream.try_acquire() if len(inflight) < ahead else None
            if slot is None:
                if not inflight:
                    slot = stream.acquire(timeout=10)
                else:
                    done = inflight.popleft()
                    done.wait(10)
                    done.release()
                    continue
            slot.submit(layers)
            inflight.append(slot)
    finally:
        for slot in inflight:
            slot.release()


def test_a_reservation_the_ring_cannot_honour_is_refused_clearly(eng: Engine) -> None:
    with eng.open_stream("big", slots=20):
        with pytest.raises(SlotReservationError, match=r"ring has 24 and 20 are reserved.*4 left"):
            eng.open_stream("too-big", slots=5)
        with pytest.raises(InvalidValueError, match="open already"):
            eng.open_stream("big", slots=1)
    with eng.open_stream("big-again", slots=20):  # the reservation went back on close
        pass
    for weight in (0, -1.0, float("nan"), 1e-320, 1e9):
        with pytest.raises(InvalidValueError, match="weight"):
            eng.open_stream("bad", weight=weight)


def test_a_stream_gets_its_reserved_slots_whatever_others_hold(
    eng: Engine, layers: list[Layer]
) -> None:
    with eng.open_stream("owner", slots=3) as owner:
        hog = []
        while (slot := eng.try_acquire()) is not None:  # the default stream takes all it may
            hog.append(slot)
        assert len(hog) == 24 - 3  # it never borrows what `owner` reserved
        mine = [owner.acquire(timeout=0.1) for _ in range(3)]
        assert owner.metrics().slots_held == 3
        assert owner.try_acquire() is None  # nothing left to borrow
        for slot in hog + mine:
            slot.release()
        extra = [owner.acquire(timeout=1) for _ in range(5)]  # beyond its share: borrowed
        assert owner.metrics().slots_held == 5
        for slot in extra:
            slot.release()


def test_a_live_loop_on_a_stream_without_two_sure_slots_is_refused_clearly(
    eng: Engine, layers: list[Layer]
) -> None:
    with eng.open_stream("thin", slots=1) as thin:
        thin.render(layers)  # one slot is enough for frames one at a time
        with pytest.raises(InvalidValueError, match="open it with slots=2 or more"):
            thin.stream(lambda t, i: layers, fps=30, frames=3)
    with (
        eng.open_stream("wide", slots=23),
        pytest.raises(InvalidValueError, match="reserve fewer slots"),
    ):
        eng.stream(lambda t, i: layers, fps=30, frames=3)


def test_a_closed_stream_takes_no_slot(eng: Engine) -> None:
    stream = eng.open_stream("short-lived")
    stream.close()
    stream.close()  # idempotent
    with pytest.raises(SlotStateError, match="closed"):
        stream.acquire(timeout=0.1)
    assert "short-lived" not in eng.metrics().streams


def test_each_stream_has_its_own_figures(eng: Engine, layers: list[Layer]) -> None:
    with eng.open_stream("counted", slots=2) as stream:
        before = eng.metrics().streams["default"].frames_completed
        for _ in range(3):
            stream.render(layers)
        eng.render(layers)
        streams = eng.metrics().streams
        assert streams["counted"].frames_completed == 3
        assert streams["counted"].slots_reserved == 2
        assert streams["counted"].worker_seconds > 0
        assert streams["default"].frames_completed == before + 1


def test_a_tick_must_be_a_finite_number(eng: Engine, layers: list[Layer]) -> None:
    with eng.acquire(timeout=1) as slot:
        with pytest.raises(InvalidValueError, match="finite"):
            slot.submit(layers, tick=float("inf"))
        with pytest.raises(TypeError, match="number"):
            slot.submit(layers, tick="soon")  # type: ignore[arg-type]


def test_greedy_streams_share_worker_time_by_weight() -> None:
    """Three greedy streams weighted 1:2:4 get worker time within 10% of 1:2:4 over 5 s.

    Frames of a few milliseconds, so that the test's own threads keep every stream
    backlogged on two cores (shares by weight are only owed to streams that want more)."""
    width, height = 1280, 720
    with Engine(width, height, slots=24, workers=2, damage=False) as eng:
        rng = np.random.default_rng(4)
        picture = eng.upload(rng.integers(0, 256, (height, width, 4), dtype=np.uint8))
        # eight translucent layers: the accumulating kernel does three in about 1 ms, which
        # the test's threads could not keep backlogged
        layers = [Layer(picture)] + [Layer(picture, x=i, opacity=0.5) for i in range(8)]
        used = run_greedy_streams(eng, layers, weights=(1, 2, 4), seconds=5.0)
    total = sum(used.values())
    for weight, seconds in used.items():
        share, expected = seconds / total, weight / 7
        assert abs(share / expected - 1) <= 0.10, (weight, share, expected, used)


def run_greedy_streams(
    eng: Engine, layers: list[Layer], weights: tuple[float, ...], seconds: float
) -> dict[float, float]:
    """Worker seconds each greedy stream (by weight) got over ``seconds``, once backlogged."""
    streams = [eng.open_stream(f"greedy-{w}", weight=w, slots=7) for w in weights]
    stop = threading.Event()
    threads = [
        threading.Thread(target=greedy, args=(s, layers, stop, 6), daemon=True) for s in streams
    ]
    try:
        for thread in threads:
            thread.start()
        time.sleep(1.0)  # every stream backlogged
        start = eng.metrics().streams
        time.sleep(seconds)
        end = eng.metrics().streams
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
        for stream in streams:
            stream.close()
    return {s.weight: end[s.name].worker_seconds - start[s.name].worker_seconds for s in streams}


@pytest.mark.timing
@pytest.mark.parametrize("policy", ["block", "drop"])
def test_a_greedy_stream_never_starves_paced_streams(
    eng: Engine, layers: list[Layer], policy: str
) -> None:
    """One greedy stream and four paced 30 fps streams, with capacity to spare for the paced
    ones: each delivers every tick (no tick late under block, none dropped under drop).

    The one exception is a tick missed while the whole process was seen frozen for
    ``STALL_S`` or more (a shared runner's hiccup, not the engine's doing), and no more than
    ``EXCUSED_MISSES`` of those per stream: starvation would miss far more.
    """
    hog = eng.open_stream("hog", weight=1, slots=8)
    paced = [eng.open_stream(f"live-{i}", slots=3) for i in range(4)]
    stop = threading.Event()
    hog_thread = threading.Thread(target=greedy, args=(hog, layers, stop, 7), daemon=True)
    deliveries: dict[str, list[tuple[int, float]]] = {}
    started: dict[str, float] = {}
    fps, frames = 30, 60

    def live(stream: Stream) -> None:
        started[stream.name] = time.perf_counter()
        deliveries[stream.name] = [
            (frame.index, frame.delivered_ns / 1e9)
            for frame in stream.stream(lambda t, i: layers, fps=fps, frames=frames, policy=policy)
        ]

    live_threads = [threading.Thread(target=live, args=(s,), daemon=True) for s in paced]
    # A full collection of this long test session's heap stops every thread of the process
    # for tens of milliseconds, which is the session's doing, not the engine's: frozen, the
    # objects made so far are left out of the collections during the run.
    gc.collect()
    gc.freeze()
    try:
        with StallWatch(STALL_S) as watch:
            hog_thread.start()
            time.sleep(0.5)
            for thread in live_threads:
                thread.start()
            for thread in live_threads:
                thread.join(60)
        figures = eng.metrics().streams
    finally:
        gc.unfreeze()
        stop.set()
        hog_thread.join(30)
        for stream in [hog, *paced]:
            stream.close()
    assert figures["hog"].frames_completed > 100  # it did run beside them
    for stream in paced:
        got = deliveries[stream.name]
        misses = missed_ticks(got, started[stream.name], 1 / fps, frames)
        unexcused = [m for m in misses if not watch.overlapping(m[0] - LOOKBACK_S, m[1])]
        ticks_missed = sum(ticks for _, _, ticks in misses)
        report = (misses, watch.stalls, figures[stream.name])
        assert not unexcused and ticks_missed <= EXCUSED_MISSES, report
        indices = [index for index, _ in got]
        assert indices == sorted(set(indices)), report
        if policy == "block":
            assert indices == list(range(frames)), report
            assert figures[stream.name].late <= ticks_missed, report
        else:
            assert figures[stream.name].dropped == frames - len(indices), report


# A stall of the process that excuses a tick missed across it (paced frames are submitted at
# least half an interval, 16.7 ms, ahead; the interpreter's own switching costs up to ~10 ms),
# and how many ticks a stream may miss that way
STALL_S = 0.015
EXCUSED_MISSES = 2  # ticks, however they fall: one gap of three skipped ticks is three
# How long before its tick a frame may be submitted (its stream's submit-ahead is shorter)
LOOKBACK_S = 0.1


def missed_ticks(
    delivered: list[tuple[int, float]], started: float, interval: float, frames: int
) -> list[tuple[float, float, int]]:
    """Each gap in a stream of ``frames`` delivered as ``(index, delivered at)``: its time span
    (from the delivery before to the delivery after) and how many ticks it cost (those
    skipped, or 1 for a delivery that came late)."""
    misses = []
    previous_index, previous_at = -1, started
    for index, at in delivered:
        skipped = index - previous_index - 1
        late = at - previous_at > (index - previous_index + 0.5) * interval
        if skipped or late:
            misses.append((previous_at, at, max(skipped, 1)))
        previous_index, previous_at = index, at
    if previous_index < frames - 1:  # the last ticks skipped
        skipped = frames - 1 - previous_index
        misses.append((previous_at, previous_at + skipped * interval, skipped))
    return misses


def test_a_stream_runs_under_asyncio_too(eng: Engine, layers: list[Layer]) -> None:
    async def live() -> list[int]:
        with eng.open_stream("async-show", slots=3) as stream:
            slot = await stream.acquire_async(timeout=5)
            slot.submit(layers)
            await slot.wait_async(5)
            slot.release()
            frames = stream.astream(lambda t, i: layers, fps=60, frames=12, policy="block")
            return [f.index async for f in frames]

    assert asyncio.run(live()) == list(range(12))
    assert eng.metrics().streams.get("async-show") is None  # closed with its block
