"""Frame formats for encoders, against cv2.cvtColor and against the float64 formulas."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels.convert import FrameFormat, convert_frame
from kernels.reference import yuv420_reference


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


@pytest.mark.parametrize(
    ("fmt", "code"), [("bgr", cv2.COLOR_RGBA2BGR), ("bgra", cv2.COLOR_RGBA2BGRA)]
)
def test_bgr_and_bgra_equal_opencv(fmt: str, code: int) -> None:
    frame = picture(1, 37, 53)
    np.testing.assert_array_equal(converted(frame, fmt), cv2.cvtColor(frame, code))


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
    st.sampled_from(["bt601", "bt709"]),
    st.sampled_from(["limited", "full"]),
)
def test_yuv420_matches_the_formulas(h: int, w: int, seed: int, matrix: str, rng: str) -> None:
    frame = picture(seed, h, w)
    y, cb, cr = yuv420_reference(frame, matrix, rng)
    i420 = converted(frame, "i420", matrix=matrix, value_range=rng).astype(float)
    assert np.abs(i420[:h] - y).max() <= 0.5 + 1e-6
    chroma = i420[h:].reshape(-1)
    quarter = (h // 2) * (w // 2)
    assert np.abs(chroma[:quarter].reshape(h // 2, w // 2) - cb).max() <= 0.5 + 1e-6
    assert np.abs(chroma[quarter:].reshape(h // 2, w // 2) - cr).max() <= 0.5 + 1e-6
    nv12 = converted(frame, "nv12", matrix=matrix, value_range=rng)
    np.testing.assert_array_equal(nv12[:h], i420[:h])  # same luma
    uv = nv12[h:].reshape(-1)
    np.testing.assert_array_equal(uv[0::2], chroma[:quarter])  # Cb interleaved with Cr
    np.testing.assert_array_equal(uv[1::2], chroma[quarter:])


def test_bad_conversions_are_refused() -> None:
    frame = picture(3, 10, 12)
    with pytest.raises(ValueError, match="even width and height"):
        converted(picture(3, 9, 12), "i420")
    with pytest.raises(ValueError, match="shape"):
        convert_frame(frame, np.empty((10, 12, 3), np.uint8), "i420")
    with pytest.raises(ValueError, match="matrix"):
        converted(frame, "nv12", matrix="bt2020")
    with pytest.raises(ValueError, match="shares memory"):
        convert_frame(frame, frame, "rgba")
    with pytest.raises(ValueError):
        converted(frame, "yuyv")
