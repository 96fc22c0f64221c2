"""The kernels agree with their float64 numpy twins (``kernels.reference``) on random input.

Tolerance rule (see ``premultiplied_difference``): alpha within 1; each RGB channel within 1
either as straight colour or premultiplied by its own alpha, because straight colour is
ill-conditioned where alpha is low.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from framering.kernels import (
    BlendMode,
    LayerStack,
    PixelLayer,
    composite_layer,
    composite_stack,
    fill,
)
from framering.kernels.reference import (
    composite_layer_reference,
    composite_stack_reference,
    fill_reference,
    premultiplied_difference,
)
from tests.layers import frame_and_layer, frame_and_stack, frames

TOLERANCE = 1.0 + 1e-9


def assert_close(got: np.ndarray, want: np.ndarray) -> None:
    difference = premultiplied_difference(got, want)
    worst = np.unravel_index(np.argmax(difference), difference.shape)
    assert difference.max() <= TOLERANCE, (
        f"max difference {difference.max():.3f} at {worst}: got {got[worst[:2]]}, "
        f"want {want[worst[:2]]}"
    )


@settings(max_examples=400, deadline=None)
@given(frame_and_layer())
def test_one_layer_of_any_mode_matches_reference(case: tuple[np.ndarray, PixelLayer]) -> None:
    frame, layer = case
    got = frame.copy()
    composite_layer(got, layer)
    assert_close(got, composite_layer_reference(frame, layer))


@settings(max_examples=300, deadline=None)
@given(frame_and_layer(modes=st.just(BlendMode.NORMAL)))
def test_normal_layer_matches_reference(case: tuple[np.ndarray, PixelLayer]) -> None:
    frame, layer = case
    got = frame.copy()
    composite_layer(got, layer)
    assert_close(got, composite_layer_reference(frame, layer))


@settings(max_examples=300, deadline=None)
@given(frame_and_stack(), st.booleans())
def test_stack_matches_reference_rounded_after_each_layer(
    case: tuple[np.ndarray, list[PixelLayer]], clear: bool
) -> None:
    """Each layer's step of the whole-stack kernel agrees with the twin's step.

    Checked one step at a time, the twin starting from the kernel's own previous frame: the
    frame is RGBA8 between layers, and a steep blend (color-dodge near Cs = 1 multiplies Cb
    by up to 255) would otherwise turn an earlier, allowed 1-unit difference into 26.
    """
    frame, stack = case
    previous = np.zeros_like(frame) if clear else frame
    for count in range(1, len(stack) + 1):
        got = frame.copy()
        composite_stack(got, stack[:count], clear=clear)
        assert_close(got, composite_layer_reference(previous, stack[count - 1]))
        previous = got


@settings(max_examples=150, deadline=None)
@given(frame_and_stack(), st.data())
def test_row_bands_compose_to_the_whole_frame(
    case: tuple[np.ndarray, list[PixelLayer]], data: st.DataObject
) -> None:
    frame, layer_list = case
    h, w = frame.shape[:2]
    stack = LayerStack.prepare(w, h, layer_list)
    whole = frame.copy()
    composite_stack(whole, stack, clear=False)
    cut = data.draw(st.integers(0, h))
    banded = frame.copy()
    composite_stack(banded, stack, rows=(0, cut), clear=False)
    np.testing.assert_array_equal(banded[cut:], frame[cut:])  # other rows untouched
    composite_stack(banded, stack, rows=(cut, h), clear=False)
    np.testing.assert_array_equal(banded, whole)


def test_reference_workload_sized_frame_matches_reference() -> None:
    """1080p with big layers across every edge, so the chunked fast paths all run."""
    rng = np.random.default_rng(7)
    frame = np.zeros((1080, 1920, 4), np.uint8)
    background = rng.integers(0, 256, (1080, 1920, 4), dtype=np.uint8)
    background[..., 3] = 255
    soft = rng.integers(0, 256, (600, 1000, 4), dtype=np.uint8)
    soft[:, :300, 3] = 0
    soft[:, 300:500, 3] = 255
    stack = [
        PixelLayer(background),
        PixelLayer(soft, x=-100, y=-50, opacity=0.7),
        PixelLayer(soft, x=1500, y=700),
        PixelLayer(soft, x=600, y=300, blend="overlay", opacity=0.5),
    ]
    composite_stack(frame, stack)
    assert_close(frame, composite_stack_reference(1920, 1080, stack))


@settings(max_examples=200, deadline=None)
@given(
    frames(),
    st.tuples(*[st.integers(0, 255)] * 4),
    st.none()
    | st.tuples(st.integers(-50, 50), st.integers(-50, 50), st.integers(0, 60), st.integers(0, 60)),
    st.data(),
)
def test_fill_matches_reference(
    frame: np.ndarray,
    color: tuple[int, int, int, int],
    rect: tuple[int, int, int, int] | None,
    data: st.DataObject,
) -> None:
    h = frame.shape[0]
    y0 = data.draw(st.integers(0, h))
    rows = (y0, data.draw(st.integers(y0, h)))
    got = frame.copy()
    fill(got, color, rect=rect, rows=rows)
    want = fill_reference(frame, color, rect)
    np.testing.assert_array_equal(got[rows[0] : rows[1]], want[rows[0] : rows[1]])
    np.testing.assert_array_equal(got[: rows[0]], frame[: rows[0]])  # outside the band: as was
    np.testing.assert_array_equal(got[rows[1] :], frame[rows[1] :])
