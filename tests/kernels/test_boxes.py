"""Boxes of a frame composited alone get exactly the bytes of the whole frame (damage repair),
delivery formats included, and nothing outside them is touched."""

from __future__ import annotations

from dataclasses import replace
from itertools import pairwise

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from framering.kernels import Delivery, FrameFormat, LayerStack, PixelLayer, composite_stack
from framering.kernels.reference import composite_stack_exact, stack_within_tolerance
from framering.kernels.validate import check_rects
from tests.kernels.pictures import PACKED, YUV420, converted, picture
from tests.layers import frame_and_stack, frames, layers


@st.composite
def disjoint_boxes(draw: st.DrawFn, width: int, height: int, step: int = 1) -> np.ndarray:
    """Some cells of a random grid over the frame (bounds multiples of ``step``)."""

    def cuts(side: int) -> list[int]:
        inner = draw(st.lists(st.integers(0, side // step), max_size=4))
        return sorted({0, side, *(c * step for c in inner)})

    xs, ys = cuts(width), cuts(height)
    cells = [(x0, y0, x1, y1) for x0, x1 in pairwise(xs) for y0, y1 in pairwise(ys)]
    chosen = [cell for cell in cells if draw(st.booleans())]
    return np.array(chosen, np.int64).reshape(-1, 4)


def merged(outside: np.ndarray, inside: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """``outside`` with each box's pixels taken from ``inside``."""
    out = outside.copy()
    for x0, y0, x1, y1 in boxes.tolist():
        out[y0:y1, x0:x1] = inside[y0:y1, x0:x1]
    return out


@settings(max_examples=300, deadline=None)
@given(frame_and_stack(max_layers=6), st.booleans(), st.data())
def test_boxes_get_the_bytes_of_the_whole_frame_and_nothing_else_is_touched(
    case: tuple[np.ndarray, list[PixelLayer]], clear: bool, data: st.DataObject
) -> None:
    frame, layer_list = case
    h, w = frame.shape[:2]
    stack = LayerStack.prepare(w, h, layer_list)
    whole = frame.copy()
    composite_stack(whole, stack, clear=clear)
    boxes = data.draw(disjoint_boxes(w, h))
    got = frame.copy()
    composite_stack(got, stack, rects=boxes, clear=clear)
    np.testing.assert_array_equal(got, merged(frame, whole, boxes))


@settings(max_examples=150, deadline=None)
@given(frame_and_stack(max_layers=6), st.data())
def test_a_wrong_opaque_promise_gives_the_same_pixels_in_a_box_as_in_the_frame(
    case: tuple[np.ndarray, list[PixelLayer]], data: st.DataObject
) -> None:
    """``opaque=True`` on layers whose alpha is not 255: wrong pixels, but the same ones."""
    frame, layer_list = case
    h, w = frame.shape[:2]
    lying = [
        replace(layer, opaque=data.draw(st.booleans()) or layer.opaque) for layer in layer_list
    ]
    stack = LayerStack.prepare(w, h, lying)
    whole = frame.copy()
    composite_stack(whole, stack)
    boxes = data.draw(disjoint_boxes(w, h))
    got = frame.copy()
    composite_stack(got, stack, rects=boxes)
    np.testing.assert_array_equal(got, merged(frame, whole, boxes))


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_a_box_over_many_layers_of_one_picture_matches_the_whole_frame(
    data: st.DataObject,
) -> None:
    """Layers that share pictures, cross the box's edges and occlude each other."""
    frame = data.draw(frames(max_side=64))
    h, w = frame.shape[:2]
    layer_list = [data.draw(layers(w, h, max_side=70)) for _ in range(data.draw(st.integers(1, 8)))]
    stack = LayerStack.prepare(w, h, layer_list)
    whole = np.zeros_like(frame)
    composite_stack(whole, stack)
    x0, x1 = sorted(data.draw(st.lists(st.integers(0, w), min_size=2, max_size=2)))
    y0, y1 = sorted(data.draw(st.lists(st.integers(0, h), min_size=2, max_size=2)))
    box = np.array([[x0, y0, x1, y1]])
    got = frame.copy()
    composite_stack(got, stack, rects=box)
    np.testing.assert_array_equal(got, merged(frame, whole, box))


@pytest.mark.parametrize("fmt", PACKED + YUV420)
@pytest.mark.parametrize("write_frame", [True, False])
@settings(max_examples=25, deadline=None)
@given(case=frame_and_stack(max_layers=4), data=st.data())
def test_delivered_boxes_convert_the_boxes_and_keep_the_rest_of_the_delivery(
    fmt: str, write_frame: bool, case: tuple[np.ndarray, list[PixelLayer]], data: st.DataObject
) -> None:
    frame, layer_list = case
    h, w = frame.shape[:2]
    h, w = h + h % 2, w + w % 2  # 4:2:0 needs even sizes
    frame = np.resize(frame, (h, w, 4))
    stack = LayerStack.prepare(w, h, layer_list)
    whole = np.empty_like(frame)
    composite_stack(whole, stack)
    before = picture(data.draw(st.integers(0, 2**32 - 1)), h, w)
    step = 2 if FrameFormat(fmt).yuv420 else 1
    boxes = data.draw(disjoint_boxes(w, h, step))
    out = converted(before, fmt)  # what the delivery held: the slot's previous frame
    target = before.copy()
    composite_stack(target, stack, rects=boxes, deliver=Delivery(fmt, out), write_frame=write_frame)
    expected = merged(before, whole, boxes)
    np.testing.assert_array_equal(out, converted(expected, fmt))
    np.testing.assert_array_equal(target, expected if write_frame else before)


def test_boxes_are_refused_when_they_overlap_leave_the_frame_or_split_chroma() -> None:
    frame = np.zeros((8, 8, 4), np.uint8)
    layer = [PixelLayer(np.full((8, 8, 4), 255, np.uint8))]
    with pytest.raises(ValueError, match="overlap"):
        composite_stack(frame, layer, rects=[(0, 0, 4, 4), (3, 3, 6, 6)])
    with pytest.raises(ValueError, match="x1 <= 8"):
        composite_stack(frame, layer, rects=[(0, 0, 9, 4)])
    with pytest.raises(ValueError, match="shape"):
        composite_stack(frame, layer, rects=[(0, 0, 4)])
    with pytest.raises(TypeError, match="boxes of ints"):
        composite_stack(frame, layer, rects=[("a", 0, 1, 1)])
    with pytest.raises(ValueError, match="rows or rects"):
        composite_stack(frame, layer, rows=(0, 4), rects=[(0, 0, 4, 4)])
    delivery = Delivery("nv12", np.zeros((12, 8), np.uint8))
    with pytest.raises(ValueError, match="even"):
        composite_stack(frame, layer, rects=[(1, 0, 4, 4)], deliver=delivery)
    composite_stack(frame, layer, rects=[(2, 2, 2, 6), (0, 0, 0, 0)])  # empty boxes: nothing
    assert not frame.any()


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 40), st.integers(0, 30), st.integers(0, 40), st.integers(0, 30)
        ).map(lambda b: (min(b[0], b[2]), min(b[1], b[3]), max(b[0], b[2]), max(b[1], b[3]))),
        max_size=40,
    )
)
def test_boxes_are_refused_exactly_when_two_non_empty_ones_overlap(
    boxes: list[tuple[int, int, int, int]],
) -> None:
    """Few boxes are checked in Python, many with numpy: both refuse the same boxes."""
    nonempty = [b for b in boxes if b[0] < b[2] and b[1] < b[3]]
    overlapping = any(
        a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]
        for i, a in enumerate(nonempty)
        for b in nonempty[i + 1 :]
    )
    if overlapping:
        with pytest.raises(ValueError, match="overlap"):
            check_rects(boxes, 40, 30)
    else:
        checked = check_rects(boxes, 40, 30)
        assert checked.tolist() == [list(b) for b in nonempty] and not checked.flags.writeable


@pytest.mark.parametrize("count", [2, 16, 17, 40])
def test_many_disjoint_boxes_pass_and_one_overlap_among_them_is_refused(count: int) -> None:
    grid = [
        (4 * (i % 10), 3 * (i // 10), 4 * (i % 10) + 4, 3 * (i // 10) + 3) for i in range(count)
    ]
    assert check_rects(grid, 40, 30).tolist() == [list(b) for b in grid]
    with pytest.raises(ValueError, match="overlap"):
        check_rects([*grid, (3, 2, 5, 4)], 40, 30)  # over the first four


def test_rows_of_more_runs_than_a_plan_has_room_for_match_the_reference_alone_and_in_boxes() -> (
    None
):
    # 60 staggered translucent layers over an opaque background: each row is cut into ~120
    # runs of up to 60 layers, far more covers than the row plan keeps (8 per layer + 64), so
    # the kernel falls back to the accumulator for those clusters
    rng = np.random.default_rng(7)
    w, h = 400, 24
    background = rng.integers(0, 256, (h, w, 4), np.uint8)
    background[..., 3] = 255
    layer_list = [PixelLayer(background, opaque=True)]
    for i in range(60):
        pixels = rng.integers(0, 256, (h - i % 5, 150), np.uint8).repeat(4).reshape(-1, 150, 4)
        layer_list.append(PixelLayer(np.ascontiguousarray(pixels), 3 * i, i % 5, opacity=0.7))
    stack = LayerStack.prepare(w, h, layer_list)
    whole = np.zeros((h, w, 4), np.uint8)
    composite_stack(whole, stack)
    assert stack_within_tolerance(whole, composite_stack_exact(w, h, layer_list))
    boxes = np.array([[0, 0, 97, 11], [97, 0, 400, 11], [0, 11, 250, 24], [250, 11, 400, 24]])
    got = np.zeros((h, w, 4), np.uint8)
    composite_stack(got, stack, rects=boxes)
    np.testing.assert_array_equal(got, whole)
