"""Compile (or load from the on-disk cache) every kernel once, on tiny inputs."""

from __future__ import annotations

import time

import numpy as np

from framering.kernels.blend import BlendMode
from framering.kernels.convert_in import convert_to_rgba
from framering.kernels.convert_out import convert_frame
from framering.kernels.delivery import Delivery
from framering.kernels.fill import fill
from framering.kernels.formats import FrameFormat
from framering.kernels.layers import PixelLayer
from framering.kernels.stack import composite_stack


def warmup() -> float:
    """Run every kernel and every blend path once; returns the seconds it took.

    Call it before starting worker processes: the first call compiles and writes Numba's
    cache, later processes only load it.
    """
    started = time.perf_counter()
    frame = np.zeros((4, 70, 4), np.uint8)
    opaque = np.full((4, 70, 4), 255, np.uint8)
    soft = np.full((2, 40, 4), 128, np.uint8)
    fill(frame, (1, 2, 3, 4))
    fill(frame, (1, 2, 3, 4), rect=(1, 1, 2, 2))
    layers = [PixelLayer(opaque), PixelLayer(soft, x=1, opacity=0.5)]
    layers += [PixelLayer(soft, blend=mode, premultiplied=True) for mode in BlendMode]
    composite_stack(frame, layers)
    composite_stack(frame, [PixelLayer(soft), PixelLayer(soft, x=3)])
    composite_stack(frame, [PixelLayer(soft)], clear=False)
    picture = np.empty((4, 70, 4), np.uint8)
    for fmt in FrameFormat:
        out = np.empty(fmt.shape(70, 4), np.uint8)
        convert_frame(frame, out, fmt)
        composite_stack(frame, [PixelLayer(soft)], deliver=Delivery(fmt, out))
        convert_to_rgba(out, fmt, picture)
    return time.perf_counter() - started
