"""Pictures and tolerances shared by the conversion tests.

Fixed-point tolerance: the kernels compute YUV with int32 coefficients scaled by 2**22 (2**20
from YUV), which moves a value by at most 4e-4 (5e-4) of a unit from the exact formula, so a
byte is within 0.5 + 1e-3 of the exact value instead of 0.5 (``framering.kernels.yuv``).
"""

from __future__ import annotations

import numpy as np

from framering.kernels import FrameFormat, convert_frame, convert_to_rgba

# beyond the 0.5 of rounding: the fixed-point coefficients' error (see above)
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
