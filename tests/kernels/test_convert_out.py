"""Conversions out, RGBA8 to encoder formats: against cv2.cvtColor, against the float64 formulas
and, for the fixed-point bound, over every colour (tolerances in ``tests.kernels.pictures``)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from framering.kernels import (
    FrameFormat,
    convert_frame,
)
from framering.kernels.reference import (
    packed_reference,
    yuv420_reference,
)
from tests.kernels.pictures import (
    FIXED_POINT_SLACK,
    MATRICES,
    PACKED,
    RANGES,
    converted,
    picture,
    smooth,
    to_rgba,
    unaligned,
)


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
