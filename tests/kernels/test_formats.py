"""Frame formats: the shapes, sizes and plane layouts cv2 uses."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from framering.kernels import (
    FrameFormat,
    source_shape,
)


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
