"""A stack's columns checked and packed in one compiled pass (``LayerStack.from_buffers``).

Proving a stack safe for the kernel is a handful of range checks per layer (its buffer index,
its int32 position, its opacity, its blend mode), then dropping the layers that cannot show
and gathering the rest. Done as numpy reductions that is some forty calls of about a
microsecond each, which an engine worker paid on every frame (34 us for the studio's four
layers, a fifth of a frame whose damage is two moved layers). Here it is one loop.

The caller hands canonical columns (C-contiguous int64, float64 and bool), so that one
compiled signature serves every caller (the parent's warm-up compiles what the workers load).
"""

from __future__ import annotations

from typing import Final

import numpy as np

from framering.kernels.codes import LAYER_PREMULTIPLIED
from framering.kernels.jit import KERNEL
from framering.kernels.validate import INT32_MAX, INT32_MIN

# Bits of the problems :func:`pack_columns` reports, one per check, in the order the errors
# are raised.
BAD_INDEX: Final = 1
BAD_X: Final = 2
BAD_Y: Final = 4
BAD_OPACITY: Final = 8
BAD_MODE: Final = 16


@KERNEL
def pack_columns(
    width: int,
    height: int,
    index: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    opacity: np.ndarray,
    modes: np.ndarray,
    premultiplied: np.ndarray,
    table_addresses: np.ndarray,
    table_widths: np.ndarray,
    table_heights: np.ndarray,
    table_flags: np.ndarray,
    n_modes: int,
    min_opacity: float,
) -> tuple[int, int, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Check every layer and gather the visible ones (opacity at least ``min_opacity``, some
    part inside the frame), in order.

    Returns ``(problems, count, addresses, geometry, opacity, modes, flags)``: ``problems`` is
    0 or the bits of the checks some layer failed (then nothing else is meaningful), and the
    first ``count`` rows of each array are the packed stack.
    """
    n = index.shape[0]
    n_buffers = table_addresses.shape[0]
    addresses = np.empty(n, np.int64)
    geometry = np.empty((n, 4), np.int64)
    opacity_out = np.empty(n, np.float64)
    modes_out = np.empty(n, np.int64)
    flags = np.empty(n, np.int64)
    problems = 0
    count = 0
    for i in range(n):
        k = index[i]
        if k < 0 or k >= n_buffers:
            problems |= BAD_INDEX
            continue
        xi = x[i]
        yi = y[i]
        o = opacity[i]
        m = modes[i]
        if xi < INT32_MIN or xi > INT32_MAX:
            problems |= BAD_X
        if yi < INT32_MIN or yi > INT32_MAX:
            problems |= BAD_Y
        if not (o >= 0.0 and o <= 1.0):  # NaN fails too
            problems |= BAD_OPACITY
        if m < 0 or m >= n_modes:
            problems |= BAD_MODE
        if problems:
            continue
        w = table_widths[k]
        h = table_heights[k]
        if o >= min_opacity and xi < width and xi + w > 0 and yi < height and yi + h > 0:
            addresses[count] = table_addresses[k]
            geometry[count, 0] = xi
            geometry[count, 1] = yi
            geometry[count, 2] = w
            geometry[count, 3] = h
            opacity_out[count] = o
            modes_out[count] = m
            flags[count] = table_flags[k] | (LAYER_PREMULTIPLIED if premultiplied[i] else 0)
            count += 1
    return problems, count, addresses, geometry, opacity_out, modes_out, flags
