"""A finished frame is freed by reference counting: nothing of it waits for the cycle collector.

Objects caught in a reference cycle live until Python's cyclic collector runs, which it does
every few hundred such objects: a pause of the parent every few dozen frames, on a heap that
holds numpy's and Numba's objects, and memory freed late. A frame's job and its task named
each other until the job ended (21 objects a frame, a collection every ~60 frames).
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from dataclasses import replace

import numpy as np
import pytest

from framering import Engine, Layer


@pytest.fixture
def cyclic_garbage() -> Iterator[Callable[[], list[object]]]:
    """A function giving every object the cycle collector finds unreachable since the test
    began (the collector is off meanwhile, so nothing is collected behind the test's back)."""
    gc.collect()
    was_enabled, debug = gc.isenabled(), gc.get_debug()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)

    def collected() -> list[object]:
        gc.collect()
        return list(gc.garbage)

    try:
        yield collected
    finally:
        gc.set_debug(debug)
        gc.garbage.clear()
        if was_enabled:
            gc.enable()


def ours(objects: list[object]) -> list[str]:
    """The engine's objects among ``objects``, by type name."""
    return sorted(
        type(o).__qualname__ for o in objects if type(o).__module__.startswith("framering")
    )


def test_frames_through_slots_stream_and_bands_leave_no_cyclic_garbage(
    cyclic_garbage: Callable[[], list[object]],
) -> None:
    rng = np.random.default_rng(1)
    with Engine(96, 64, slots=4, workers=2, split="bands") as eng:
        background = Layer(eng.upload(rng.integers(0, 256, (64, 96, 4), dtype=np.uint8)))
        camera = eng.live_source(32, 24)
        sprite = Layer(camera, x=10, y=5, opacity=0.5)
        for index in range(12):  # frames in flight at once, as a live loop keeps them
            with camera.write() as pixels:
                pixels[...] = index
            slots = [eng.acquire(timeout=30) for _ in range(2)]
            for k, slot in enumerate(slots):
                slot.submit([background, replace(sprite, x=10 + index + k)])
            for slot in slots:
                slot.wait(timeout=30)
                slot.release()
        for _ in eng.stream(lambda t, i: [background, replace(sprite, y=i)], fps=500, frames=8):
            pass
        eng.render([background], timeout=30)  # a still frame: no worker
        assert eng.metrics().banded_frames > 0  # the bands path ran too
    assert ours(cyclic_garbage()) == []
