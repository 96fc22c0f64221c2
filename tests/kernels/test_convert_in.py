"""Conversions in, camera and decoder formats to RGBA8: against cv2.cvtColor, against the float64
formulas and as round trips (tolerances in ``tests.kernels.pictures``)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from framering.kernels import (
    FrameFormat,
    convert_to_rgba,
)
from framering.kernels.reference import (
    rgb_from_yuv420_reference,
    rgba_from_packed_reference,
)
from tests.kernels.pictures import (
    FIXED_POINT_SLACK,
    MATRICES,
    PACKED,
    RANGES,
    YUV420,
    converted,
    smooth,
    to_rgba,
    unaligned,
)


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
