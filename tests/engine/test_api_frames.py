"""The frame-slot API end to end: real worker processes, real shared memory."""

from __future__ import annotations

import gc
import os
import pickle
import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from framering import (
    AcquireTimeoutError,
    Engine,
    EngineClosedError,
    ForeignObjectError,
    InvalidValueError,
    Layer,
    SlotState,
    SlotStateError,
    SourceBusyError,
    WaitTimeoutError,
)
from framering.kernels import BlendMode, FrameFormat, PixelLayer, composite_stack, convert_frame
from framering.kernels.reference import composite_stack_exact, stack_errors, stack_within_tolerance
from tests.waiting import wait_until

W, H = 160, 90


@pytest.fixture(scope="module")
def eng() -> Iterator[Engine]:
    with Engine(W, H, slots=4, workers=2) as engine:
        yield engine


def picture(rng: np.random.Generator, h: int, w: int, opaque: bool = False) -> np.ndarray:
    pixels = rng.integers(0, 256, (h, w, 4), dtype=np.uint8)
    if opaque:
        pixels[..., 3] = 255
    return pixels


@st.composite
def scenes(draw: st.DrawFn) -> list[tuple[np.ndarray, int, int, float, BlendMode]]:
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    count = draw(st.integers(1, 4))
    layers = []
    for i in range(count):
        w, h = draw(st.integers(1, 200)), draw(st.integers(1, 120))
        layers.append(
            (
                picture(rng, h, w, opaque=i == 0 and draw(st.booleans())),
                draw(st.integers(-w, W)),
                draw(st.integers(-h, H)),
                draw(st.sampled_from([0.0, 0.3, 1.0])),
                draw(st.sampled_from(list(BlendMode))),
            )
        )
    return layers


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(scenes())
def test_rendered_frame_equals_the_kernel_and_matches_the_reference(
    eng: Engine, scene: list
) -> None:
    sources = [eng.upload(pixels) for pixels, *_ in scene]
    try:
        layers = [
            Layer(s, x=x, y=y, opacity=o, blend=m)
            for s, (_, x, y, o, m) in zip(sources, scene, strict=True)
        ]
        got = eng.render(layers)
        kernel_layers = [PixelLayer(p, x=x, y=y, opacity=o, blend=m) for p, x, y, o, m in scene]
        want = np.empty((H, W, 4), np.uint8)
        composite_stack(want, kernel_layers)
        np.testing.assert_array_equal(got, want)  # the engine runs the kernel, bit for bit
        exact = composite_stack_exact(W, H, kernel_layers)
        assert stack_within_tolerance(got, exact), stack_errors(got, exact)
    finally:
        for source in sources:
            eng.free(source)


def test_several_frames_in_flight_are_waited_independently(eng: Engine) -> None:
    rng = np.random.default_rng(1)
    pictures = [picture(rng, H, W, opaque=True) for _ in range(eng.slots)]
    sources = [eng.upload(p) for p in pictures]
    slots = [eng.acquire(timeout=5) for _ in sources]
    for slot, source in zip(slots, sources, strict=True):
        slot.submit([Layer(source)])
    for slot, pixels in reversed(list(zip(slots, pictures, strict=True))):
        np.testing.assert_array_equal(slot.wait(timeout=10), pixels)
        slot.release()
    for source in sources:
        eng.free(source)


@pytest.mark.timing
def test_full_ring_blocks_acquire_and_try_acquire_returns_none(eng: Engine) -> None:
    held = [eng.acquire(timeout=5) for _ in range(eng.slots)]
    assert eng.try_acquire() is None
    started = time.monotonic()
    with pytest.raises(AcquireTimeoutError) as caught:
        eng.acquire(timeout=0.2)
    assert isinstance(caught.value, TimeoutError)
    assert time.monotonic() - started >= 0.19
    threading.Timer(0.1, held[0].release).start()
    slot = eng.acquire(timeout=5)  # unblocked by the release
    for s in [slot, *held[1:]]:
        s.release()


def test_slot_misuse_is_refused(eng: Engine) -> None:
    source = eng.upload(np.zeros((2, 2, 4), np.uint8))
    slot = eng.acquire(timeout=5)
    with pytest.raises(SlotStateError, match="before submit"):
        slot.wait(timeout=1)
    slot.submit([Layer(source)])
    with pytest.raises(SlotStateError, match="already submitted"):
        slot.submit([Layer(source)])
    slot.wait(timeout=10)
    slot.release()
    with pytest.raises(SlotStateError, match="released twice"):
        slot.release()
    with pytest.raises(SlotStateError, match="released"):
        slot.wait(timeout=1)
    eng.free(source)


def test_release_while_in_flight_frees_the_slot_when_the_frame_ends(eng: Engine) -> None:
    source = eng.upload(np.full((H, W, 4), 255, np.uint8))
    slots = [eng.acquire(timeout=5) for _ in range(eng.slots)]
    for slot in slots:
        slot.submit([Layer(source)])
        slot.release()
    again = [eng.acquire(timeout=10) for _ in range(eng.slots)]
    assert all(s.state is SlotState.ACQUIRED for s in again)
    for slot in again:
        slot.release()
    eng.free(source)


def test_wait_timeout_leaves_the_frame_rendering(eng: Engine) -> None:
    source = eng.upload(np.full((H, W, 4), 7, np.uint8))
    with eng.acquire(timeout=5) as slot:
        slot.submit([Layer(source)])
        try:
            slot.wait(timeout=0)
        except WaitTimeoutError as error:
            assert isinstance(error, TimeoutError)
        assert (slot.wait(timeout=10) == 7).all()
    eng.free(source)


def test_live_source_frames_never_show_a_torn_picture(eng: Engine) -> None:
    camera = eng.live_source(W, H, opaque=True)
    stop = threading.Event()
    written = []

    def producer() -> None:
        value = 0
        while not stop.is_set():
            value = value % 250 + 1
            with camera.write(timeout=5) as pixels:
                pixels[...] = value  # write slowly, row by row, to widen any race
                pixels[..., 3] = 255
            written.append(value)

    thread = threading.Thread(target=producer)
    thread.start()
    try:
        seen = set()
        for _ in range(150):
            with eng.acquire(timeout=5) as slot:
                slot.submit([Layer(camera)])
                frame = slot.wait(timeout=10)
                values = np.unique(frame[..., :3])
                assert len(values) == 1, f"torn frame: {values}"
                seen.add(int(values[0]))
    finally:
        stop.set()
        thread.join()
    assert len(written) > 10 and len(seen) > 5
    eng.free(camera)


def test_freeing_a_source_waits_for_frames_reading_it(eng: Engine) -> None:
    source = eng.upload(np.full((H, W, 4), 9, np.uint8))
    slot = eng.acquire(timeout=5)
    slot.submit([Layer(source)])
    eng.free(source, timeout=10)  # returns once the frame no longer reads it
    assert (slot.wait(timeout=10) == 9).all()
    slot.release()
    with pytest.raises(ForeignObjectError, match="freed"):
        eng.render([Layer(source)])


def test_metrics_snapshot_counts_frames_and_workers(eng: Engine) -> None:
    source = eng.upload(np.full((H, W, 4), 3, np.uint8))
    before = eng.metrics()
    for _ in range(5):
        eng.render([Layer(source)])
    after = eng.metrics()
    assert after.frames_completed - before.frames_completed == 5
    assert after.active_workers == 2 and len(after.workers) == 2
    assert all(w.pid and w.rss_bytes and w.rss_bytes > 0 for w in after.workers)
    assert 0 < after.latency_p50 <= after.latency_p99
    assert 0 < after.kernel_p50 <= after.latency_p99
    assert after.ring_slots == 4 and after.shm_bytes >= W * H * 4 * 4
    assert after.throughput_fps >= 1
    eng.free(source)


def test_source_of_another_engine_is_refused(eng: Engine) -> None:
    with Engine(8, 8, slots=1, workers=1) as other:
        foreign = other.upload(np.zeros((2, 2, 4), np.uint8))
        with pytest.raises(ForeignObjectError, match="another engine"):
            eng.render([Layer(foreign)])
        with pytest.raises(ForeignObjectError, match="another engine"):
            eng.free(foreign)
    assert eng.render([]).shape == (H, W, 4)  # still serving


def test_close_with_frames_in_flight_fails_their_waiters_and_leaves_no_segment() -> None:
    engine = Engine(1920, 1080, slots=6, workers=1)
    big = engine.upload(np.full((1080, 1920, 4), 128, np.uint8))
    slots = [engine.acquire(timeout=5) for _ in range(6)]
    for slot in slots:
        slot.submit([Layer(big, opacity=0.5), Layer(big, opacity=0.5)])
    engine.close()
    outcomes = set()
    for slot in slots:
        try:
            slot.wait(timeout=5)
            outcomes.add("done")
        except EngineClosedError:
            outcomes.add("closed")
    assert outcomes <= {"done", "closed"}
    with pytest.raises(EngineClosedError):
        engine.acquire(timeout=1)
    with pytest.raises(EngineClosedError):
        engine.upload(np.zeros((2, 2, 4), np.uint8))
    engine.close()  # idempotent


@pytest.mark.parametrize(
    ("output", "matrix", "value_range"),
    [
        ("bgr", "bt709", "limited"),
        ("bgra", "bt709", "limited"),
        ("i420", "bt601", "limited"),
        ("nv12", "bt709", "full"),
        ("rgb", "bt709", "limited"),
    ],
)
def test_frames_are_delivered_in_the_encoders_format(
    output: str, matrix: str, value_range: str
) -> None:
    rng = np.random.default_rng(4)
    pixels = picture(rng, H, W, opaque=True)
    logo = picture(rng, 40, 60)
    with Engine(
        W, H, slots=2, workers=1, output=output, yuv_matrix=matrix, yuv_range=value_range
    ) as engine:
        layers = [Layer(engine.upload(pixels)), Layer(engine.upload(logo), x=20, y=10)]
        got = engine.render(layers)
    rgba = np.empty((H, W, 4), np.uint8)
    composite_stack(rgba, [PixelLayer(pixels), PixelLayer(logo, x=20, y=10)])
    want = np.empty(FrameFormat(output).shape(W, H), np.uint8)
    convert_frame(rgba, want, output, matrix=matrix, value_range=value_range)
    np.testing.assert_array_equal(got, want)


def test_yuv_output_needs_even_sizes() -> None:
    with pytest.raises(InvalidValueError, match="even width and height"):
        Engine(W + 1, H, slots=1, workers=1, output="i420")
    with pytest.raises(InvalidValueError, match="output must be one of"):
        Engine(W, H, slots=1, workers=1, output="yuyv")


def test_an_upload_cannot_be_freed_while_a_live_source_falls_back_on_it(eng: Engine) -> None:
    still = eng.upload(np.full((8, 8, 4), 9, np.uint8))
    camera = eng.live_source(8, 8, stall_timeout=0.01, fallback=still)
    with pytest.raises(SourceBusyError, match="fallback"):
        eng.free(still)
    eng.free(camera)
    eng.free(still)  # nothing falls back on it now


def test_threads_sharing_few_slots_are_served_in_turn(eng: Engine) -> None:
    source = eng.upload(np.full((H, W, 4), 7, np.uint8), opaque=True)
    served = [0] * 8
    stop = threading.Event()

    def client(number: int) -> None:
        while not stop.is_set():
            with eng.acquire(timeout=30) as slot:
                slot.submit([Layer(source)])
                # writable: the slot's next frame goes to a worker, so every thread waits for
                # frames as a live loop does (a frame its slot already holds ends inside
                # submit, and threads that never block hand the table's lock to each other
                # by barging, which is the GIL's doing, not the line's)
                slot.wait(timeout=30, writable=True)
            served[number] += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(served))]
    for thread in threads:
        thread.start()
    try:
        wait_until(lambda: sum(served) >= 800, "800 frames served", timeout=120)
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
        eng.free(source)  # also when it fails: one failure, not a leaked segment besides
    # first come, first served: nobody starves (unfair hand-offs gave 5 of 8 threads ~nothing)
    assert min(served) >= sum(served) / len(served) / 4, served


def test_a_second_writer_of_a_live_source_waits_for_its_turn(eng: Engine) -> None:
    camera = eng.live_source(8, 8)
    writing = threading.Event()

    def slow_writer() -> None:
        with camera.write() as pixels:
            writing.set()
            time.sleep(0.2)  # a producer taking its time over one picture
            pixels[...] = 1

    other = threading.Thread(target=slow_writer)
    other.start()
    writing.wait(10)
    with camera.write(timeout=10) as pixels:  # waits instead of refusing at once
        pixels[...] = 2
    other.join(10)
    assert camera.version == 2
    assert (eng.render([Layer(camera)])[:8, :8, 0] == 2).all()
    eng.free(camera)


def test_engines_and_their_objects_refuse_pickling_with_the_reason(eng: Engine) -> None:
    source = eng.upload(np.zeros((4, 4, 4), np.uint8))
    camera = eng.live_source(4, 4)
    with eng.acquire() as slot:
        for thing in (eng, source, camera, Layer(source), slot):
            with pytest.raises(TypeError, match="cannot be pickled: it lives in the process"):
                pickle.dumps(thing)
    eng.free(source)
    eng.free(camera)


def test_a_closed_engine_keeps_no_file_descriptor() -> None:
    def open_fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    gc.disable()
    try:
        with Engine(16, 16, slots=1, workers=1):
            pass  # the first engine opens what stays for the process (the resource tracker)
        before = open_fds()
        for _ in range(5):
            with Engine(16, 16, slots=1, workers=1) as engine:
                engine.render([])
        assert open_fds() <= before
    finally:
        gc.enable()
