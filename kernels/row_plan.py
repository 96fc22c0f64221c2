"""What the whole-stack kernel works out before it blends a window of rows and columns.

Per window (a rectangle of the frame: the whole frame, a band of rows, or a damaged box):

- :func:`layer_kinds`: per layer, the facts the per-span code tests as bits of one integer
  (copies, starts the window's row, straight normal, opaque, premultiplied) instead of calling
  helpers that take arrays: every such call can cost an atomic reference-count update, and
  sprites-1080p has 20,000 spans a frame.
- :func:`rows_to_layers`: for each row of the window, the layers that cover it there, bottom
  first and by first column, as a CSR table.
- :func:`row_start` and :func:`plan_row`: a row's start (occlusion) and its plan, the list of
  copies, fused runs and accumulator windows that composite it; rows with the same layers
  share one.
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
from framering.kernels.spans import copy_opaque_gap, fill_span

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
    entries = np.empty(starts[y1 - y0], np.int64)
    _fill_rows(geometry, np.arange(n), x0, y0, x1, y1, starts, entries)
    first_column = np.empty(n, np.int64)
    for j in range(n):
        first_column[j] = max(geometry[j, 0], x0)
    by_column = np.empty_like(entries)
    order = np.argsort(first_column, kind="mergesort")  # stable: ties stay bottom first
    _fill_rows(geometry, order, x0, y0, x1, y1, starts, by_column)
    return starts, entries, by_column


@KERNEL_INLINE
def _fill_rows(geometry, order, x0, y0, x1, y1, starts, out):  # type: ignore[no-untyped-def]
    """Each row's part of the CSR table ``out`` (rows from ``starts``), filled with the
    layers covering the row in the window, taken in ``order``."""
    cursor = starts[:-1].copy()
    for j in order:
        if geometry[j, 0] >= x1 or geometry[j, 0] + geometry[j, 2] <= x0:
            continue
        r0 = max(geometry[j, 1], y0)
        r1 = min(geometry[j, 1] + geometry[j, 3], y1)
        for r in range(r0, r1):
            out[cursor[r - y0]] = j
            cursor[r - y0] += 1


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
    stream_min,
):
    """Columns ``[x0, x1)`` of a row that only opaque copies (``copy_j[:copies]``, stack order)
    cover above its start: each column gets the topmost copy covering it, else the start (the
    row-starting layer ``tsrc[ts + column]`` if ``top >= 0``, transparent black if ``clear``,
    the frame as it is otherwise), written once, left to right.

    Occlusion within the row: under an opaque camera picture the background is not read at
    all, and the frame row is one write stream (gaps first and the camera after made a
    studio row cost a third more). The search is a scan per segment, quadratic in the copies
    of the row, so a row with more than :data:`MAX_OCCLUDERS` of them is done the plain way:
    the start, then every copy over it in order. Copies of ``stream_min`` pixels or more
    are streamed (``spans.copy_opaque_gap``).
    """
    if copies > MAX_OCCLUDERS:
        _start_run(dst, row, x0, x1, top, tsrc, ts, clear, stream_min)
        for c in range(copies):
            j = copy_j[c]
            c0 = max(geometry[j, 0], x0)
            c1 = min(geometry[j, 0] + geometry[j, 2], x1)
            if c0 < c1:
                src = pixels_at(addresses[j], geometry[j, 2] * geometry[j, 3])
                s = (y - geometry[j, 1]) * geometry[j, 2] - geometry[j, 0]
                copy_opaque_gap(dst, row + c0, src, s + c0, c1 - c0, stream_min)
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
            copy_opaque_gap(dst, row + x, src, s + x, end - x, stream_min)
        else:
            _start_run(dst, row, x, end, top, tsrc, ts, clear, stream_min)
        x = end


@KERNEL_INLINE
def _start_run(dst, row, x0, x1, top, tsrc, ts, clear, stream_min):  # type: ignore[no-untyped-def]
    """Columns ``[x0, x1)`` as the row starts: the row-starting layer, black, or as it is."""
    if top >= 0:
        copy_opaque_gap(dst, row + x0, tsrc, ts + x0, x1 - x0, stream_min)
    elif clear:
        fill_span(dst, row + x0, x1 - x0, np.uint32(0))


# A row's plan: what the whole-stack kernel does to one row, as a list of actions, one per
# row of a ``(n, 5)`` int64 table (the action, then its arguments). It depends only on the
# row's layers (and the window), never on the row itself, so rows with the same layers as
# the row planned last reuse its plan: sprites-1080p's 1,080 rows have about 400 distinct
# sets of layers, studio-1080p's a handful.
GAP = 0  # w0, w1: columns only opaque copies cover above the row's start
ACCUMULATE = 1  # a, b: a cluster blended layer by layer through the accumulator
RUN = 2  # u, v, c, m: columns the m straight normal layers covers[c:c + m] all cover
COPIES_ABOVE = 3  # a, b, highest: the row's opaque copies above layer `highest`, over [a, b)
PLAN_COLUMNS = 5

# Rows of a plan's span table: each span's first and last column and layer, each opaque
# copy's layer (stack order), and the layers active during the sweep (a layer's index is its
# place in the stack, so layers compare in stack order as indices).
SPAN_X0 = 0
SPAN_X1 = 1
SPAN_J = 2
COPY_J = 3
ACTIVE_J = 4
ACTIVE_X1 = 5
SPAN_ROWS = 6

#: A layer whose blending is a plain integer copy of opaque pixels.
OPAQUE_COPY = COPIES | OPAQUE


@KERNEL_INLINE
def plan_capacity(layers):  # type: ignore[no-untyped-def]
    """Rows of a plan table and length of its covers for a stack of ``layers``: a row has at
    most ``3 layers + 1`` actions (a gap before each cluster and after the last, and at most
    two actions a span in a cluster); covers beyond the length fall back to the accumulator."""
    return 3 * layers + 4, 8 * layers + 64


@KERNEL_INLINE
def row_start(entries, kinds, first, last):  # type: ignore[no-untyped-def]
    """The topmost layer that replaces the whole row of the window (-1 if none: occlusion,
    nothing below it is read) and the row's entries above it, from ``begin``."""
    for e in range(last - 1, first - 1, -1):
        j = entries[e]
        if kinds[j] & STARTS_ROW:
            return j, e + 1
    return -1, first


@KERNEL_INLINE
def plan_row(by_column, first, last, top, cx0, cx1, geometry, kinds, clear, spans, plan, covers):  # type: ignore[no-untyped-def]
    """Plan a row whose layers are ``by_column[first:last]`` and whose start is ``top``:
    fill ``plan`` and ``covers`` and return the number of actions and of opaque copies.

    The spans of every layer above the start that is not an opaque copy come in order of
    first column (equal starts in stack order); overlapping ones group into clusters, the
    columns between clusters are gaps. A cluster of straight ``normal`` layers over the row
    start or transparent black, with no opaque copy under them, is cut at every span's edges
    into runs that the same layers cover entirely, each fused (``stack._fused_run``); any
    other cluster goes layer by layer through the accumulator, which gives the same bytes.
    """
    span_x0 = spans[SPAN_X0]
    span_x1 = spans[SPAN_X1]
    span_j = spans[SPAN_J]
    copy_j = spans[COPY_J]
    count = 0
    copies = 0
    for e in range(first, last):
        j = by_column[e]
        if j <= top:  # at or below the row's start (top is -1 without one)
            continue
        x0 = max(geometry[j, 0], cx0)
        x1 = min(geometry[j, 0] + geometry[j, 2], cx1)
        if x0 >= x1:
            continue
        if kinds[j] & OPAQUE_COPY == OPAQUE_COPY:
            p = copies  # few a row: an insertion into stack order
            while p > 0 and copy_j[p - 1] > j:
                copy_j[p] = copy_j[p - 1]
                p -= 1
            copy_j[p] = j
            copies += 1
            continue
        span_x0[count] = x0
        span_x1[count] = x1
        span_j[count] = j
        count += 1
    actions = 0
    used = 0
    done = cx0
    i = 0
    while i < count:
        a = span_x0[i]
        b = span_x1[i]
        k = i + 1
        while k < count and span_x0[k] < b:
            b = max(b, span_x1[k])
            k += 1
        if done < a:
            actions = _act(plan, actions, GAP, done, a, 0, 0)
        actions, used = _plan_cluster(
            a, b, i, k, top, clear, copies, geometry, kinds, spans, plan, actions, covers, used
        )
        done = b
        i = k
    if done < cx1:
        actions = _act(plan, actions, GAP, done, cx1, 0, 0)
    return actions, copies


@KERNEL_INLINE
def _act(plan, actions, action, p1, p2, p3, p4):  # type: ignore[no-untyped-def]
    plan[actions, 0] = action
    plan[actions, 1] = p1
    plan[actions, 2] = p2
    plan[actions, 3] = p3
    plan[actions, 4] = p4
    return actions + 1


@KERNEL_INLINE
def _plan_cluster(
    a, b, i, k, top, clear, copies, geometry, kinds, spans, plan, actions, covers, used
):  # type: ignore[no-untyped-def]
    """The actions for columns ``[a, b)``, which the overlapping spans ``i..k`` cover."""
    span_x0 = spans[SPAN_X0]
    span_x1 = spans[SPAN_X1]
    span_j = spans[SPAN_J]
    copy_j = spans[COPY_J]
    fused = top >= 0 or clear
    highest = -1
    for c in range(i, k):
        j = span_j[c]
        highest = max(highest, j)
        if not kinds[j] & STRAIGHT_NORMAL:
            fused = False
    if fused:
        for c in range(copies):  # an opaque copy under a blended layer: not fused
            j = copy_j[c]
            if j < highest and geometry[j, 0] < b and geometry[j, 0] + geometry[j, 2] > a:
                fused = False
    if fused:
        # sweep the columns: the layers active over [u, v) are kept in stack order, and v is
        # the next column where one starts or ends
        active_j = spans[ACTIVE_J]
        active_x1 = spans[ACTIVE_X1]
        start_actions = actions
        start_used = used
        m = 0
        entering = i
        u = a
        while u < b:
            while entering < k and span_x0[entering] == u:  # spans starting here join
                e = span_j[entering]
                p = m
                while p > 0 and active_j[p - 1] > e:
                    active_j[p] = active_j[p - 1]
                    active_x1[p] = active_x1[p - 1]
                    p -= 1
                active_j[p] = e
                active_x1[p] = span_x1[entering]
                m += 1
                entering += 1
            v = span_x0[entering] if entering < k else b
            if used + m > covers.shape[0]:
                fused = False  # out of room for covers: the accumulator instead
                break
            for c in range(m):
                v = min(v, active_x1[c])
                covers[used + c] = active_j[c]
            actions = _act(plan, actions, RUN, u, v, used, m)
            used += m
            kept = 0  # spans ending at v leave
            for c in range(m):
                if active_x1[c] != v:
                    active_j[kept] = active_j[c]
                    active_x1[kept] = active_x1[c]
                    kept += 1
            m = kept
            u = v
        if not fused:
            actions = start_actions
            used = start_used
    if not fused:
        return _act(plan, actions, ACCUMULATE, a, b, 0, 0), used
    for c in range(copies):  # opaque copies above the blend, as integers
        if copy_j[c] > highest:
            return _act(plan, actions, COPIES_ABOVE, a, b, highest, 0), used
    return actions, used
