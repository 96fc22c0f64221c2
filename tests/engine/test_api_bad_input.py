"""Bad input is refused in the caller's process with an engine error; the engine keeps working."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from framering import (
    Engine,
    EngineClosedError,
    ForeignObjectError,
    FrameringError,
    InvalidTypeError,
    InvalidValueError,
    Layer,
    SlotStateError,
)
from tests.waiting import wait_until

W, H = 48, 32


@pytest.fixture(scope="module")
def eng() -> Iterator[Engine]:
    with Engine(W, H, slots=3, workers=1) as engine:
        yield engine


def good_picture() -> np.ndarray:
    pixels = np.zeros((H, W, 4), np.uint8)
    pixels[..., 0] = np.arange(W, dtype=np.uint8)
    pixels[..., 3] = 255
    return pixels


BAD_ARRAYS = [
    np.zeros((4, 4, 4), np.float32),  # wrong dtype
    np.zeros((4, 4, 3), np.uint8),  # wrong number of channels
    np.zeros((4, 4), np.uint8),  # wrong shape
    np.zeros((8, 8, 4), np.uint8)[:, ::2],  # not contiguous
    np.zeros((0, 4, 4), np.uint8),  # empty
    "pixels",
    None,
]
BAD_LAYER_FIELDS = [
    {"opacity": float("nan")},
    {"opacity": float("inf")},
    {"opacity": -0.5},
    {"opacity": 2},
    {"opacity": "1"},
    {"blend": "glow"},
    {"blend": None},
    {"x": 2**31},
    {"y": -(2**31) - 1},
    {"x": 1.5},
    {"premultiplied": 1},
]


def bad_calls(eng: Engine, source: object) -> list[Callable[[], object]]:
    calls: list[Callable[[], object]] = [lambda a=a: eng.upload(a) for a in BAD_ARRAYS]  # type: ignore[misc]
    calls += [lambda f=f: eng.render([Layer(source, **f)]) for f in BAD_LAYER_FIELDS]  # type: ignore[arg-type, misc]
    calls += [
        lambda: eng.render("layers"),  # type: ignore[arg-type]
        lambda: eng.render([source]),  # type: ignore[list-item]
        lambda: eng.render([Layer(np.zeros((2, 2, 4), np.uint8))]),  # type: ignore[arg-type]
        lambda: eng.live_source(0, 10),
        lambda: eng.live_source(10, 2**31),
        lambda: eng.live_source(10, 10, buffers=1),
        lambda: eng.acquire(timeout="soon"),  # type: ignore[arg-type]
        lambda: eng.acquire(timeout=-1),
        lambda: eng.acquire(timeout=float("nan")),
        lambda: eng.free("source"),  # type: ignore[arg-type]
        lambda: eng.render([Layer(source)], timeout=float("inf")),
    ]
    return calls


def misuse_slot(eng: Engine, source: object, step: int) -> None:
    slot = eng.acquire(timeout=5)
    try:
        if step == 0:
            slot.wait(timeout=1)  # before submit
        elif step == 1:
            slot.submit([Layer(source)])  # type: ignore[arg-type]
            slot.submit([Layer(source)])  # type: ignore[arg-type]  # twice
        elif step == 2:
            slot.submit([Layer(source)], deadline=-1)  # type: ignore[arg-type]
        elif step == 3:
            slot.submit([Layer(source)], clear="yes")  # type: ignore[arg-type]
    finally:
        slot.release()
    if step == 4:
        slot.release()  # twice
    if step == 5:
        slot.wait(timeout=1)  # after release


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 40)), min_size=1, max_size=12))
def test_random_malformed_calls_leave_a_working_engine(
    eng: Engine, plan: list[tuple[bool, int]]
) -> None:
    picture = good_picture()
    source = eng.upload(picture)
    calls = bad_calls(eng, source)
    for slot_misuse, choice in plan:
        with pytest.raises(FrameringError) as caught:
            if slot_misuse:
                misuse_slot(eng, source, choice % 6)
            else:
                calls[choice % len(calls)]()
        assert isinstance(caught.value, TypeError | ValueError | RuntimeError)
    np.testing.assert_array_equal(eng.render([Layer(source)]), picture)
    # no slot leaked (a slot released while its frame was in flight is freed when it ends)
    wait_until(lambda: eng.metrics().ring_in_use == 0, "every slot free again")
    eng.free(source)


def test_errors_are_typed_as_python_expects(eng: Engine) -> None:
    source = eng.upload(good_picture())
    with pytest.raises(InvalidTypeError) as as_type:
        eng.render([Layer(source, opacity="1")])  # type: ignore[arg-type]
    assert isinstance(as_type.value, TypeError)
    with pytest.raises(InvalidValueError, match=r"finite float in \[0, 1\]") as as_value:
        eng.render([Layer(source, opacity=float("nan"))])
    assert isinstance(as_value.value, ValueError)
    with pytest.raises(SlotStateError), eng.acquire(timeout=5) as slot:
        slot.wait()
    eng.free(source)
    with pytest.raises(ForeignObjectError, match="freed"):
        eng.free(source)


def test_every_call_after_close_says_closed() -> None:
    eng = Engine(8, 8, slots=1, workers=1)
    source = eng.upload(np.zeros((2, 2, 4), np.uint8))
    slot = eng.acquire(timeout=5)
    eng.close()
    for call in [
        lambda: eng.upload(np.zeros((2, 2, 4), np.uint8)),
        lambda: eng.live_source(4, 4),
        lambda: eng.acquire(timeout=1),
        eng.try_acquire,
        lambda: eng.render([]),
        lambda: eng.free(source),
        lambda: slot.submit([]),
        slot.release,
    ]:
        with pytest.raises(EngineClosedError, match="closed"):
            call()


@pytest.mark.parametrize("huge", [10**400, -(10**400)])
def test_a_timeout_too_large_for_a_float_is_refused_with_an_engine_error(
    eng: Engine, huge: int
) -> None:
    """``float(10**400)`` raises OverflowError, which leaked out of timeouts and deadlines."""
    source = eng.live_source(W, H)
    try:
        with pytest.raises(InvalidValueError), source.write(timeout=huge):
            pass
        with pytest.raises(InvalidValueError):
            eng.acquire(timeout=huge)
        with pytest.raises(InvalidValueError):
            eng.live_source(W, H, stall_timeout=huge)
    finally:
        eng.free(source)


def test_a_fallback_that_is_an_array_is_refused_as_the_wrong_type(eng: Engine) -> None:
    with pytest.raises(InvalidTypeError, match="fallback"):
        eng.live_source(W, H, fallback=np.zeros(3))  # type: ignore[arg-type]


def test_a_second_write_in_the_same_thread_is_refused_at_once(eng: Engine) -> None:
    """It waited its whole timeout (for ever with None) for a write only it could close."""
    from framering import SourceBusyError

    source = eng.live_source(W, H)
    try:
        with (
            source.write(),
            pytest.raises(SourceBusyError, match="this thread"),
            source.write(timeout=None),
        ):
            pass
        with source.write():  # the first write closed: the source takes writes again
            pass
    finally:
        eng.free(source)


def test_two_frees_at_once_free_once_and_the_other_is_told(eng: Engine) -> None:
    """Both waited for the frames in flight, and both returned as if each had freed it."""
    import threading

    from framering import SourceBusyError

    source = eng.upload(good_picture())
    slot = eng.acquire(timeout=10)
    slot.submit([Layer(source)] * 500)  # keeps the source pinned a while
    outcomes: list[str] = []

    def free() -> None:
        try:
            eng.free(source, timeout=30)
            outcomes.append("freed")
        except (ForeignObjectError, SourceBusyError) as error:
            outcomes.append(type(error).__name__)

    threads = [threading.Thread(target=free) for _ in range(2)]
    for thread in threads:
        thread.start()
    slot.wait(timeout=30)
    slot.release()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(outcomes) == ["ForeignObjectError", "freed"]


def test_a_source_being_freed_cannot_become_a_fallback() -> None:
    """free() checked that no live source used the source as its fallback, then waited for the
    frames reading it; a live source made meanwhile took it as fallback, and once that camera
    stalled every frame showing it failed with "was freed"."""
    import threading
    import time

    side = 512
    with Engine(side, side, workers=1, slots=4, damage=False) as engine:
        heavy = engine.upload(np.full((side, side, 4), 128, np.uint8))  # blended, not copied
        still = engine.upload(np.full((16, 16, 4), 255, np.uint8))
        busy = engine.acquire(timeout=10)
        busy.submit([Layer(heavy)] * 4096)  # the one worker is busy for a while
        reader = engine.acquire(timeout=10)
        reader.submit([Layer(still)])  # queued behind it: pins the still
        freeing = threading.Thread(target=engine.free, args=(still, 60.0))
        freeing.start()
        time.sleep(0.05)
        assert freeing.is_alive() and not reader.done  # free() is waiting for the reader
        with pytest.raises(ForeignObjectError, match="being freed"):
            engine.live_source(16, 16, stall_timeout=0.05, fallback=still)
        busy.wait(timeout=60)
        reader.wait(timeout=60)
        busy.release()
        reader.release()
        freeing.join(timeout=60)
        assert still.freed
        engine.free(heavy)
