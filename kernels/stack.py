"""The whole-stack kernel: an ordered list of layers composited into a frame in one pass.

Per-layer passes over a whole frame read and write the output once per layer; this kernel reads
and writes each output row once while every layer that covers it is blended in, so the row
stays in L1 cache and memory traffic is close to "each visible layer byte read once plus the
output written once". Per row:

1. Find the topmost layer that replaces the whole row (opaque, opacity 1, mode ``normal`` or
   ``source``, spans the width): nothing below it is read at all (occlusion). Otherwise the
   row starts as transparent black (``clear=True``: the first layer is stored without
   reading anything) or as whatever the frame held (``clear=False``).
2. Sort the spans of the layers above the start that blend (everything but opaque copies) by
   column, and group overlapping ones into clusters. Between clusters only opaque copies
   remain: integer copies, with no arithmetic. Steps 1 and 2 make the row's plan
   (``framering.kernels.row_plan.plan_row``), which depends only on which layers cover the
   row: a row with the same layers as the one planned last replays its plan (sprites-1080p:
   1.20x, the planning was a fifth of its frame).
3. A cluster is accumulated in premultiplied float32 and rounded once
   (``framering.kernels.accumulate``). When all its layers are straight ``normal`` layers
   with no opaque copy under them (the common case), it is swept into runs that the same
   layers cover entirely, each done in fused passes that keep values in registers: one pass
   for up to three layers over an opaque start, and otherwise two layers a pass over an
   L1-sized accumulator, the last fused with the write-back. Any other cluster (blend modes,
   premultiplied layers, copies in between) goes layer by layer through the accumulator.
4. With a :class:`~framering.kernels.delivery.Delivery`, convert each finished band of
   :data:`~framering.kernels.delivery.DELIVER_BAND_ROWS` rows into the delivery buffer while
   it is still in L2 cache, instead of a second pass over the whole frame
   (``convert_out.deliver_rows``, the row function of ``convert_frame`` too, so both give the
   same bytes).

The layers are handed over as a :class:`LayerStack`: a table of buffer addresses and integer
geometry built (and validated) once in Python. The kernel trusts that table completely.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from framering.kernels.accumulate import (
    CHUNK,
    blend_general,
    blend_normal,
    blend_normal_pair,
    blend_normal_premultiplied,
    blend_normal_write,
    load_frame,
    load_opaque,
    over_clear_write,
    over_opaque_pair_write,
    over_opaque_triple_write,
    over_opaque_write,
    store_normal,
    write_back,
    zero,
)
from framering.kernels.blend import BlendMode
from framering.kernels.codes import NO_DELIVERY
from framering.kernels.convert_out import deliver_rows
from framering.kernels.delivery import DELIVER_BAND_ROWS, NOTHING_DELIVERED, Delivery
from framering.kernels.hints import check_prefetch_min, prefetch_min_pixels
from framering.kernels.jit import KERNEL, KERNEL_INLINE
from framering.kernels.layers import LayerStack, PixelLayer
from framering.kernels.pointers import pixels_at, prefetch_pixels, store_fence, unowned
from framering.kernels.row_plan import (
    ACCUMULATE,
    COPY_J,
    GAP,
    OPAQUE_COPY,
    PLAN_COLUMNS,
    PREMULTIPLIED,
    RUN,
    SPAN_ROWS,
    STRAIGHT_NORMAL,
    copy_row_in_column_order,
    layer_kinds,
    plan_capacity,
    plan_row,
    row_start,
    rows_to_layers,
)
from framering.kernels.spans import copy_opaque_gap, copy_opaque_span, fill_span
from framering.kernels.stores import check_stream_min, stream_min_pixels
from framering.kernels.validate import check_rects, check_rgba, check_rows

_NORMAL = int(BlendMode.NORMAL)
_ZERO = np.uint32(0)


def composite_stack(
    frame: np.ndarray,
    layers: LayerStack | Sequence[PixelLayer],
    *,
    rows: tuple[int, int] | None = None,
    rects: np.ndarray | Sequence[Sequence[int]] | None = None,
    clear: bool = True,
    deliver: Delivery | None = None,
    write_frame: bool = True,
    stream_min: int | None = None,
    prefetch_min: int | None = None,
) -> None:
    """Composite ``layers`` (bottom first) into ``frame`` in place.

    Args:
        frame: (H, W, 4) uint8 C-contiguous writable RGBA8 destination.
        layers: a :class:`LayerStack` prepared for this frame size, or :class:`PixelLayer`s.
        rows: only destination rows ``[y0, y1)`` are read or written; the default is all.
        rects: only these boxes ``(x0, y0, x1, y1)`` (inside the frame, not overlapping) are
            read or written, instead of ``rows``: each gets exactly the bytes compositing the
            whole frame would give it (damage repair, ``framering``'s damage tracking).
        clear: start from transparent black (the frame's previous content is ignored and not
            read); ``False`` composites over what the frame already holds.
        deliver: also write the composited rows (or boxes) converted into ``deliver.out``
            (the same bytes as ``convert_frame`` of the finished frame), a band of rows at a
            time right after it is composited. The frame is written as without it. For
            I420/NV12 every row and column bound must be even.
        write_frame: ``False`` (only with ``deliver`` into another buffer, and ``clear``)
            composites each band into the delivery's L2-sized scratch band instead of the
            frame, and converts it from there: the RGBA frame is neither read nor written
            (its rows are left as they were), which saves the frame's memory traffic when only
            the delivery is wanted.
        stream_min: opaque runs of at least this many pixels are written with non-temporal
            stores (the same bytes, without reading the lines first or keeping them in the
            cache); 0 never, None this CPU's measured choice (``framering.kernels.stores``).
            Ignored when the rows are converted for ``deliver`` as they are composited.
        prefetch_min: rows of layers at least this many pixels wide get software prefetch
            hints a couple of rows ahead (the same bytes either way); 0 never, None this
            CPU's measured choice (``framering.kernels.hints``).
    """
    frame = check_rgba(frame, "frame", writable=True)
    height, width = frame.shape[0], frame.shape[1]
    stream_min = stream_min_pixels() if stream_min is None else check_stream_min(stream_min)
    prefetch_min = (
        prefetch_min_pixels() if prefetch_min is None else check_prefetch_min(prefetch_min)
    )
    stack = layers if isinstance(layers, LayerStack) else LayerStack.prepare(width, height, layers)
    if (stack.width, stack.height) != (width, height):
        raise ValueError(
            f"the stack was prepared for {stack.width}x{stack.height} frames, "
            f"not for this {width}x{height} frame"
        )
    if rects is None:
        y0, y1 = check_rows(rows, height)
        boxes = np.array([[0, y0, width, y1]], np.int64)
    elif rows is not None:
        raise ValueError("give rows or rects, not both")
    else:
        boxes = check_rects(rects, width, height)
    if boxes.flags.writeable:
        # One type for the kernel whoever calls: workers pass boxes read from their message
        # (read-only), and a second specialisation would cost each worker its first frame
        # (~20 ms to load from the cache) instead of being loaded by warmup().
        boxes = boxes.view()
        boxes.flags.writeable = False
    if stack.reads_memory_of(frame):
        raise ValueError(
            "the frame shares memory with one of its layers; the kernel would read pixels "
            "it has already overwritten (composite into another frame, or copy the layer)"
        )
    scratch_address, band_rows = 0, DELIVER_BAND_ROWS
    if not write_frame:
        if deliver is None or not clear:
            raise ValueError("write_frame=False needs a deliver= and clear=True")
        scratch_address, scratch_rows = deliver.scratch_band(width)
        band_rows = min(band_rows, scratch_rows)  # a band must fit the scratch
    if deliver is None:
        out_address, out_code, table = NOTHING_DELIVERED
    elif not isinstance(deliver, Delivery):
        raise TypeError(f"deliver must be a Delivery or None, not {type(deliver).__name__}")
    else:
        out_address, out_code, table = deliver.kernel_arguments(frame, boxes)
        if scratch_address and out_code == NO_DELIVERY:
            raise ValueError(
                "write_frame=False needs a delivery into another buffer than the frame"
            )
        if out_code != NO_DELIVERY and stack.reads_memory_of(deliver.out):
            raise ValueError(
                "the delivery's out shares memory with one of the layers; the kernel "
                "would overwrite pixels it has still to read"
            )
    composite_stack_kernel(
        frame.ctypes.data,
        width,
        height,
        stack.addresses,
        stack.geometry,
        stack.opacity,
        stack.modes,
        stack.flags,
        boxes,
        bool(clear),
        out_address,
        out_code,
        table,
        band_rows,
        scratch_address,
        stream_min,
        prefetch_min,
    )


def composite_layer(
    frame: np.ndarray, layer: PixelLayer, *, rows: tuple[int, int] | None = None
) -> None:
    """Composite one layer over what ``frame`` already holds, in place."""
    composite_stack(frame, [layer], rows=rows, clear=False)


# Rows ahead at which each layer's next span is prefetched. The hardware prefetcher loses
# track when one row reads six layers' rows in turn; asking for the same span a couple of
# rows ahead gives DRAM the time one or two rows take to composite.
PREFETCH_ROWS = 2


@KERNEL_INLINE
def stream_min_unless_read_back(stream_min, out_code, scratch_address):  # type: ignore[no-untyped-def]
    """The shortest run to stream in a pass that converts rows for a delivery (``out_code``) or
    composites into a scratch band: 0, since those rows are read back at once and a streamed
    line would have to come back from memory; ``stream_min`` otherwise."""
    if out_code != NO_DELIVERY or scratch_address != 0:
        return 0
    return stream_min


@KERNEL
def composite_stack_kernel(  # type: ignore[no-untyped-def]
    dst_address,
    width,
    height,
    addresses,
    geometry,
    opacity,
    modes,
    flags,
    rects,
    clear,
    out_address,
    out_code,
    table,
    band_rows,
    scratch_address,
    stream_min,
    prefetch_min,
):
    """The kernel behind :func:`composite_stack`; arguments as :class:`LayerStack` packs them,
    the boxes to composite (``(k, 4)`` int64 x0, y0, x1, y1, disjoint, inside the frame), then
    the delivery's buffer address, format code and coefficients (``Delivery``), the rows
    per converted band (even), the scratch band (0: none) and the shortest opaque run written
    with non-temporal stores (0: none; never when the rows are converted right after, which
    reads them back), and the narrowest layer whose rows get prefetch hints (0: none)."""
    stream_min = stream_min_unless_read_back(stream_min, out_code, scratch_address)
    ks = np.empty(geometry.shape[0], np.float32)  # as = Sa * k, k = opacity / 255
    opacity32 = np.empty(geometry.shape[0], np.float32)
    for j in range(geometry.shape[0]):
        ks[j] = np.float32(opacity[j] / 255.0)
        opacity32[j] = np.float32(opacity[j])
    acc = np.empty(4 * CHUNK, np.float32)
    for r in range(rects.shape[0]):
        _composite_box(
            dst_address,
            width,
            height,
            addresses,
            geometry,
            opacity,
            modes,
            flags,
            ks,
            opacity32,
            acc,
            rects[r, 0],
            rects[r, 1],
            rects[r, 2],
            rects[r, 3],
            clear,
            out_address,
            out_code,
            table,
            band_rows,
            scratch_address,
            stream_min,
            prefetch_min,
        )
    if stream_min != 0:
        store_fence()


@KERNEL_INLINE
def _copy_window(  # type: ignore[no-untyped-def]
    dst,
    row,
    w0,
    w1,
    top,
    tsrc,
    ts,
    clear,
    copy_j,
    copies,
    geometry,
    kinds,
    addresses,
    y,
    stream_min,
):
    """Columns ``[w0, w1)`` of a row that only opaque copies cover above its start (the row's
    ``copies`` of them are ``copy_j``): integer copies, no arithmetic (the bytes the
    accumulator would give, see ``accumulate``); long ones streamed (``copy_opaque_gap``)."""
    if copies == 0:  # no call for the common gap (between sprites)
        if top >= 0:
            copy_opaque_gap(dst, row + w0, tsrc, ts + w0, w1 - w0, stream_min)
        elif clear:
            fill_span(dst, row + w0, w1 - w0, _ZERO)
    else:
        copy_row_in_column_order(
            dst,
            row,
            w0,
            w1,
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
        )


@KERNEL_INLINE
def _copy_clipped(dst, row, w0, w1, j, geometry, addresses, y):  # type: ignore[no-untyped-def]
    """Layer ``j``'s pixels (an opaque copy) in columns ``[w0, w1)`` of the row."""
    x, ly, w, h = geometry[j, 0], geometry[j, 1], geometry[j, 2], geometry[j, 3]
    x0 = max(x, w0)
    x1 = min(x + w, w1)
    if x0 < x1:
        src = pixels_at(addresses[j], w * h)
        copy_opaque_span(dst, row + x0, src, (y - ly) * w + (x0 - x), x1 - x0)


@KERNEL_INLINE
def _accumulate_window(  # type: ignore[no-untyped-def]
    dst,
    row,
    w0,
    w1,
    top,
    tsrc,
    ts,
    clear,
    entries,
    begin,
    last,
    geometry,
    kinds,
    addresses,
    y,
    y1,
    acc,
    ks,
    opacity32,
    opacity,
    modes,
    prefetch_min,
):
    """Columns ``[w0, w1)`` (at most ``CHUNK``) of a row, blended in the accumulator from its
    start (the row-starting layer, transparent black, or the frame) and rounded once."""
    n = w1 - w0
    pending_clear = False
    if top >= 0:
        load_opaque(acc, 0, tsrc, ts + w0, n)
    elif clear:
        pending_clear = True  # the first layer is stored without reading anything
    else:
        load_frame(acc, 0, dst, row + w0, n)
    for e in range(begin, last):
        j = entries[e]
        x, ly, w, h = geometry[j, 0], geometry[j, 1], geometry[j, 2], geometry[j, 3]
        x0 = max(x, w0)
        x1 = min(x + w, w1)
        if x0 >= x1:
            continue
        m = x1 - x0
        o = x0 - w0
        src = pixels_at(addresses[j], w * h)
        s = (y - ly) * w + (x0 - x)
        kind = kinds[j]
        _prefetch_ahead(addresses, j, s, w, ly, h, y, y1, m, prefetch_min)
        if pending_clear:
            pending_clear = False
            zero(acc, 0, o)
            zero(acc, o + m, n - o - m)
            if kind & OPAQUE_COPY == OPAQUE_COPY:
                load_opaque(acc, o, src, s, m)
                continue
            if kind & STRAIGHT_NORMAL:
                store_normal(acc, o, src, s, m, ks[j])
                continue
            zero(acc, o, m)
        if kind & OPAQUE_COPY == OPAQUE_COPY:
            load_opaque(acc, o, src, s, m)
        elif kind & STRAIGHT_NORMAL:
            blend_normal(acc, o, src, s, m, ks[j])
        elif modes[j] == _NORMAL:
            blend_normal_premultiplied(acc, o, src, s, m, opacity32[j], ks[j])
        else:
            blend_general(acc, o, src, s, m, opacity[j], modes[j], (kind & PREMULTIPLIED) != 0)
    if pending_clear:
        zero(acc, 0, n)
    write_back(dst, row + w0, acc, 0, n, clear)


@KERNEL_INLINE
def _prefetch_ahead(addresses, j, s, w, ly, h, y, y1, m, prefetch_min):  # type: ignore[no-untyped-def]
    """Hints for the same ``m`` pixels of layer ``j`` a few rows down, if it is at least
    ``prefetch_min`` wide (0: never)."""
    if prefetch_min != 0 and w >= prefetch_min and y + PREFETCH_ROWS < min(ly + h, y1):
        prefetch_pixels(addresses[j] + 4 * (s + PREFETCH_ROWS * w), m)


@KERNEL_INLINE
def _layer_row(addresses, geometry, j, y, column):  # type: ignore[no-untyped-def]
    """Layer ``j``'s pixels, and the index in them of its pixel at ``(column, y)``."""
    x, ly, w, h = geometry[j, 0], geometry[j, 1], geometry[j, 2], geometry[j, 3]
    return pixels_at(addresses[j], w * h), (y - ly) * w + (column - x)


@KERNEL_INLINE
def _prefetch_layer(addresses, geometry, j, s, y, y1, m, prefetch_min):  # type: ignore[no-untyped-def]
    _prefetch_ahead(
        addresses, j, s, geometry[j, 2], geometry[j, 1], geometry[j, 3], y, y1, m, prefetch_min
    )


@KERNEL_INLINE
def _fused_run(
    dst,
    row,
    u,
    v,
    covers,
    f,
    m,
    top,
    tsrc,
    ts,
    clear,
    geometry,
    addresses,
    y,
    y1,
    acc,
    ks,
    prefetch_min,
):  # type: ignore[no-untyped-def]
    """Columns ``[u, v)``, which the ``m`` straight ``normal`` layers ``covers[f:f + m]``
    (stack order) all cover entirely, over the row start or transparent black: fused passes
    (up to three layers over an opaque start in one; otherwise two layers to an accumulator
    pass and the last one with the write-back, ``accumulate``)."""
    if m == 1:
        j = covers[f]
        src, s = _layer_row(addresses, geometry, j, y, u)
        _prefetch_layer(addresses, geometry, j, s, y, y1, v - u, prefetch_min)
        if top >= 0:
            over_opaque_write(dst, row + u, tsrc, ts + u, src, s, v - u, ks[j])
        else:
            over_clear_write(dst, row + u, src, s, v - u, ks[j])
        return
    if m == 2 and top >= 0:
        j = covers[f]
        j2 = covers[f + 1]
        src, s = _layer_row(addresses, geometry, j, y, u)
        src2, s2 = _layer_row(addresses, geometry, j2, y, u)
        _prefetch_layer(addresses, geometry, j, s, y, y1, v - u, prefetch_min)
        _prefetch_layer(addresses, geometry, j2, s2, y, y1, v - u, prefetch_min)
        over_opaque_pair_write(dst, row + u, tsrc, ts + u, src, s, ks[j], src2, s2, ks[j2], v - u)
        return
    if m == 3 and top >= 0:
        j = covers[f]
        j2 = covers[f + 1]
        j3 = covers[f + 2]
        src, s = _layer_row(addresses, geometry, j, y, u)
        src2, s2 = _layer_row(addresses, geometry, j2, y, u)
        src3, s3 = _layer_row(addresses, geometry, j3, y, u)
        _prefetch_layer(addresses, geometry, j, s, y, y1, v - u, prefetch_min)
        _prefetch_layer(addresses, geometry, j2, s2, y, y1, v - u, prefetch_min)
        _prefetch_layer(addresses, geometry, j3, s3, y, y1, v - u, prefetch_min)
        over_opaque_triple_write(
            dst, row + u, tsrc, ts + u, src, s, ks[j], src2, s2, ks[j2], src3, s3, ks[j3], v - u
        )
        return
    for c0 in range(u, v, CHUNK):
        n = min(CHUNK, v - c0)
        j = covers[f]
        src, s = _layer_row(addresses, geometry, j, y, c0)
        _prefetch_layer(addresses, geometry, j, s, y, y1, n, prefetch_min)
        if top >= 0:
            load_opaque(acc, 0, tsrc, ts + c0, n)
            blend_normal(acc, 0, src, s, n, ks[j])
        else:
            store_normal(acc, 0, src, s, n, ks[j])
        c = 1
        while m - c > 1:
            j = covers[f + c]
            src, s = _layer_row(addresses, geometry, j, y, c0)
            _prefetch_layer(addresses, geometry, j, s, y, y1, n, prefetch_min)
            if m - c == 2:
                blend_normal(acc, 0, src, s, n, ks[j])
                c += 1
                break
            j2 = covers[f + c + 1]
            src2, s2 = _layer_row(addresses, geometry, j2, y, c0)
            _prefetch_layer(addresses, geometry, j2, s2, y, y1, n, prefetch_min)
            blend_normal_pair(acc, 0, src, s, ks[j], src2, s2, ks[j2], n)
            c += 2
        j = covers[f + c]
        src, s = _layer_row(addresses, geometry, j, y, c0)
        _prefetch_layer(addresses, geometry, j, s, y, y1, n, prefetch_min)
        blend_normal_write(dst, row + c0, acc, 0, src, s, n, ks[j], clear)


@KERNEL
def _keep_alive(*arrays):  # type: ignore[no-untyped-def]
    """A use that keeps arrays alive up to this point (``unowned`` views of them are)."""
    return len(arrays)


@KERNEL
def _composite_box(  # type: ignore[no-untyped-def]
    dst_address,
    width,
    height,
    addresses,
    geometry,
    opacity,
    modes,
    flags,
    ks,
    opacity32,
    acc,
    cx0,
    y0,
    cx1,
    y1,
    clear,
    out_address,
    out_code,
    table,
    band_rows,
    scratch_address,
    stream_min,
    prefetch_min,
):
    """Composite (and deliver) the box ``[cx0, cx1) x [y0, y1)`` of the frame.

    Each row is cut into windows of at most ``CHUNK`` columns. In a window, the columns that
    only opaque copies cover are copied as integers; the run between the first and the last
    column some other layer covers goes through the accumulator. Every decision is per layer,
    row and window, and every loop's result per pixel is the same whichever window it runs
    in (``framering.kernels.accumulate``), so a box composited alone matches the whole frame.
    """
    if cx0 >= cx1 or y0 >= y1:
        return
    band = y0  # first row not yet delivered
    dst = pixels_at(dst_address, width * height)
    if scratch_address != 0:
        # rows go to a band-sized scratch buffer instead of the frame: `dst` is a virtual
        # frame whose rows [band, band + band_rows) are the scratch (only those are touched)
        dst = pixels_at(scratch_address - 4 * band * width, width * height)
    owned_starts, owned_entries, owned_by_column = rows_to_layers(geometry, cx0, y0, cx1, y1)
    owned_kinds = layer_kinds(cx0, cx1, geometry, opacity, modes, flags)
    plan_rows, cover_room = plan_capacity(geometry.shape[0])
    owned_spans = np.empty((SPAN_ROWS, geometry.shape[0]), np.int64)
    owned_plan = np.empty((plan_rows, PLAN_COLUMNS), np.int64)
    owned_covers = np.empty(cover_room, np.int64)
    # views without reference counts for everything the inlined helpers take (the owned
    # arrays stay alive to the end: see the last line)
    starts = unowned(owned_starts)
    entries = unowned(owned_entries)
    by_column = unowned(owned_by_column)
    kinds = unowned(owned_kinds)
    spans = unowned(owned_spans)
    plan = unowned(owned_plan)
    covers = unowned(owned_covers)
    copy_j = spans[COPY_J]
    addresses = unowned(addresses)
    geometry = unowned(geometry)
    opacity = unowned(opacity)
    modes = unowned(modes)
    ks = unowned(ks)
    opacity32 = unowned(opacity32)
    acc = unowned(acc)
    tsrc = dst  # the row-starting layer's pixels, when there is one
    planned = -1  # first entry of the row planned last (-1: none yet)
    planned_count = 0
    actions = 0
    copies = 0
    top = -1
    above = 0  # entries of the row above its start, after `begin`
    for y in range(y0, y1):
        row = y * width
        first = starts[y - y0]
        last = starts[y - y0 + 1]
        # a row with the same layers as the row planned last does what that row did
        same = planned >= 0 and last - first == planned_count
        if same:
            for q in range(last - first):
                if entries[first + q] != entries[planned + q]:
                    same = False
                    break
        if not same:
            top, begin = row_start(entries, kinds, first, last)
            above = begin - first
            actions, copies = plan_row(
                by_column, first, last, top, cx0, cx1, geometry, kinds, clear, spans, plan, covers
            )
            planned = first
            planned_count = last - first
        begin = first + above
        ts = 0
        if top >= 0:
            x, ly, w, h = geometry[top, 0], geometry[top, 1], geometry[top, 2], geometry[top, 3]
            tsrc = pixels_at(addresses[top], w * h)
            ts = (y - ly) * w - x  # tsrc[ts + column]
        for p in range(actions):
            action = plan[p, 0]
            if action == RUN:
                _fused_run(
                    dst,
                    row,
                    plan[p, 1],
                    plan[p, 2],
                    covers,
                    plan[p, 3],
                    plan[p, 4],
                    top,
                    tsrc,
                    ts,
                    clear,
                    geometry,
                    addresses,
                    y,
                    y1,
                    acc,
                    ks,
                    prefetch_min,
                )
            elif action == GAP:
                _copy_window(
                    dst,
                    row,
                    plan[p, 1],
                    plan[p, 2],
                    top,
                    tsrc,
                    ts,
                    clear,
                    copy_j,
                    copies,
                    geometry,
                    kinds,
                    addresses,
                    y,
                    stream_min,
                )
            elif action == ACCUMULATE:
                for c0 in range(plan[p, 1], plan[p, 2], CHUNK):
                    _accumulate_window(
                        dst,
                        row,
                        c0,
                        min(c0 + CHUNK, plan[p, 2]),
                        top,
                        tsrc,
                        ts,
                        clear,
                        entries,
                        begin,
                        last,
                        geometry,
                        kinds,
                        addresses,
                        y,
                        y1,
                        acc,
                        ks,
                        opacity32,
                        opacity,
                        modes,
                        prefetch_min,
                    )
            else:  # COPIES_ABOVE: opaque copies above a fused cluster, as integers
                for c in range(copies):
                    if copy_j[c] > plan[p, 3]:
                        _copy_clipped(
                            dst, row, plan[p, 1], plan[p, 2], copy_j[c], geometry, addresses, y
                        )
        # a finished band of rows converted while it is still in cache
        if out_code != NO_DELIVERY and (y + 1 - band == band_rows or y == y1 - 1):
            deliver_rows(dst, width, height, cx0, band, cx1, y + 1, out_address, out_code, table)
            band = y + 1
            if scratch_address != 0:
                dst = pixels_at(scratch_address - 4 * band * width, width * height)
    _keep_alive(
        owned_starts,
        owned_entries,
        owned_by_column,
        owned_kinds,
        owned_spans,
        owned_plan,
        owned_covers,
    )
