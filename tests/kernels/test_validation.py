"""Bad input is refused in Python with a clear TypeError/ValueError, before any kernel runs."""

from __future__ import annotations

import numpy as np
import pytest

from framering.kernels import (
    BLEND_MODE_NAMES,
    BlendMode,
    LayerStack,
    PixelLayer,
    composite_layer,
    composite_stack,
    fill,
)

FRAME = (8, 10, 4)


def frame() -> np.ndarray:
    return np.zeros(FRAME, np.uint8)


def tile() -> np.ndarray:
    return np.full((2, 2, 4), 200, np.uint8)


BAD_PIXELS = [
    (np.zeros((2, 2, 4), np.float32), TypeError, "dtype uint8"),
    (np.zeros((2, 2, 3), np.uint8), ValueError, r"shape \(height, width, 4\)"),
    (np.zeros((2, 2), np.uint8), ValueError, "shape"),
    (np.zeros((0, 2, 4), np.uint8), ValueError, "between 1x1"),
    (np.zeros((4, 4, 4), np.uint8)[:, ::2], ValueError, "C-contiguous"),
    ([[0, 0, 0, 0]], TypeError, "numpy.ndarray"),
    (np.frombuffer(bytearray(17), np.uint8, 16, offset=1).reshape(2, 2, 4), ValueError, "4-byte"),
]


@pytest.mark.parametrize(("pixels", "error", "message"), BAD_PIXELS)
def test_bad_layer_pixels_are_refused(pixels: object, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        composite_layer(frame(), PixelLayer(pixels))  # type: ignore[arg-type]


@pytest.mark.parametrize(("pixels", "error", "message"), BAD_PIXELS)
def test_bad_frames_are_refused(pixels: object, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        composite_stack(pixels, [PixelLayer(tile())])  # type: ignore[arg-type]


def test_read_only_frame_is_refused() -> None:
    target = frame()
    target.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        composite_stack(target, [PixelLayer(tile())])


@pytest.mark.parametrize(
    ("field", "value", "error", "message"),
    [
        ("opacity", float("nan"), ValueError, r"finite float in \[0, 1\]"),
        ("opacity", float("inf"), ValueError, "finite"),
        ("opacity", 1.5, ValueError, r"\[0, 1\]"),
        ("opacity", -0.1, ValueError, r"\[0, 1\]"),
        ("opacity", "0.5", TypeError, "float"),
        ("x", 2**31, ValueError, "int32"),
        ("y", -(2**31) - 1, ValueError, "int32"),
        ("x", 1.5, TypeError, "int"),
        ("y", True, TypeError, "int"),
        ("blend", "glow", ValueError, "unknown blend mode 'glow'"),
        ("blend", 3, TypeError, "blend mode"),
        ("premultiplied", "yes", TypeError, "bool"),
    ],
)
def test_bad_layer_fields_are_refused(field: str, value: object, error: type, message: str) -> None:
    layer = PixelLayer(tile(), **{field: value})  # type: ignore[arg-type]
    target = frame()
    with pytest.raises(error, match=message):
        composite_layer(target, layer)
    assert (target == 0).all()


@pytest.mark.parametrize("rows", [(0, 9), (-1, 3), (5, 2), (0,), [0, 1], (0.5, 2)])
def test_bad_row_bands_are_refused(rows: object) -> None:
    with pytest.raises((TypeError, ValueError), match="rows"):
        composite_stack(frame(), [PixelLayer(tile())], rows=rows)  # type: ignore[arg-type]


def test_stack_prepared_for_another_size_is_refused() -> None:
    stack = LayerStack.prepare(5, 5, [PixelLayer(tile())])
    with pytest.raises(ValueError, match="prepared for 5x5"):
        composite_stack(frame(), stack)


@pytest.mark.parametrize(
    ("color", "error"),
    [
        ((1, 2, 3), TypeError),
        ((1, 2, 3, 256), ValueError),
        ((1, 2, 3, -1), ValueError),
        ((1.0, 2, 3, 4), TypeError),
        ("red", TypeError),
    ],
)
def test_bad_fill_colors_are_refused(color: object, error: type) -> None:
    with pytest.raises(error, match="color"):
        fill(frame(), color)  # type: ignore[arg-type]


def test_bad_fill_rect_is_refused() -> None:
    with pytest.raises(ValueError, match="rect width and height"):
        fill(frame(), (1, 2, 3, 4), rect=(0, 0, -1, 2))
    with pytest.raises(TypeError, match="rect"):
        fill(frame(), (1, 2, 3, 4), rect=(0, 0, 1))  # type: ignore[arg-type]


def test_from_buffers_refuses_bad_columns() -> None:
    one = np.zeros(1, np.int64)
    good = {
        "index": one,
        "x": one,
        "y": one,
        "opacity": np.ones(1),
        "modes": one,
        "premultiplied": np.zeros(1, bool),
    }
    LayerStack.from_buffers(10, 8, [tile()], **good)
    for field, value, message in [
        ("index", np.array([1]), "index values"),
        ("x", np.array([2**40]), "int32"),
        ("opacity", np.array([np.nan]), "finite"),
        ("modes", np.array([len(BlendMode)]), "BlendMode"),
        ("y", np.zeros(2, np.int64), "1-d numpy array of 1"),
    ]:
        with pytest.raises((TypeError, ValueError), match=message):
            LayerStack.from_buffers(10, 8, [tile()], **{**good, field: value})


def test_blend_modes_parse_by_css_name() -> None:
    assert BlendMode.parse("color-dodge") is BlendMode.COLOR_DODGE
    assert BlendMode.parse("Soft_Light") is BlendMode.SOFT_LIGHT
    assert len(BLEND_MODE_NAMES) == 14 and "plus-lighter" not in BLEND_MODE_NAMES


def test_prepared_stack_cannot_be_altered() -> None:
    stack = LayerStack.prepare(10, 8, [PixelLayer(tile())])
    with pytest.raises(ValueError, match="read-only"):
        stack.geometry[0, 2] = 512
    with pytest.raises(ValueError, match="read-only"):
        stack.addresses[0] = 16
    with pytest.raises(AttributeError, match="immutable"):
        stack.addresses = np.zeros(1, np.int64)


def test_ndarray_subclass_cannot_lie_about_its_shape() -> None:
    class Liar(np.ndarray):
        shape = property(lambda self: (4096, 4096, 4))  # type: ignore[assignment]

    target = np.zeros((64, 64, 4), np.uint8)
    composite_stack(target, [PixelLayer(np.full((2, 2, 4), 255, np.uint8).view(Liar))])
    assert (target[:2, :2] == 255).all() and (target[2:] == 0).all()


def test_frame_that_is_also_a_layer_is_refused() -> None:
    target = frame()
    with pytest.raises(ValueError, match="shares memory"):
        composite_stack(target, [PixelLayer(target, x=1)])
    with pytest.raises(ValueError, match="shares memory"):
        composite_layer(target, PixelLayer(target[2:4]))
