"""Non-temporal stores of long opaque runs give the same bytes as ordinary ones, and the
per-CPU choice of when to use them is read as documented."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from framering.kernels import Delivery, LayerStack, PixelLayer, composite_stack
from framering.kernels.codes import FORMAT_BGR, FORMAT_I420, NO_DELIVERY
from framering.kernels.stack import stream_min_unless_read_back
from framering.kernels.stores import (
    DEFAULT_MIN_PIXELS,
    SMALLEST_MIN_PIXELS,
    check_stream_min,
    choose,
)
from tests.kernels.pictures import converted
from tests.layers import layers, rgba

ZEN5 = "znver5"


def misaligned_frame(pixels: np.ndarray, shift: int) -> np.ndarray:
    """A copy of ``pixels`` whose first pixel sits ``shift`` pixels past a 64-byte boundary,
    so that runs begin anywhere in a cache line."""
    h, w = pixels.shape[:2]
    raw = np.empty(h * w * 4 + 128, np.uint8)
    start = (-raw.ctypes.data) % 64 + 4 * shift
    frame = raw[start : start + h * w * 4].reshape(h, w, 4)
    frame[...] = pixels
    return frame


@st.composite
def wide_stacks(draw: st.DrawFn) -> tuple[np.ndarray, list[PixelLayer]]:
    """Frames wide enough for runs of hundreds of pixels (past the default 512 too), a
    background flagged opaque (the runs that get streamed; its bytes' alpha not always 255,
    which streamed lines must set as ordinary copies do) under a few layers of any kind, and
    a frame start anywhere in a line."""
    w, h = draw(st.integers(64, 720)), draw(st.integers(1, 8))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    start = rgba(rng, h, w, draw(st.sampled_from(("random", "opaque"))), premultiplied=False)
    frame = misaligned_frame(start, draw(st.integers(0, 15)))
    bw, bh = draw(st.integers(1, w + 20)), draw(st.integers(1, h + 4))
    background = PixelLayer(
        rgba(rng, bh, bw, draw(st.sampled_from(("opaque", "random"))), premultiplied=False),
        x=draw(st.integers(-10, 10)),
        y=draw(st.integers(-2, 2)),
        opaque=True,
    )
    above = [draw(layers(w, h, max_side=120)) for _ in range(draw(st.integers(0, 4)))]
    return frame, [background, *above]


@settings(max_examples=200, deadline=None)
@given(
    wide_stacks(),
    st.booleans(),
    st.sampled_from([SMALLEST_MIN_PIXELS, 100, DEFAULT_MIN_PIXELS]),
    st.integers(0, 15),
)
def test_streamed_runs_give_the_bytes_of_ordinary_stores(
    case: tuple[np.ndarray, list[PixelLayer]], clear: bool, stream_min: int, shift: int
) -> None:
    frame, layer_list = case
    h, w = frame.shape[:2]
    stack = LayerStack.prepare(w, h, layer_list)
    plain = frame.copy()
    composite_stack(plain, stack, clear=clear, stream_min=0)
    streamed = misaligned_frame(frame, shift)
    composite_stack(streamed, stack, clear=clear, stream_min=stream_min)
    np.testing.assert_array_equal(streamed, plain)


@settings(max_examples=60, deadline=None)
@given(wide_stacks(), st.data())
def test_streamed_boxes_touch_only_their_boxes(
    case: tuple[np.ndarray, list[PixelLayer]], data: st.DataObject
) -> None:
    frame, layer_list = case
    h, w = frame.shape[:2]
    stack = LayerStack.prepare(w, h, layer_list)
    x0, x1 = sorted(data.draw(st.lists(st.integers(0, w), min_size=2, max_size=2)))
    y0, y1 = sorted(data.draw(st.lists(st.integers(0, h), min_size=2, max_size=2)))
    box = np.array([[x0, y0, x1, y1]])
    plain = frame.copy()
    composite_stack(plain, stack, rects=box, stream_min=0)
    streamed = misaligned_frame(frame, data.draw(st.integers(0, 15)))
    composite_stack(streamed, stack, rects=box, stream_min=SMALLEST_MIN_PIXELS)
    np.testing.assert_array_equal(streamed, plain)  # outside the box: the frame as it was


@pytest.mark.parametrize("fmt", ["bgr", "i420"])
@pytest.mark.parametrize("write_frame", [True, False])
def test_a_delivered_frame_is_the_same_whatever_the_stream_setting(
    fmt: str, write_frame: bool
) -> None:
    """Rows converted as they are composited are read back at once: the kernel keeps its
    ordinary stores there, and the bytes are the same either way."""
    rng = np.random.default_rng(5)
    w, h = 640, 36
    layer_list = [
        PixelLayer(rgba(rng, h, w, "opaque", premultiplied=False), opaque=True),
        PixelLayer(rgba(rng, 20, 90, "random", premultiplied=False), x=300, y=5, opacity=0.7),
    ]
    stack = LayerStack.prepare(w, h, layer_list)
    results = []
    for stream_min in (0, SMALLEST_MIN_PIXELS):
        frame = np.zeros((h, w, 4), np.uint8)
        out = converted(frame, fmt)
        composite_stack(
            frame, stack, deliver=Delivery(fmt, out), write_frame=write_frame, stream_min=stream_min
        )
        results.append((frame, out))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    np.testing.assert_array_equal(results[0][1], results[1][1])


def test_a_pass_whose_rows_are_read_back_at_once_streams_nothing() -> None:
    """The same bytes either way (the test above); what the guard saves is a trip to memory,
    so it is checked as a rule: a delivery converted per band, or a scratch band, means 0."""
    assert stream_min_unless_read_back(512, NO_DELIVERY, 0) == 512
    assert stream_min_unless_read_back(0, NO_DELIVERY, 0) == 0
    for code in (FORMAT_BGR, FORMAT_I420):
        assert stream_min_unless_read_back(512, code, 0) == 0
    assert stream_min_unless_read_back(512, NO_DELIVERY, 4096) == 0


def test_the_choice_is_on_where_it_was_measured_to_win_and_off_elsewhere() -> None:
    assert choose("auto", ZEN5) == DEFAULT_MIN_PIXELS
    assert choose("", ZEN5) == DEFAULT_MIN_PIXELS
    assert choose("auto", "znver3") == DEFAULT_MIN_PIXELS
    assert choose("auto", "znver4") == 0  # not measured
    assert choose("auto", "sapphirerapids") == 0
    assert choose("off", ZEN5) == 0
    assert choose("ON", "sapphirerapids") == DEFAULT_MIN_PIXELS
    assert choose(" 2048 ", "znver4") == 2048


@pytest.mark.parametrize("setting", ["sometimes", "12", "-1", "1e3"])
def test_a_bad_setting_is_refused_with_what_it_may_be(setting: str) -> None:
    with pytest.raises(ValueError, match="FRAMERING_STREAM_STORES must be auto, on, off"):
        choose(setting, ZEN5)


@pytest.mark.parametrize("value", [1, 63, -64, 64.0, True])
def test_a_caller_stream_min_must_be_zero_or_longer_than_a_line(value: object) -> None:
    with pytest.raises(ValueError, match="stream_min must be 0 or an int"):
        check_stream_min(value)
    with pytest.raises(ValueError, match="stream_min"):
        composite_stack(np.zeros((2, 2, 4), np.uint8), [], stream_min=value)  # type: ignore[arg-type]
