"""Paced in-order streams, overload policies, stalled sources, and asyncio."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from framering import Engine, Layer
from framering.clock import Scene
from tests import faults
from tests.waiting import wait_until

W, H = 64, 36


@pytest.fixture(scope="module")
def eng() -> Iterator[Engine]:
    with Engine(W, H, slots=6, workers=2) as engine:
        yield engine


def numbered(eng: Engine, count: int) -> list[object]:
    """Sources whose red channel is their number: a frame shows which index it is."""
    sources = []
    for value in range(count):
        pixels = np.zeros((H, W, 4), np.uint8)
        pixels[..., 0] = value
        pixels[..., 3] = 255
        sources.append(eng.upload(pixels, opaque=True))
    return sources


def failing_fifth_frame(tmp_path: Path, fault: str, frames: int) -> tuple[Engine, Scene]:
    """An engine whose worker fails frame 5 (``fault``, once, on its only attempt), and a scene
    of ``frames`` numbered frames."""
    engine = Engine(
        W,
        H,
        slots=4,
        workers=1,
        max_attempts=1,
        initializer=faults.install,
        initargs=(fault, str(tmp_path), "marked"),
    )
    sources = numbered(engine, frames)

    def scene(t: float, index: int) -> list[Layer]:
        opacity = faults.MARK if index == 5 else 1.0  # frame 5 fails in the worker
        return [Layer(sources[index], opacity=opacity)]

    return engine, scene


@pytest.mark.timing
def test_stream_delivers_every_frame_in_order_on_the_clock(eng: Engine) -> None:
    sources = numbered(eng, 30)
    seen, delivered = [], []
    started = time.perf_counter()
    # `block`: a scheduling hiccup of the test machine may delay a tick, never lose a frame
    stream = eng.stream(lambda t, i: [Layer(sources[i])], fps=60, frames=30, policy="block")
    for frame in stream:
        assert frame.pixels.shape == (H, W, 4)
        assert frame.pts == pytest.approx(frame.index / 60)
        assert frame.submitted_ns <= frame.finished_ns <= frame.delivered_ns
        seen.append(int(frame.pixels[0, 0, 0]))
        delivered.append(time.perf_counter() - started)
    assert seen == list(range(30))  # in order, each frame its own picture, none missing
    assert delivered[-1] >= 29 / 60  # paced on the clock, not as fast as possible
    metrics = eng.metrics()
    assert metrics.delivery_jitter_p99 < 0.25  # generous: a loaded 2-core CI runner
    for source in sources:
        eng.free(source)


def slow_scene(sources: list[object], overlay: object) -> object:
    """Each frame costs ~3 frame intervals at 200 fps: a 3x overload."""

    def scene(t: float, index: int) -> list[Layer]:
        time.sleep(0.015)  # the producer side is slow: frames cannot keep up with the clock
        return [Layer(sources[index % len(sources)]), Layer(overlay, opacity=0.5)]

    return scene


def settled(eng: Engine) -> bool:
    """Every slot back in the ring (frames thrown away are freed when they finish)."""
    wait_until(lambda: eng.metrics().ring_in_use == 0, "every slot back in the ring")
    return True


@pytest.mark.timing
@pytest.mark.parametrize("policy", ["drop", "repeat", "block"])
def test_overload_follows_the_policy_and_never_builds_a_queue(eng: Engine, policy: str) -> None:
    sources = numbered(eng, 8)
    overlay = eng.upload(np.full((H, W, 4), 200, np.uint8))
    before = eng.metrics()
    frames = list(
        (f.index, f.repeated, f.delivered_ns - f.submitted_ns)
        for f in eng.stream(slow_scene(sources, overlay), fps=200, frames=60, policy=policy)
    )
    after = eng.metrics()
    late = after.stream_late - before.stream_late
    dropped = after.stream_dropped - before.stream_dropped
    repeated = after.stream_repeated - before.stream_repeated
    indices = [i for i, _, _ in frames]
    assert indices == sorted(indices)  # in order whatever happens
    latencies = [lat / 1e9 for _, _, lat in frames]
    assert max(latencies) < 1.0  # bounded: no backlog grows over the run (generous for CI)
    if policy == "drop":
        assert dropped > 10 and repeated == 0
        assert len(frames) + dropped >= 60
    elif policy == "repeat":
        assert repeated > 0 and any(r for _, r, _ in frames)
    else:
        assert len(frames) == 60 and dropped == 0 and late > 0  # nothing lost, clock shifted
    assert settled(eng)  # every slot back when the stream ends
    for source in [*sources, overlay]:
        eng.free(source)


def test_breaking_out_of_a_stream_releases_its_slots(eng: Engine) -> None:
    (source,) = numbered(eng, 1)
    for frame in eng.stream(lambda t, i: [Layer(source)], fps=120):
        if frame.index == 5:
            break
    assert settled(eng)
    eng.free(source)


def test_a_stalled_live_source_switches_to_its_fallback_until_pictures_return(
    eng: Engine,
) -> None:
    grey = np.full((H, W, 4), 77, np.uint8)
    grey[..., 3] = 255
    still = eng.upload(grey, opaque=True)
    camera = eng.live_source(W, H, opaque=True, stall_timeout=0.1, fallback=still)
    with camera.write() as pixels:
        pixels[...] = 5
    assert eng.render([Layer(camera)])[0, 0, 0] == 5  # fresh: the camera picture
    wait_until(camera.stalled, "stalled")
    before = eng.metrics().stalled_frames
    assert eng.render([Layer(camera)])[0, 0, 0] == 77  # stalled: the still image
    assert eng.metrics().stalled_frames == before + 1
    with camera.write() as pixels:
        pixels[...] = 9
    assert eng.render([Layer(camera)])[0, 0, 0] == 9  # pictures again: back to live
    blank = eng.live_source(W, H, stall_timeout=0.01, fallback="transparent")
    wait_until(blank.stalled, "stalled")
    assert (eng.render([Layer(still), Layer(blank)]) == grey).all()
    for source in (camera, blank, still):
        eng.free(source)


def test_asyncio_acquire_wait_and_astream(eng: Engine) -> None:
    sources = numbered(eng, 10)

    async def main() -> list[int]:
        slot = await eng.acquire_async(timeout=5)
        slot.submit([Layer(sources[3])])
        frame = await slot.wait_async(timeout=5)
        assert frame[0, 0, 0] == 3
        slot.release()
        # many frames awaited concurrently on one loop thread
        slots = [await eng.acquire_async(timeout=5) for _ in range(4)]
        for i, s in enumerate(slots):
            s.submit([Layer(sources[i])])
        pictures = await asyncio.gather(*(s.wait_async(timeout=5) for s in slots))
        assert [int(p[0, 0, 0]) for p in pictures] == [0, 1, 2, 3]
        for s in slots:
            s.release()
        seen = []
        async for f in eng.astream(lambda t, i: [Layer(sources[i])], fps=100, frames=10):
            seen.append(int(f.pixels[0, 0, 0]))
        return seen

    assert asyncio.run(main()) == list(range(10))
    assert settled(eng)
    for source in sources:
        eng.free(source)


@pytest.mark.timing
def test_acquire_async_waits_for_a_release_without_blocking_the_loop(eng: Engine) -> None:
    async def main() -> float:
        held = [await eng.acquire_async() for _ in range(eng.slots)]
        loop = asyncio.get_running_loop()
        loop.call_later(0.05, held[0].release)
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.005)

        task = asyncio.create_task(ticker())
        started = time.perf_counter()
        slot = await eng.acquire_async(timeout=5)
        waited = time.perf_counter() - started
        task.cancel()
        for s in [slot, *held[1:]]:
            s.release()
        assert ticks >= 5  # the loop kept running while we waited
        return waited

    assert 0.04 <= asyncio.run(main()) < 1.0


def test_bad_stream_arguments_are_refused_when_the_stream_is_made(eng: Engine) -> None:
    with pytest.raises(ValueError, match="policy"):
        eng.stream(lambda t, i: [], policy="skip")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="fps"):
        eng.stream(lambda t, i: [], fps=0)
    with pytest.raises(ValueError, match="scene"):
        eng.stream("not callable")  # type: ignore[arg-type]


@pytest.mark.parametrize("policy", ["drop", "repeat"])
def test_a_frame_that_fails_every_attempt_costs_a_live_stream_one_tick(
    tmp_path: Path, policy: str
) -> None:
    engine, scene = failing_fifth_frame(tmp_path, "raise", 20)
    with engine:
        frames = list(engine.stream(scene, fps=60, frames=20, policy=policy))
        metrics = engine.metrics()
    assert metrics.frames_failed == 1
    shown = [f.index for f in frames if not f.repeated]
    assert 5 not in shown and shown[-1] == 19  # the stream went on to its end
    if policy == "repeat":
        assert metrics.stream_repeated >= 1
    else:
        assert metrics.stream_dropped >= 1


def test_the_clock_starts_at_the_first_frame_asked_for_not_when_the_stream_is_made(
    eng: Engine,
) -> None:
    """Made, then iterated half a second later: the ticks in between were counted as missed
    and the first 15 of 30 frames dropped."""
    source = numbered(eng, 1)[0]
    frames = eng.stream(lambda t, i: [Layer(source)], fps=30, frames=30, policy="drop")
    time.sleep(0.5)
    dropped = eng.metrics().stream_dropped
    delivered = [frame.index for frame in frames]
    eng.free(source)
    assert delivered[0] == 0
    assert eng.metrics().stream_dropped - dropped < 5  # a loaded CI runner may drop a few


def test_a_live_loop_closed_after_its_engine_closes_quietly() -> None:
    """``async for ... in eng.astream(): break`` inside ``with Engine``: the event loop closes
    the generator after the engine, and its slots were released by the engine already."""
    with Engine(W, H, slots=4, workers=1) as engine:
        source = numbered(engine, 1)[0]
        frames = engine.stream(lambda t, i: [Layer(source)], fps=60)
        next(frames)

        async def first_async() -> object:
            stream = engine.astream(lambda t, i: [Layer(source)], fps=60)
            await stream.__anext__()
            return stream

        loop = asyncio.new_event_loop()
        try:
            astream = loop.run_until_complete(first_async())
        finally:
            pass
    frames.close()  # raised EngineClosedError
    try:
        loop.run_until_complete(astream.aclose())  # type: ignore[attr-defined]
    finally:
        loop.close()


def test_an_engine_whose_event_loop_closed_first_leaves_no_descriptor_open() -> None:
    """``with Engine(...) as eng: asyncio.run(main(eng))``: the loop is closed before the
    engine, which left the asyncio bridge's two pipe ends open (2 descriptors an engine)."""
    import os

    def descriptors() -> int:
        return len(os.listdir("/proc/self/fd"))

    before = descriptors()
    for _ in range(3):
        with Engine(W, H, slots=2, workers=1) as engine:
            source = numbered(engine, 1)[0]

            async def main(engine: Engine = engine, source: object = source) -> None:
                slot = await engine.acquire_async(timeout=10)
                slot.submit([Layer(source)])
                await slot.wait_async(timeout=10)
                slot.release()

            asyncio.run(main())
    assert descriptors() <= before


def test_a_frame_failing_between_the_clocks_two_looks_costs_a_drop_stream_one_tick(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The clock read ``failed`` (not yet) and then ``done`` (failed by then): the failed frame
    went to delivery, which raised out of a stream that promises to go on, and its slot was
    never given back. The manager thread is made to fail the frame between the two looks."""
    from framering import FrameringError, FrameSlot

    looked = FrameSlot.failed

    def failed_then_the_frame_ends(slot: FrameSlot) -> bool:
        value = looked.fget(slot)  # type: ignore[attr-defined]
        if not value and not slot.done:
            try:
                slot.wait(1.0)  # the manager thread ends the frame here
            except FrameringError:
                pass
        return value

    engine, scene = failing_fifth_frame(tmp_path, "slow-raise", 15)
    with engine:
        monkeypatch.setattr(FrameSlot, "failed", property(failed_then_the_frame_ends))
        shown = [f.index for f in engine.stream(scene, fps=30, frames=15, policy="drop")]
        monkeypatch.undo()
        assert 5 not in shown and shown[-1] == 14
        wait_until(lambda: engine.metrics().ring_in_use == 0, "every slot given back")


def test_a_closed_stream_refuses_a_live_loop_as_closed(eng: Engine) -> None:
    from framering import SlotStateError

    stream = eng.open_stream("closed-loop", slots=2)
    stream.close()
    with pytest.raises(SlotStateError, match="is closed"):
        stream.stream(lambda t, i: [], fps=30)
    with pytest.raises(SlotStateError, match="is closed"):
        stream.astream(lambda t, i: [], fps=30)


@pytest.mark.parametrize(
    ("arguments", "error"),
    [
        ({"frames": -3}, "InvalidValueError"),
        ({"frames": 2.5}, "InvalidTypeError"),
        ({"frames": "3"}, "InvalidTypeError"),
        ({"inflight": 2.5}, "InvalidTypeError"),
        ({"inflight": 0}, "InvalidValueError"),
    ],
)
def test_a_live_loop_refuses_bad_frames_and_inflight_when_made(
    eng: Engine, arguments: dict[str, object], error: str
) -> None:
    import framering

    with pytest.raises(getattr(framering, error)):
        eng.stream(lambda t, i: [], fps=30, **arguments)  # type: ignore[arg-type]


def test_under_repeat_every_tick_gets_a_frame_even_those_skipped_as_too_late(
    eng: Engine,
) -> None:
    """A scene slower than the clock: ticks out of reach were skipped as under ``drop``, and a
    constant-rate consumer (why one picks ``repeat``) got 20 frames for 60 ticks."""
    source = numbered(eng, 1)[0]

    def slow_scene(t: float, index: int) -> list[Layer]:
        time.sleep(0.015)  # a producer slower than the 200 fps clock
        return [Layer(source)]

    before = eng.metrics()
    frames = list(eng.stream(slow_scene, fps=200, frames=60, policy="repeat"))
    after = eng.metrics()
    eng.free(source)
    indices = [frame.index for frame in frames]
    assert indices == list(range(indices[0], 60))  # every tick from the first frame on
    assert indices[0] <= 3  # only ticks before any frame existed have nothing to repeat
    assert sum(frame.repeated for frame in frames) >= 20
    assert after.stream_repeated - before.stream_repeated == sum(f.repeated for f in frames)


def test_a_reservation_that_would_starve_the_default_streams_running_loop_is_refused() -> None:
    """The default loop lives on what nobody reserved. A stream reserving 3 of 4 slots while
    it ran left it only the slot it was showing: it delivered nothing for 30 s, then raised."""
    from framering import SlotReservationError

    with Engine(W, H, slots=4, workers=1) as engine:
        source = numbered(engine, 1)[0]
        frames = engine.stream(lambda t, i: [Layer(source)], fps=60, frames=10)
        next(frames)  # running
        with pytest.raises(SlotReservationError, match="running live loop"):
            engine.open_stream("show", slots=3)
        engine.open_stream("small", slots=2).close()  # leaves the loop its two
        assert len([next(frames) for _ in range(9)]) == 9
        frames.close()
        engine.open_stream("show", slots=3).close()  # the loop ended: the ring is free to take
