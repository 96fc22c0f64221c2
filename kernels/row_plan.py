"""What the whole-stack kernel works out before it blends a window of rows and columns.

Per window (a rectangle of the frame: the whole frame, a band of rows, or a damaged box):

- :func:`layer_kinds`: per layer, the facts the per-span code tests as bits of one integer
  (copies, starts the window's row, straight normal, opaque, premultiplied) instead of calling
  helpers that take arrays: every such call can cost an atomic reference-count update, and
  sprites-1080p has 20,000 spans a frame.
- :func:`rows_to_layers`: for each row of the window, the layers that cover it there, bottom
  first, as a CSR table.
- :func:`copy_row_in_column_order`: the columns only opaque copies cover above the row's
  start, each written once from the topmost of them (occlusion).

Everything here depends on the window only through which layers and columns it keeps, never
on a pixel outside it, which is what lets a damaged box be recomposited alone and give the
bytes the whole frame would have (``framering.kernels.stack``).
"""

from __future__ import annotations

import numpy as np

from framering.kernels.blend import BlendMode
from framering.kernels.codes import LAYER_OPAQUE, LAYER_PREMULTIPLIED
from framering.kernels.jit import KERNEL, KERNEL_INLINE
from framering.kernels.pointers import pixels_at
from framering.kernels.spans import copy_opaque_span, fill_span

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
    """For each row of the window ``[x0, x1) x [y0, y1)``, the layers covering it there, as
    a CSR table (``starts``) twice over: ``entries`` bottom first, and ``by_column`` by first
    column in the window, equal columns bottom first.

    The second order is what the row's span sweep wants. Sorting each row's spans again
    cost sprites-1080p (18 sprites a row, in no order) an insertion sort per row; one sort of
    the layers per window, then filling the rows in that order, gives every row's list
    sorted for the price of the fill.
    """
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
    first_column = np.empty(n, np.int64)
    for j in range(n):
        first_column[j] = max(geometry[j, 0], x0)
    by_column = np.empty_like(entries)
    cursor[:] = starts[:-1]
    for j in np.argsort(first_column, kind="mergesort"):  # stable: ties stay bottom first
        if geometry[j, 0] >= x1 or geometry[j, 0] + geometry[j, 2] <= x0:
            continue
        r0 = max(geometry[j, 1], y0)
        r1 = min(geometry[j, 1] + geometry[j, 3], y1)
        for r in range(r0, r1):
            by_column[cursor[r - y0]] = j
            cursor[r - y0] += 1
    return starts, entries, by_column


@KERNEL
def copy_row_in_column_order(  # type: ignore[no-untyped-def]
    dst,
    row,
    x0,
    x1,
    top,
    tsrc,
    ts,
    clear,
    copy_j,
    copies,
    geometry,
    addresses,
    y,
):
    """Columns ``[x0, x1)`` of a row that only opaque copies (``copy_j[:copies]``, stack order)
    cover above its start: each column gets the topmost copy covering it, else the start (the
    row-starting layer ``tsrc[ts + column]`` if ``top >= 0``, transparent black if ``clear``,
    the frame as it is otherwise), written once, left to right.

    Occlusion within the row: under an opaque camera picture the background is not read at
    all, and the frame row is one write stream (gaps first and the camera after made a
    studio row cost a third more). The search is a scan per segment, quadratic in the copies
    of the row, so a row with more than :data:`MAX_OCCLUDERS` of them is done the plain way:
    the start, then every copy over it in order.
    """
    if copies > MAX_OCCLUDERS:
        _start_run(dst, row, x0, x1, top, tsrc, ts, clear)
        for c in range(copies):
            j = copy_j[c]
            c0 = max(geometry[j, 0], x0)
            c1 = min(geometry[j, 0] + geometry[j, 2], x1)
            if c0 < c1:
                src = pixels_at(addresses[j], geometry[j, 2] * geometry[j, 3])
                s = (y - geometry[j, 1]) * geometry[j, 2] - geometry[j, 0]
                copy_opaque_span(dst, row + c0, src, s + c0, c1 - c0)
        return
    x = x0
    while x < x1:
        best = -1  # the topmost copy covering x
        for c in range(copies - 1, -1, -1):
            j = copy_j[c]
            if geometry[j, 0] <= x < geometry[j, 0] + geometry[j, 2]:
                best = c
                break
        end = x1  # up to where a copy above it starts
        if best >= 0:
            end = min(end, geometry[copy_j[best], 0] + geometry[copy_j[best], 2])
        for c in range(best + 1, copies):
            start = geometry[copy_j[c], 0]
            if x < start < end:
                end = start
        if best >= 0:
            j = copy_j[best]
            src = pixels_at(addresses[j], geometry[j, 2] * geometry[j, 3])
            s = (y - geometry[j, 1]) * geometry[j, 2] - geometry[j, 0]
            copy_opaque_span(dst, row + x, src, s + x, end - x)
        else:
            _start_run(dst, row, x, end, top, tsrc, ts, clear)
        x = end


@KERNEL_INLINE
def _start_run(dst, row, x0, x1, top, tsrc, ts, clear):  # type: ignore[no-untyped-def]
    """Columns ``[x0, x1)`` as the row starts: the row-starting layer, black, or as it is."""
    if top >= 0:
        copy_opaque_span(dst, row + x0, tsrc, ts + x0, x1 - x0)
    elif clear:
        fill_span(dst, row + x0, x1 - x0, np.uint32(0))
