"""Layer transforms: each equals the same OpenCV calls made directly, and the cache reuses
its results (and its memory) the way a live loop needs."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from framering.kernels.reference import transform_reference
from framering.kernels.transform import (
    FLIPS,
    INTERPOLATIONS,
    Transform,
    TransformBuffers,
    TransformCache,
    apply_transform,
)


def _picture(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    return rng.integers(0, 256, (height, width, 4), dtype=np.uint8)


def _run(src: np.ndarray, t: Transform) -> np.ndarray:
    return apply_transform(src, t, TransformBuffers(t, src.shape[1], src.shape[0])).copy()


@st.composite
def _transforms(draw: st.DrawFn) -> tuple[np.ndarray, Transform]:
    width = draw(st.integers(1, 48))
    height = draw(st.integers(1, 48))
    crop = None
    if draw(st.booleans()):
        x = draw(st.integers(0, width - 1))
        y = draw(st.integers(0, height - 1))
        crop = (x, y, draw(st.integers(1, width - x)), draw(st.integers(1, height - y)))
    size = None
    if draw(st.booleans()):
        size = (draw(st.integers(1, 64)), draw(st.integers(1, 64)))
    transform = Transform(
        crop=crop,
        flip=draw(st.sampled_from([None, *FLIPS])),
        rotate=draw(st.sampled_from([0, 90, 180, 270])),
        size=size,
        interpolation=draw(st.sampled_from(list(INTERPOLATIONS))),
        angle=draw(st.sampled_from([0.0, 30.0, -45.5, 90.0, 360.0])),
    )
    seed = draw(st.integers(0, 2**32 - 1))
    return _picture(np.random.default_rng(seed), width, height), transform


@settings(max_examples=150, deadline=None)
@given(_transforms())
def test_every_transform_equals_the_same_opencv_calls_made_directly(
    case: tuple[np.ndarray, Transform],
) -> None:
    src, transform = case
    expected = transform_reference(src, transform)
    got = _run(src, transform)
    assert got.shape == (*transform.output_size(src.shape[1], src.shape[0])[::-1], 4)
    assert np.abs(got.astype(int) - expected).max(initial=0) <= 1


@pytest.mark.parametrize("interpolation", list(INTERPOLATIONS))
def test_scaling_1080p_to_a_quarter_matches_cv2_resize(interpolation: str) -> None:
    src = _picture(np.random.default_rng(1), 1920, 1080)
    t = Transform(size=(480, 270), interpolation=interpolation)
    want = cv2.resize(src, (480, 270), interpolation=INTERPOLATIONS[interpolation])
    assert np.array_equal(_run(src, t), want)


def test_rotations_by_quarter_turns_go_clockwise() -> None:
    src = np.zeros((2, 3, 4), np.uint8)
    src[0, 0] = 255  # top-left corner
    assert _run(src, Transform(rotate=90))[0, -1, 0] == 255  # lands top-right
    assert _run(src, Transform(rotate=180))[-1, -1, 0] == 255
    assert _run(src, Transform(rotate=270))[-1, 0, 0] == 255
    assert _run(src, Transform(rotate=90)).shape == (3, 2, 4)


def test_an_angle_turns_clockwise_and_leaves_transparent_corners() -> None:
    src = np.zeros((101, 101, 4), np.uint8)
    src[:, :] = (10, 20, 30, 255)
    src[0:5, 48:53] = (255, 0, 0, 255)  # a red mark at the top centre
    out = _run(src, Transform(angle=90.0, interpolation="nearest"))
    assert out[48:53, 96:101, 0].min() == 255  # the mark went to the right edge
    turned = _run(src, Transform(angle=45.0))
    assert turned[0, 0, 3] == 0  # a corner turned out of the picture
    assert not Transform(angle=45.0).keeps_opacity()
    assert Transform(size=(10, 10), rotate=90).keeps_opacity()


def test_a_crop_alone_copies_the_rectangle() -> None:
    src = _picture(np.random.default_rng(2), 40, 30)
    assert np.array_equal(_run(src, Transform(crop=(5, 6, 7, 8))), src[6:14, 5:12])


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"crop": (0, 0, 0, 4)}, ValueError),
        ({"crop": (0, 0, 4)}, TypeError),
        ({"crop": (0.5, 0, 4, 4)}, TypeError),
        ({"flip": "diagonal"}, ValueError),
        ({"rotate": 45}, ValueError),
        ({"rotate": True}, ValueError),
        ({"size": (0, 10)}, ValueError),
        ({"size": (100_000, 10)}, ValueError),
        ({"size": 10}, TypeError),
        ({"interpolation": "lanczos9"}, ValueError),
        ({"angle": float("nan")}, ValueError),
        ({"center": (1.0,)}, TypeError),
    ],
)
def test_bad_transforms_are_refused_with_the_field_named(kwargs: dict, error: type) -> None:
    with pytest.raises(error):
        Transform(**kwargs)


def test_a_crop_outside_the_picture_is_refused_before_any_opencv_call() -> None:
    with pytest.raises(ValueError, match="does not lie inside"):
        Transform(crop=(10, 10, 30, 30)).output_size(32, 32)
    with pytest.raises(ValueError, match="does not lie inside"):
        TransformBuffers(Transform(crop=(10, 10, 30, 30)), 32, 32)


def test_buffers_made_for_another_size_are_refused() -> None:
    t = Transform(size=(8, 8), flip="both")
    buffers = TransformBuffers(t, 16, 16)
    with pytest.raises(ValueError):
        apply_transform(np.zeros((16, 16, 4), np.uint8), Transform(size=(4, 4)), buffers)
    ok = apply_transform(np.zeros((20, 20, 4), np.uint8), t, buffers)  # output size matches
    assert ok.shape == (8, 8, 4)


def test_the_cache_transforms_a_static_picture_once() -> None:
    cache = TransformCache()
    src = _picture(np.random.default_rng(3), 64, 48)
    t = Transform(size=(32, 24), interpolation="area")
    first, serial = cache.get("a", 0, src, t)
    for _ in range(10):
        again, again_serial = cache.get("a", 0, src, t)
        assert again is first and again_serial == serial
    assert (cache.misses, cache.hits) == (1, 10)


def test_a_new_version_is_transformed_again_into_the_same_buffer() -> None:
    cache = TransformCache()
    rng = np.random.default_rng(4)
    t = Transform(flip="horizontal")
    src = _picture(rng, 16, 16)
    out, serial = cache.get("live", 1, src, t)
    address = out.ctypes.data
    src[...] = _picture(rng, 16, 16)
    out2, serial2 = cache.get("live", 2, src, t)
    assert out2.ctypes.data == address and serial2 == serial
    assert np.array_equal(out2, cv2.flip(src, 1))


def test_an_animated_transform_reuses_dropped_buffers_instead_of_allocating() -> None:
    cache = TransformCache(max_entries=4)
    src = _picture(np.random.default_rng(5), 320, 180)

    def zoom_in_and_out() -> None:  # a new size every frame, 200 frames
        for frame in [*range(100), *range(100, 0, -1)]:
            width = 160 + frame // 2
            cache.get("zoom", 0, src, Transform(size=(width, width * 9 // 16)))

    zoom_in_and_out()
    after_first = cache.allocations
    assert after_first < 60  # bounded by how far the size grows, not by the frame count
    zoom_in_and_out()
    zoom_in_and_out()
    assert cache.allocations == after_first  # later passes live in the same buffers
    assert len(cache) == 4


def test_the_cache_keeps_to_its_budget() -> None:
    cache = TransformCache(budget=1_000_000)
    src = _picture(np.random.default_rng(6), 400, 400)  # 640 kB a result
    for key in range(5):
        cache.get(key, 0, src, Transform(flip="vertical"))
    assert len(cache) <= 2 and cache.nbytes <= 1_300_000


def test_a_frame_using_more_pictures_than_the_cache_holds_keeps_them_all() -> None:
    cache = TransformCache(max_entries=4)
    src = _picture(np.random.default_rng(7), 8, 8)
    cache.begin_frame()
    outputs = [
        cache.get("grid", 0, src, Transform(crop=(i % 8, i // 8, 1, 1)))[0] for i in range(10)
    ]
    for i, out in enumerate(outputs):  # none was dropped and lent to a later one
        assert np.array_equal(out[0, 0], src[i // 8, i % 8])
    assert len(cache) == 10  # over the limit for this frame only
    cache.begin_frame()
    cache.get("next", 0, src, Transform(flip="both"))
    assert len(cache) <= 4 and cache.drops >= 6
