"""What the whole-stack kernel works out before it blends a window of rows and columns.

Per window (a rectangle of the frame: the whole frame, a band of rows, or a damaged box):

- :func:`layer_kinds`: per layer, the facts the per-span code tests as bits of one integer
  (copies, starts the window's row, straight normal, opaque, premultiplied) instead of calling
  helpers that take arrays: every such call can cost an atomic reference-count update, and
  sprites-1080p has 20,000 spans a frame.
- :func:`rows_to_layers`: for each row of the window, the layers that cover it there, bottom
  first, as a CSR table.
- :func:`copy_row_around_copies`: the row-starting copy of the topmost layer that replaces
  the whole window row, skipping what later copying layers overwrite anyway (occlusion).

Everything here depends on the window only through which layers and columns it keeps, never
on a pixel outside it, which is what lets a damaged box be recomposited alone and give the
bytes the whole frame would have (``framering.kernels.stack``).
"""

from __future__ import annotations

import numpy as np

from framering.kernels.blend import BlendMode
from framering.kernels.codes import LAYER_OPAQUE, LAYER_PREMULTIPLIED
from framering.kernels.jit import KERNEL
from framering.kernels.spans import copy_opaque_span

_NORMAL = int(BlendMode.NORMAL)
_SOURCE = int(BlendMode.SOURCE)

# Bits of a layer's ``kinds`` entry.
COPIES = 1  # blending is a plain copy of the layer's pixels
STARTS_ROW = 2  # a copy that spans the whole window row: nothing below it is visible there
STRAIGHT_NORMAL = 4  # normal mode, straight alpha: the vectorised float32 paths apply
OPAQUE = 8  # every alpha byte is 255
PREMULTIPLIED = 16

# Most later copying layers in a row for which the row-starting layer is copied around them.
# A studio scene has one or two (camera, a full-screen still); two hundred opaque sprites made
# the quadratic gap search cost ten times the copy it saved.
MAX_OCCLUDERS = 4


@KERNEL
def layer_kinds(x0, x1, geometry, opacity, modes, flags):  # type: ignore[no-untyped-def]
    """The ``kinds`` bits of every layer for a window of columns ``[x0, x1)``."""
    n = geometry.shape[0]
    kinds = np.zeros(n, np.int64)
    for j in range(n):
        opaque = (flags[j] & LAYER_OPAQUE) != 0
        premultiplied = (flags[j] & LAYER_PREMULTIPLIED) != 0
        kind = 0
        if opaque:
            kind |= OPAQUE
        if premultiplied:
            kind |= PREMULTIPLIED
        if modes[j] == _NORMAL and not premultiplied:
            kind |= STRAIGHT_NORMAL
        if opacity[j] == 1.0 and (
            (modes[j] == _NORMAL and opaque)
            or (modes[j] == _SOURCE and (opaque or not premultiplied))
        ):
            kind |= COPIES
            if opaque and geometry[j, 0] <= x0 and geometry[j, 0] + geometry[j, 2] >= x1:
                kind |= STARTS_ROW
        kinds[j] = kind
    return kinds


@KERNEL
def rows_to_layers(geometry, x0, y0, x1, y1):  # type: ignore[no-untyped-def]
    """For each row of the window ``[x0, x1) x [y0, y1)``, the layers covering it there,
    bottom first (CSR: ``starts``, ``entries``)."""
    n = geometry.shape[0]
    starts = np.zeros(y1 - y0 + 1, np.int64)
    for j in range(n):
        if geometry[j, 0] >= x1 or geometry[j, 0] + geometry[j, 2] <= x0:
            continue
        r0 = max(geometry[j, 1], y0)
        r1 = min(geometry[j, 1] + geometry[j, 3], y1)
        for r in range(r0, r1):
            starts[r - y0 + 1] += 1
    for r in range(y1 - y0):
        starts[r + 1] += starts[r]
    cursor = starts[:-1].copy()
    entries = np.empty(starts[y1 - y0], np.int64)
    for j in range(n):
        if geometry[j, 0] >= x1 or geometry[j, 0] + geometry[j, 2] <= x0:
            continue
        r0 = max(geometry[j, 1], y0)
        r1 = min(geometry[j, 1] + geometry[j, 3], y1)
        for r in range(r0, r1):
            entries[cursor[r - y0]] = j
            cursor[r - y0] += 1
    return starts, entries


@KERNEL
def copy_row_around_copies(dst, row, src, s, x0, x1, entries, begin, last, geometry, kinds):  # type: ignore[no-untyped-def]
    """Copy columns ``[x0, x1)`` of a row-starting layer's row (``src[s + x]`` is column x),
    except where a later layer of the row will copy over it anyway.

    Occlusion within the row: under an opaque camera picture the background is not read at all.
    The search for gaps is a plain scan per gap, quadratic in the copying layers of the row, so
    rows with more than :data:`MAX_OCCLUDERS` of them are copied whole instead.
    """
    occluders = 0
    for e in range(begin, last):
        if kinds[entries[e]] & COPIES:
            occluders += 1
    if occluders == 0 or occluders > MAX_OCCLUDERS:
        copy_opaque_span(dst, row + x0, src, s + x0, x1 - x0)
        return
    x = x0
    while x < x1:
        moved = True
        while moved:  # step over every later copying layer that covers x
            moved = False
            for e in range(begin, last):
                j = entries[e]
                if kinds[j] & COPIES:
                    c0 = max(geometry[j, 0], x0)
                    c1 = min(geometry[j, 0] + geometry[j, 2], x1)
                    if c0 <= x < c1:
                        x = c1
                        moved = True
        if x >= x1:
            break
        gap_end = x1  # up to the next copying layer that starts after x
        for e in range(begin, last):
            j = entries[e]
            if kinds[j] & COPIES:
                c0 = max(geometry[j, 0], x0)
                if x < c0 < gap_end:
                    gap_end = c0
        copy_opaque_span(dst, row + x, src, s + x, gap_end - x)
        x = gap_end
