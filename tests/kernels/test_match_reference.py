"""The kernels agree with their float64 numpy twins (``kernels.reference``) on random input.

Tolerance rules: one layer (``premultiplied_difference``): alpha within 1, each RGB channel
within 1 either as straight colour or premultiplied by its own alpha, because straight colour
is ill-conditioned where alpha is low. A stack, accumulated and rounded once, against the
exact float64 value of the whole stack (``stack_errors``): 1 where alpha >= 128, premultiplied
colour within 1.5 everywhere.
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
from framering.kernels.accumulate import CHUNK
from framering.kernels.reference import (
    composite_layer_reference,
    composite_stack_exact,
    fill_reference,
    premultiplied_difference,
    stack_errors,
    stack_within_tolerance,
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


def assert_stack_close(got: np.ndarray, exact: np.ndarray) -> None:
    assert stack_within_tolerance(got, exact), f"errors {stack_errors(got, exact)}"


@settings(max_examples=400, deadline=None)
@given(frame_and_stack(max_layers=6), st.booleans())
def test_stack_matches_the_exact_reference_of_the_whole_stack(
    case: tuple[np.ndarray, list[PixelLayer]], clear: bool
) -> None:
    """Accumulated and rounded once: within 1 of the exact float64 stack where alpha >= 128,
    premultiplied colour within 1.5 everywhere (``reference.stack_errors``)."""
    frame, stack = case
    h, w = frame.shape[:2]
    got = frame.copy()
    composite_stack(got, stack, clear=clear)
    assert_stack_close(got, composite_stack_exact(w, h, stack, None if clear else frame))


def _opaque_background_or_none(
    draw: st.DrawFn, rng: np.random.Generator, width: int, height: int
) -> list[PixelLayer]:
    """A frame-sized background flagged opaque, or nothing: the two starts a run can have."""
    if not draw(st.booleans()):
        return []
    background = rng.integers(0, 256, (height, width, 4), dtype=np.uint8)
    background[..., 3] = 255
    return [PixelLayer(background, opaque=True)]


@st.composite
def wide_normal_stacks(draw: st.DrawFn) -> tuple[np.ndarray, list[PixelLayer]]:
    """Rows wider than the accumulator, of straight normal layers (the fused passes), over
    an opaque background or nothing, with opaque copies among them now and then."""
    width = draw(st.integers(CHUNK - 20, 3 * CHUNK + 20))
    height = draw(st.integers(1, 4))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    layers = _opaque_background_or_none(draw, rng, width, height)
    for _ in range(draw(st.integers(1, 7))):
        w = draw(st.integers(1, width + 10))
        pixels = rng.integers(0, 256, (height, w, 4), dtype=np.uint8)
        copy = draw(st.integers(0, 5)) == 0
        if copy:
            pixels[..., 3] = 255
        layers.append(
            PixelLayer(
                pixels,
                x=draw(st.integers(-w, width)),
                opacity=1.0 if copy else draw(st.floats(0.0, 1.0)),
                opaque=True if copy else None,
            )
        )
    return rng.integers(0, 256, (height, width, 4), dtype=np.uint8), layers


@st.composite
def deep_normal_stacks(draw: st.DrawFn) -> tuple[np.ndarray, list[PixelLayer]]:
    """Two to eight translucent layers nearly as wide as rows wider than the accumulator, over
    an opaque background or nothing: runs that four to eight layers cover, which take the
    fused passes of two layers each."""
    width = draw(st.integers(CHUNK - 20, 2 * CHUNK + 20))
    height = draw(st.integers(1, 3))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    layers = _opaque_background_or_none(draw, rng, width, height)
    for _ in range(draw(st.integers(2, 8))):
        w = draw(st.integers(width - 40, width + 10))
        layers.append(
            PixelLayer(
                rng.integers(0, 256, (height, w, 4), dtype=np.uint8),
                x=draw(st.integers(-20, 20)),
                opacity=draw(st.floats(0.05, 1.0)),
            )
        )
    return rng.integers(0, 256, (height, width, 4), dtype=np.uint8), layers


@settings(max_examples=200, deadline=None)
@given(st.one_of(wide_normal_stacks(), deep_normal_stacks()), st.booleans(), st.data())
def test_wide_rows_of_normal_layers_match_the_reference_and_their_boxes(
    case: tuple[np.ndarray, list[PixelLayer]], clear: bool, data: st.DataObject
) -> None:
    """Runs cut at every span edge, two layers a pass, tails done twice: exact enough, and a
    box of columns gets the bytes of the whole row."""
    frame, stack = case
    h, w = frame.shape[:2]
    whole = frame.copy()
    composite_stack(whole, stack, clear=clear)
    assert_stack_close(whole, composite_stack_exact(w, h, stack, None if clear else frame))
    x0, x1 = sorted(data.draw(st.lists(st.integers(0, w), min_size=2, max_size=2)))
    got = frame.copy()
    composite_stack(got, stack, rects=[[x0, 0, x1, h]], clear=clear)
    np.testing.assert_array_equal(got[:, x0:x1], whole[:, x0:x1])
    np.testing.assert_array_equal(got[:, :x0], frame[:, :x0])
    np.testing.assert_array_equal(got[:, x1:], frame[:, x1:])


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
    assert_stack_close(frame, composite_stack_exact(1920, 1080, stack))


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


@settings(max_examples=150, deadline=None)
@given(st.one_of(wide_normal_stacks(), deep_normal_stacks()), st.booleans())
def test_fused_passes_give_the_bytes_of_layer_by_layer_accumulation(
    case: tuple[np.ndarray, list[PixelLayer]], clear: bool
) -> None:
    """A fully transparent ``multiply`` layer on top changes no pixel, but it sends every row
    through the accumulator one layer at a time instead of the fused passes: both must give
    the same bytes."""
    frame, stack = case
    h, w = frame.shape[:2]
    invisible = np.zeros((h, w, 4), np.uint8)
    fused, layered = frame.copy(), frame.copy()
    composite_stack(fused, stack, clear=clear)
    composite_stack(layered, [*stack, PixelLayer(invisible, blend="multiply")], clear=clear)
    np.testing.assert_array_equal(layered, fused)
