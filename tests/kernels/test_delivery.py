"""Delivery fused into the blend: the same bytes as compositing and then convert_frame, in bands
of rows, without writing the frame, and the checks that refuse what the kernel could not do."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import framering.kernels.stack
from framering.kernels import (
    BlendMode,
    Delivery,
    FrameFormat,
    LayerStack,
    PixelLayer,
    composite_stack,
)
from tests.kernels.pictures import PACKED, YUV420, converted, unaligned
from tests.layers import rgba


def scene(seed: int, w: int, h: int) -> list[PixelLayer]:
    """An opaque background, an opaque inset, a soft overlay and a multiply sprite."""
    rng = np.random.default_rng(seed)
    return [
        PixelLayer(rgba(rng, h, w, "opaque", False)),
        PixelLayer(rgba(rng, max(h // 2, 1), max(w // 2, 1), "opaque", False), x=3, y=5),
        PixelLayer(rgba(rng, max(h // 3, 1), w, "random", False), y=h // 2, opacity=0.8),
        PixelLayer(rgba(rng, 9, 11, "random", True), x=w - 6, y=-2, blend=BlendMode.MULTIPLY),
    ]


def delivered(
    frame: np.ndarray, layers: list[PixelLayer], fmt: str, rows: tuple[int, int] | None
) -> np.ndarray:
    h, w = frame.shape[:2]
    out = np.full(FrameFormat(fmt).shape(w, h), 7, np.uint8)
    delivery = Delivery(fmt, out, matrix="bt601", value_range="full")
    composite_stack(frame, layers, rows=rows, deliver=delivery)
    return out


@pytest.mark.parametrize("fmt", PACKED + YUV420)
@pytest.mark.parametrize("band_rows", [2, 6, 128])
def test_delivery_equals_convert_frame_after_compositing(
    fmt: str, band_rows: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(framering.kernels.stack, "DELIVER_BAND_ROWS", band_rows)
    h, w = 30, 42
    layers = scene(6, w, h)
    plain = np.empty((h, w, 4), np.uint8)
    composite_stack(plain, layers)
    want = converted(plain, fmt, matrix="bt601", value_range="full")
    frame = np.empty((h, w, 4), np.uint8)
    np.testing.assert_array_equal(delivered(frame, layers, fmt, None), want)
    np.testing.assert_array_equal(frame, plain)  # the frame is written as without delivery

    # bands of rows deliver their rows only, and compose to the whole delivery
    frame = np.empty((h, w, 4), np.uint8)
    out = np.full(want.shape, 7, np.uint8)
    delivery = Delivery(fmt, out, matrix="bt601", value_range="full")
    for rows in [(0, 10), (10, 14), (14, 14), (14, 30)]:
        composite_stack(frame, layers, rows=rows, deliver=delivery)
        if rows == (0, 10):
            if fmt in YUV420:
                np.testing.assert_array_equal(out[:10], want[:10])  # luma rows
                assert (out[10:h].astype(int) == 7).all()
            else:
                np.testing.assert_array_equal(out[:10], want[:10])
                assert (out[10:].astype(int) == 7).all()
    np.testing.assert_array_equal(out, want)


@settings(max_examples=30, deadline=None)
@given(
    st.integers(1, 12).map(lambda n: 2 * n),
    st.integers(1, 20).map(lambda n: 2 * n),
    st.integers(0, 2**32 - 1),
    st.sampled_from(PACKED + YUV420),
)
def test_delivery_of_any_size_equals_convert_frame(h: int, w: int, seed: int, fmt: str) -> None:
    layers = scene(seed, w, h)
    plain = np.empty((h, w, 4), np.uint8)
    composite_stack(plain, layers)
    want = converted(plain, fmt, matrix="bt601", value_range="full")
    frame = np.empty((h, w, 4), np.uint8)
    np.testing.assert_array_equal(delivered(frame, layers, fmt, None), want)


def test_rgba_delivery_into_the_frame_itself_converts_nothing() -> None:
    layers = scene(7, 16, 8)
    frame = np.empty((8, 16, 4), np.uint8)
    composite_stack(frame, layers, deliver=Delivery("rgba", frame))
    plain = np.empty_like(frame)
    composite_stack(plain, layers)
    np.testing.assert_array_equal(frame, plain)
    out = np.empty_like(frame)  # another buffer: the rows are copied into it
    composite_stack(frame, layers, deliver=Delivery("rgba", out))
    np.testing.assert_array_equal(out, plain)


def test_a_delivery_is_reusable_and_immutable() -> None:
    out = np.empty((12, 8), np.uint8)
    delivery = Delivery("nv12", out, matrix="bt709", value_range="limited")
    assert (delivery.width, delivery.height, delivery.format) == (8, 8, FrameFormat.NV12)
    with pytest.raises(AttributeError):
        delivery.out = np.empty((12, 8), np.uint8)  # type: ignore[misc]
    stack = LayerStack.prepare(8, 8, scene(8, 8, 8))
    for seed in (1, 2):
        layers = scene(seed, 8, 8)
        frame = np.empty((8, 8, 4), np.uint8)
        composite_stack(frame, layers, deliver=delivery)
        np.testing.assert_array_equal(out, converted(frame, "nv12"))
    composite_stack(np.empty((8, 8, 4), np.uint8), stack, deliver=delivery)


def test_bad_deliveries_are_refused() -> None:
    layers = scene(9, 12, 10)
    frame = np.empty((10, 12, 4), np.uint8)
    with pytest.raises(ValueError, match="even numbers"):
        composite_stack(
            frame, layers, rows=(1, 10), deliver=Delivery("i420", np.empty((15, 12), np.uint8))
        )
    with pytest.raises(ValueError, match="even numbers"):
        composite_stack(
            frame, layers, rows=(0, 5), deliver=Delivery("nv12", np.empty((15, 12), np.uint8))
        )
    composite_stack(
        frame, layers, rows=(1, 5), deliver=Delivery("bgr", np.empty((10, 12, 3), np.uint8))
    )
    with pytest.raises(ValueError, match="shape"):
        Delivery("i420", np.empty((10, 12), np.uint8))  # 10 rows is not H * 3 / 2
    with pytest.raises(ValueError, match="shape"):
        Delivery("bgr", np.empty((10, 12, 4), np.uint8))
    with pytest.raises(ValueError, match="even width and height"):
        Delivery("nv12", np.empty((15, 11), np.uint8))
    with pytest.raises(TypeError, match="uint8"):
        Delivery("bgra", np.empty((10, 12, 4), np.float32))
    with pytest.raises(ValueError, match="matrix"):
        Delivery("i420", np.empty((15, 12), np.uint8), matrix="bt2020")
    with pytest.raises(ValueError, match="read-only"):
        frozen = np.empty((10, 12, 3), np.uint8)
        frozen.setflags(write=False)
        Delivery("bgr", frozen)
    with pytest.raises(ValueError, match="4-byte boundary"):
        Delivery("bgra", unaligned((10, 12, 4), 1))
    with pytest.raises(ValueError, match="12x10"):  # made for another frame size
        composite_stack(frame, layers, deliver=Delivery("bgr", np.empty((10, 14, 3), np.uint8)))
    with pytest.raises(TypeError, match="Delivery"):
        composite_stack(frame, layers, deliver=np.empty((10, 12, 3), np.uint8))  # type: ignore[arg-type]
    # out aliasing the frame, or a layer the kernel has still to read
    with pytest.raises(ValueError, match="shares memory with the frame"):
        composite_stack(frame, layers, deliver=Delivery("bgra", frame))
    rows = np.zeros((11, 12, 4), np.uint8)  # rgba: the frame itself is fine, an overlap is not
    with pytest.raises(ValueError, match="shares memory with the frame"):
        composite_stack(rows[:10], layers, deliver=Delivery("rgba", rows[1:]))
    background = np.zeros((10, 12, 4), np.uint8)
    with pytest.raises(ValueError, match="one of the layers"):
        composite_stack(frame, [PixelLayer(background)], deliver=Delivery("bgra", background))


@pytest.mark.parametrize("fmt", PACKED + YUV420)
@pytest.mark.parametrize("band_rows", [2, 6, 128])
def test_a_delivery_without_writing_the_frame_is_the_same_and_leaves_the_frame_alone(
    fmt: str, band_rows: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(framering.kernels.stack, "DELIVER_BAND_ROWS", band_rows)
    h, w = 30, 42
    layers = scene(7, w, h)
    plain = np.empty((h, w, 4), np.uint8)
    composite_stack(plain, layers)
    want = converted(plain, fmt, matrix="bt709", value_range="limited")
    frame = np.full((h, w, 4), 99, np.uint8)
    out = np.full(want.shape, 7, np.uint8)
    delivery = Delivery(fmt, out)
    composite_stack(frame, layers, deliver=delivery, write_frame=False)
    np.testing.assert_array_equal(out, want)
    assert (frame == 99).all()  # neither read nor written
    out[...] = 7
    for rows in [(0, 10), (10, 14), (14, 30)]:  # in bands, with the same scratch
        composite_stack(frame, layers, rows=rows, deliver=delivery, write_frame=False)
    np.testing.assert_array_equal(out, want)


def test_write_frame_false_needs_a_separate_delivery_and_a_clear_frame() -> None:
    frame = np.zeros((4, 4, 4), np.uint8)
    layers = [PixelLayer(np.full((4, 4, 4), 255, np.uint8))]
    with pytest.raises(ValueError, match="needs a deliver"):
        composite_stack(frame, layers, write_frame=False)
    delivery = Delivery("i420", np.zeros((6, 4), np.uint8))
    with pytest.raises(ValueError, match="clear=True"):
        composite_stack(frame, layers, deliver=delivery, clear=False, write_frame=False)
    with pytest.raises(ValueError, match="another buffer"):
        composite_stack(frame, layers, deliver=Delivery("rgba", frame), write_frame=False)
