"""Frame formats: out for encoders, in from cameras and decoders, and delivery fused into the
blend; against cv2.cvtColor, against the float64 formulas and against each other.

Fixed-point tolerance: the kernels compute YUV with int32 coefficients scaled by 2**22 (2**20
from YUV), which moves a value by at most 4e-4 (5e-4) of a unit from the exact formula, so a
byte is within 0.5 + 1e-3 of the exact value instead of 0.5 (``framering.kernels.yuv``).
"""

from __future__ import annotations

import cv2
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
    convert_frame,
    convert_to_rgba,
    source_shape,
)
from framering.kernels.reference import (
    packed_reference,
    rgb_from_yuv420_reference,
    rgba_from_packed_reference,
    yuv420_reference,
)
from tests.layers import rgba

# beyond the 0.5 of rounding: the fixed-point coefficients' error (module docstring)
FIXED_POINT_SLACK = 1e-3
MATRICES = ["bt601", "bt709"]
RANGES = ["limited", "full"]
PACKED = ["rgba", "bgra", "rgb", "bgr"]
YUV420 = ["i420", "nv12"]


def picture(seed: int, h: int, w: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 4), dtype=np.uint8)


def smooth(h: int, w: int) -> np.ndarray:
    """A gradient picture: neighbouring pixels nearly alike, as in camera pictures."""
    ys, xs = np.mgrid[0:h, 0:w]
    frame = np.empty((h, w, 4), np.uint8)
    frame[..., 0] = xs * 255 // max(w - 1, 1)
    frame[..., 1] = ys * 255 // max(h - 1, 1)
    frame[..., 2] = (xs + ys) * 127 // max(w + h - 2, 1)
    frame[..., 3] = 255
    return frame


def converted(frame: np.ndarray, fmt: str, **kwargs: str) -> np.ndarray:
    h, w = frame.shape[:2]
    out = np.empty(FrameFormat(fmt).shape(w, h), np.uint8)
    return convert_frame(frame, out, fmt, **kwargs)


def to_rgba(src: np.ndarray, fmt: str, h: int, w: int, **kwargs: str) -> np.ndarray:
    return convert_to_rgba(src, fmt, np.empty((h, w, 4), np.uint8), **kwargs)


def unaligned(shape: tuple[int, ...], offset: int) -> np.ndarray:
    """An empty C-contiguous uint8 array starting ``offset`` bytes past an aligned address."""
    size = int(np.prod(shape))
    return np.empty(size + 8, np.uint8)[offset : offset + size].reshape(shape)


# ---------------------------------------------------------------------------------------------
# formats


def test_formats_have_cv2_shapes_and_sizes() -> None:
    expected = {
        "rgba": (6, 10, 4),
        "bgra": (6, 10, 4),
        "rgb": (6, 10, 3),
        "bgr": (6, 10, 3),
        "i420": (9, 10),
        "nv12": (9, 10),
    }
    for name, shape in expected.items():
        fmt = FrameFormat(name)
        assert fmt.shape(10, 6) == shape == source_shape(name, 10, 6)
        assert fmt.nbytes(10, 6) == int(np.prod(shape))
    # the ring header stores a format as its index: the old ones keep theirs
    assert [f.value for f in FrameFormat][:5] == ["rgba", "bgra", "bgr", "i420", "nv12"]


def test_yuv420_planes_lie_where_cv2_puts_them() -> None:
    # 10x6: 60 luma bytes, then I420's 5x3 Cb plane (15 bytes) and Cr plane; NV12's 3 rows of
    # 10 bytes, Cb Cr Cb Cr ...
    assert FrameFormat.I420.planes(10, 6) == (60, 75, 1, 5)
    assert FrameFormat.NV12.planes(10, 6) == (60, 61, 2, 10)
    blocks = np.arange(3)[:, None], np.arange(5)[None, :]
    # pure blue, BT.601 limited: Y 41, Cb 240, Cr 110 (cv2 writes I420, reads NV12)
    blue = np.zeros((6, 10, 4), np.uint8)
    blue[..., 2:] = 255
    i420 = cv2.cvtColor(blue, cv2.COLOR_RGBA2YUV_I420).reshape(-1)
    cb, cr, step, pitch = FrameFormat.I420.planes(10, 6)
    assert (i420[cb + blocks[0] * pitch + blocks[1] * step] == 240).all()
    assert (i420[cr + blocks[0] * pitch + blocks[1] * step] == 110).all()
    nv12 = np.full(FrameFormat.NV12.nbytes(10, 6), 41, np.uint8)
    cb, cr, step, pitch = FrameFormat.NV12.planes(10, 6)
    nv12[cb + blocks[0] * pitch + blocks[1] * step] = 240
    nv12[cr + blocks[0] * pitch + blocks[1] * step] = 110
    shown = cv2.cvtColor(nv12.reshape(9, 10), cv2.COLOR_YUV2RGBA_NV12).astype(int)
    assert np.abs(shown - blue).max() <= 2
    with pytest.raises(ValueError, match="no chroma planes"):
        FrameFormat.BGR.planes(10, 6)


# ---------------------------------------------------------------------------------------------
# out: RGBA8 to encoder formats


@pytest.mark.parametrize(
    ("fmt", "code"),
    [
        ("bgr", cv2.COLOR_RGBA2BGR),
        ("bgra", cv2.COLOR_RGBA2BGRA),
        ("rgb", cv2.COLOR_RGBA2RGB),
    ],
)
def test_packed_outputs_equal_opencv(fmt: str, code: int) -> None:
    frame = picture(1, 37, 53)
    np.testing.assert_array_equal(converted(frame, fmt), cv2.cvtColor(frame, code))


@pytest.mark.parametrize("fmt", PACKED)
@pytest.mark.parametrize("offset", [0, 1, 2, 3])
def test_packed_outputs_into_unaligned_buffers(fmt: str, offset: int) -> None:
    # 3-byte pixels are stored as aligned words after a head of single pixels; BGRA into an
    # unaligned buffer goes through an aligned one
    frame = picture(2, 5, 13)
    out = unaligned(FrameFormat(fmt).shape(13, 5), offset)
    convert_frame(frame, out, fmt)
    np.testing.assert_array_equal(out, packed_reference(frame, fmt))


def test_i420_luma_within_1_and_chroma_within_2_of_opencv() -> None:
    frame = smooth(90, 160)
    mine = converted(frame, "i420", matrix="bt601", value_range="limited").astype(int)
    theirs = cv2.cvtColor(frame, cv2.COLOR_RGBA2YUV_I420).astype(int)
    assert np.abs(mine[:90] - theirs[:90]).max() <= 1  # Y
    # OpenCV samples each 2x2 block's top-left pixel, framering averages the block: on a
    # smooth picture they agree within 2
    assert np.abs(mine[90:] - theirs[90:]).max() <= 2
    noisy = picture(2, 90, 160)
    mine_y = converted(noisy, "i420", matrix="bt601")[:90].astype(int)
    assert np.abs(mine_y - cv2.cvtColor(noisy, cv2.COLOR_RGBA2YUV_I420)[:90]).max() <= 1


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 30).map(lambda n: 2 * n),
    st.integers(1, 30).map(lambda n: 2 * n),
    st.integers(0, 2**32 - 1),
    st.sampled_from(MATRICES),
    st.sampled_from(RANGES),
)
def test_yuv420_matches_the_formulas(h: int, w: int, seed: int, matrix: str, rng: str) -> None:
    frame = picture(seed, h, w)
    y, cb, cr = yuv420_reference(frame, matrix, rng)
    # the exact value rounded half up, then clamped (full-range chroma of blue is 255.5)
    limit = 0.5 + FIXED_POINT_SLACK
    i420 = converted(frame, "i420", matrix=matrix, value_range=rng).astype(float)
    assert np.abs(i420[:h] - np.clip(y, 0, 255)).max() <= limit
    chroma = i420[h:].reshape(-1)
    quarter = (h // 2) * (w // 2)
    assert np.abs(chroma[:quarter].reshape(h // 2, w // 2) - np.clip(cb, 0, 255)).max() <= limit
    assert np.abs(chroma[quarter:].reshape(h // 2, w // 2) - np.clip(cr, 0, 255)).max() <= limit
    nv12 = converted(frame, "nv12", matrix=matrix, value_range=rng)
    np.testing.assert_array_equal(nv12[:h], i420[:h])  # same luma
    uv = nv12[h:].reshape(-1)
    np.testing.assert_array_equal(uv[0::2], chroma[:quarter])  # Cb interleaved with Cr
    np.testing.assert_array_equal(uv[1::2], chroma[quarter:])


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 40), st.integers(1, 40), st.integers(0, 2**32 - 1), st.sampled_from(PACKED))
def test_packed_outputs_match_the_reference(h: int, w: int, seed: int, fmt: str) -> None:
    frame = picture(seed, h, w)
    np.testing.assert_array_equal(converted(frame, fmt), packed_reference(frame, fmt))


@pytest.mark.parametrize(
    ("rgb", "value_range", "yuv"),
    [
        ((255, 255, 255), "limited", (235, 128, 128)),
        ((0, 0, 0), "limited", (16, 128, 128)),
        ((255, 255, 255), "full", (255, 128, 128)),
        ((0, 0, 0), "full", (0, 128, 128)),
        # full-range Cb of blue is 128 + 127.5 = 255.5: rounds to 256, clamped to 255
        ((0, 0, 255), "full", (18, 255, 116)),
    ],
)
def test_hand_computed_yuv_pixels(
    rgb: tuple[int, int, int], value_range: str, yuv: tuple[int, int, int]
) -> None:
    frame = np.empty((2, 2, 4), np.uint8)
    frame[...] = (*rgb, 255)
    out = converted(frame, "i420", matrix="bt709", value_range=value_range)
    assert (int(out[0, 0]), int(out[2, 0]), int(out[2, 1])) == yuv
    back = to_rgba(out, "i420", 2, 2, matrix="bt709", value_range=value_range)
    if rgb != (0, 0, 255):  # blue's Cb was clamped
        assert tuple(back[0, 0]) == (*rgb, 255)


def test_bad_conversions_are_refused() -> None:
    frame = picture(3, 10, 12)
    with pytest.raises(ValueError, match="even width and height"):
        converted(picture(3, 9, 12), "i420")
    with pytest.raises(ValueError, match="shape"):
        convert_frame(frame, np.empty((10, 12, 3), np.uint8), "i420")
    with pytest.raises(ValueError, match="matrix"):
        converted(frame, "nv12", matrix="bt2020")
    with pytest.raises(ValueError, match="range"):
        converted(frame, "nv12", value_range="studio")
    with pytest.raises(ValueError, match="shares memory"):
        convert_frame(frame, frame, "rgba")
    with pytest.raises(TypeError, match="uint8"):
        convert_frame(frame, np.empty((10, 12, 3), np.uint16), "bgr")
    with pytest.raises(ValueError, match="read-only"):
        out = np.empty((10, 12, 3), np.uint8)
        out.setflags(write=False)
        convert_frame(frame, out, "bgr")
    with pytest.raises(ValueError):
        converted(frame, "yuyv")


# ---------------------------------------------------------------------------------------------
# in: camera and decoder formats to RGBA8


@pytest.mark.parametrize(
    ("fmt", "code"),
    [
        ("bgr", cv2.COLOR_BGR2RGBA),
        ("rgb", cv2.COLOR_RGB2RGBA),
        ("bgra", cv2.COLOR_BGRA2RGBA),
        ("rgba", None),
    ],
)
def test_packed_inputs_equal_opencv(fmt: str, code: int | None) -> None:
    h, w = 37, 53
    src = np.random.default_rng(4).integers(0, 256, FrameFormat(fmt).shape(w, h), np.uint8)
    want = src if code is None else cv2.cvtColor(src, code)
    np.testing.assert_array_equal(to_rgba(src, fmt, h, w), want)


@pytest.mark.parametrize(
    ("fmt", "code"), [("i420", cv2.COLOR_YUV2RGBA_I420), ("nv12", cv2.COLOR_YUV2RGBA_NV12)]
)
def test_yuv420_inputs_within_1_of_opencv(fmt: str, code: int) -> None:
    # OpenCV's YUV 4:2:0 conversions are BT.601, limited range, chroma nearest. Within the
    # legal ranges (Y 16-235, C 16-240): OpenCV reads a Y below 16 as 16, the formula does not
    h, w = 48, 66
    rng = np.random.default_rng(5)
    src = np.empty(FrameFormat(fmt).shape(w, h), np.uint8)
    src[:h] = rng.integers(16, 236, (h, w))
    src[h:] = rng.integers(16, 241, (h // 2, w))
    mine = to_rgba(src, fmt, h, w, matrix="bt601", value_range="limited").astype(int)
    assert np.abs(mine - cv2.cvtColor(src, code)).max() <= 1
    # and on what a camera sends: YUV of a real picture, not noise
    yuv = cv2.cvtColor(smooth(h, w), cv2.COLOR_RGBA2YUV_I420)
    if fmt == "nv12":
        yuv = yuv.copy()
        u, v = yuv[h:].reshape(-1)[: h * w // 4].copy(), yuv[h:].reshape(-1)[h * w // 4 :].copy()
        yuv[h:] = np.stack([u, v], axis=1).reshape(h // 2, w)
    mine = to_rgba(yuv, fmt, h, w, matrix="bt601").astype(int)
    assert np.abs(mine - cv2.cvtColor(yuv, code)).max() <= 1


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 20).map(lambda n: 2 * n),
    st.integers(1, 20).map(lambda n: 2 * n),
    st.integers(0, 2**32 - 1),
    st.sampled_from(YUV420),
    st.sampled_from(MATRICES),
    st.sampled_from(RANGES),
)
def test_yuv420_inputs_match_the_formulas(
    h: int, w: int, seed: int, fmt: str, matrix: str, rng: str
) -> None:
    src = np.random.default_rng(seed).integers(0, 256, FrameFormat(fmt).shape(w, h), np.uint8)
    got = to_rgba(src, fmt, h, w, matrix=matrix, value_range=rng)
    want = np.clip(rgb_from_yuv420_reference(src, fmt, matrix, rng), 0, 255)
    assert np.abs(got[..., :3] - want).max() <= 0.5 + FIXED_POINT_SLACK
    assert (got[..., 3] == 255).all()


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 30),
    st.integers(1, 30),
    st.integers(0, 2**32 - 1),
    st.sampled_from(PACKED),
    st.integers(0, 3),
)
def test_packed_inputs_match_the_reference(
    h: int, w: int, seed: int, fmt: str, offset: int
) -> None:
    # any start address for 3-byte pixels (read as aligned words after a head of single ones)
    shape = FrameFormat(fmt).shape(w, h)
    src = unaligned(shape, offset if shape[2] == 3 else 0)
    src[...] = np.random.default_rng(seed).integers(0, 256, shape, np.uint8)
    np.testing.assert_array_equal(to_rgba(src, fmt, h, w), rgba_from_packed_reference(src, fmt))


@pytest.mark.parametrize("fmt", PACKED + YUV420)
def test_round_trips(fmt: str) -> None:
    frame = smooth(40, 64)
    back = to_rgba(converted(frame, fmt), fmt, 40, 64)
    if fmt in PACKED:
        np.testing.assert_array_equal(back, frame)
    else:  # chroma averaged over 2x2 blocks, then rounded twice
        assert np.abs(back.astype(int) - frame).max() <= 6


def test_bad_inputs_are_refused() -> None:
    out = np.empty((10, 12, 4), np.uint8)
    i420 = np.zeros((15, 12), np.uint8)
    with pytest.raises(ValueError, match="shape"):
        convert_to_rgba(np.zeros((10, 12), np.uint8), "i420", out)
    with pytest.raises(ValueError, match="shape"):
        convert_to_rgba(np.zeros((10, 12, 4), np.uint8), "bgr", out)
    with pytest.raises(TypeError, match="uint8"):
        convert_to_rgba(i420.astype(np.uint16), "i420", out)
    with pytest.raises(ValueError, match="even width and height"):
        convert_to_rgba(np.zeros((15, 11), np.uint8), "nv12", np.empty((10, 11, 4), np.uint8))
    with pytest.raises(ValueError, match="C-contiguous"):
        convert_to_rgba(np.zeros((10, 24, 3), np.uint8)[:, ::2], "rgb", out)
    with pytest.raises(ValueError, match="shares memory"):
        convert_to_rgba(out, "bgra", out)
    with pytest.raises(ValueError, match="read-only"):
        frozen = np.empty((10, 12, 4), np.uint8)
        frozen.setflags(write=False)
        convert_to_rgba(i420, "i420", frozen)
    with pytest.raises(ValueError, match="matrix"):
        convert_to_rgba(i420, "i420", out, matrix="bt2020")
    with pytest.raises(TypeError):
        convert_to_rgba([[0]], "rgb", out)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        convert_to_rgba(i420, "yuyv", out)


# ---------------------------------------------------------------------------------------------
# delivery fused into the blend


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
    with pytest.raises(ValueError, match="even rows"):
        composite_stack(
            frame, layers, rows=(1, 10), deliver=Delivery("i420", np.empty((15, 12), np.uint8))
        )
    with pytest.raises(ValueError, match="even rows"):
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


@pytest.mark.parametrize("matrix", MATRICES)
@pytest.mark.parametrize("rng", RANGES)
def test_luma_of_every_colour_and_chroma_of_a_lattice_are_within_the_bound(
    matrix: str, rng: str
) -> None:
    """The fixed-point bound, checked exhaustively: all 2^24 colours for luma (a 4096x4096
    frame, in bands), and uniform 2x2 blocks of every third level per channel for chroma."""
    limit = 0.5 + FIXED_POINT_SLACK
    levels = np.arange(256, dtype=np.uint32)
    band_rows = 256  # 1M colours per band keeps the float64 reference small
    for top in range(0, 4096, band_rows):
        code = np.arange(top * 4096, (top + band_rows) * 4096, dtype=np.uint32)
        frame = np.empty((band_rows, 4096, 4), np.uint8)
        frame[..., 0] = (code >> 16).reshape(band_rows, 4096)
        frame[..., 1] = ((code >> 8) & 255).reshape(band_rows, 4096)
        frame[..., 2] = (code & 255).reshape(band_rows, 4096)
        frame[..., 3] = 255
        y, _, _ = yuv420_reference(frame, matrix, rng)
        luma = converted(frame, "i420", matrix=matrix, value_range=rng)[:band_rows]
        assert np.abs(luma - np.clip(y, 0, 255)).max() <= limit, top
    lattice = levels[::3]
    r, g, b = np.meshgrid(lattice, lattice, lattice, indexing="ij")
    blocks = np.stack([r.ravel(), g.ravel(), b.ravel()], axis=1).astype(np.uint8)
    side = 2 * 172  # 86^3 = 636,056 colours in a 344 x 3698-block frame (some repeated)
    count = -(-len(blocks) // (side // 2))
    padded = np.resize(blocks, (count * (side // 2), 3)).reshape(count, side // 2, 3)
    frame = np.full((2 * count, side, 4), 255, np.uint8)
    frame[..., :3] = padded.repeat(2, axis=0).repeat(2, axis=1)
    _, cb, cr = yuv420_reference(frame, matrix, rng)
    i420 = converted(frame, "i420", matrix=matrix, value_range=rng)
    h, w = frame.shape[:2]
    chroma = i420[h:].reshape(-1).astype(float)
    quarter = (h // 2) * (w // 2)
    assert np.abs(chroma[:quarter].reshape(h // 2, w // 2) - np.clip(cb, 0, 255)).max() <= limit
    assert np.abs(chroma[quarter:].reshape(h // 2, w // 2) - np.clip(cr, 0, 255)).max() <= limit


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
