"""The whole-stack kernel: an ordered list of layers composited into a frame in one pass.

Per-layer passes over a whole frame read and write the output once per layer; this kernel reads
and writes each output row once while every layer that covers it is blended in, so the row
stays in L1 cache and memory traffic is close to "each visible layer byte read once plus the
output written once". Per row:

1. Find the topmost layer that replaces the whole row (opaque, opacity 1, mode ``normal`` or
   ``source``, spans the width): nothing below it is read at all (occlusion). The row starts
   as a copy of it, except where a later copying layer will overwrite it anyway.
2. Otherwise the row starts as transparent black (``clear=True``, the first layer is written
   without reading) or as whatever the frame held (``clear=False``).
3. Blend every later layer's span into the row, picking the cheapest exact loop: a copy for
   layers that replace, for straight ``normal`` layers the float32 loop over a cleared row,
   over an opaque destination or over any destination, the scalar float64 ``general_span``
   for everything else (see ``framering.kernels.spans``).
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

from framering.kernels.blend import BlendMode
from framering.kernels.codes import NO_DELIVERY
from framering.kernels.convert_out import deliver_rows
from framering.kernels.delivery import DELIVER_BAND_ROWS, NOTHING_DELIVERED, Delivery
from framering.kernels.jit import KERNEL, KERNEL_INLINE
from framering.kernels.layers import LayerStack, PixelLayer
from framering.kernels.pointers import pixels_at, prefetch_pixels
from framering.kernels.row_plan import (
    COPIES,
    OPAQUE,
    PREMULTIPLIED,
    STARTS_ROW,
    STRAIGHT_NORMAL,
    copy_row_around_copies,
    layer_kinds,
    rows_to_layers,
)
from framering.kernels.spans import (
    alpha_and_or,
    copy_opaque_span,
    copy_span,
    fill_span,
    general_span,
    over_clear_span,
    over_opaque_span,
    over_span,
)
from framering.kernels.validate import check_rects, check_rgba, check_rows

_SOURCE = int(BlendMode.SOURCE)
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
    """
    frame = check_rgba(frame, "frame", writable=True)
    height, width = frame.shape[0], frame.shape[1]
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
# Pixels blended between two groups of prefetch hints: a whole 4K row of hints at once
# overflows the core's miss queues and most are dropped (stress-4k: 26 ms a frame with one
# burst per row, 15.5 ms with 128- or 512-pixel chunks, 23 ms with 2048). 512 keeps the
# opaque-destination loop's 256-pixel alpha tests.
PREFETCH_CHUNK = 512

# Spans shorter than this are not prefetched: a sprite's few cache lines a row are hot in L1
# or the hardware prefetcher's to fetch, and the hints cost more than they save.
PREFETCH_MIN_PIXELS = 256

# The blend loops a span can take (``_blend_run``).
_OP_COPY = 0
_OP_OVER_CLEAR = 1
_OP_OVER_OPAQUE = 2
_OP_OVER = 3
_OP_GENERAL = 4
_OP_COPY_OPAQUE = 5  # a copy of a layer flagged opaque: its alpha is written as 255


@KERNEL_INLINE
def _blend_run(op, dst, d, src, s, n, k, opacity, mode, premultiplied):  # type: ignore[no-untyped-def]
    """Blend ``n`` pixels with the loop ``op`` chose (see ``framering.kernels.spans``)."""
    if op == _OP_COPY:
        copy_span(dst, d, src, s, n)
    elif op == _OP_COPY_OPAQUE:
        copy_opaque_span(dst, d, src, s, n)
    elif op == _OP_OVER_CLEAR:
        over_clear_span(dst, d, src, s, n, k)
    elif op == _OP_OVER_OPAQUE:
        over_opaque_span(dst, d, src, s, n, k, opacity == 1.0)
    elif op == _OP_OVER:
        over_span(dst, d, src, s, n, k)
    else:
        general_span(dst, d, src, s, n, opacity, mode, premultiplied)


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
):
    """The kernel behind :func:`composite_stack`; arguments as :class:`LayerStack` packs them,
    the boxes to composite (``(k, 4)`` int64 x0, y0, x1, y1, disjoint, inside the frame), then
    the delivery's buffer address, format code and coefficients (``Delivery``) and the rows
    per converted band (even)."""
    ks = np.empty(geometry.shape[0], np.float32)  # as = Sa * k, k = opacity / 255
    for j in range(geometry.shape[0]):
        ks[j] = np.float32(opacity[j] / 255.0)
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
        )


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
):
    """Composite (and deliver) the box ``[cx0, cx1) x [y0, y1)`` of the frame.

    Every decision below is per layer, per row of the box or per pixel, and never reads a
    pixel outside the box: the loops that blend a pixel give the same bytes whichever of them
    runs (``framering.kernels.spans``), so a box composited alone matches the whole frame.
    """
    if cx0 >= cx1 or y0 >= y1:
        return
    band = y0  # first row not yet delivered
    dst = pixels_at(dst_address, width * height)
    if scratch_address != 0:
        # rows go to a band-sized scratch buffer instead of the frame: `dst` is a virtual
        # frame whose rows [band, band + band_rows) are the scratch (only those are touched)
        dst = pixels_at(scratch_address - 4 * band * width, width * height)
    starts, entries = rows_to_layers(geometry, cx0, y0, cx1, y1)
    kinds = layer_kinds(cx0, cx1, geometry, opacity, modes, flags)
    for y in range(y0, y1):
        row = y * width
        first = starts[y - y0]
        last = starts[y - y0 + 1]
        # 1. occlusion: start at the topmost layer that replaces the whole row of the box
        begin = first
        row_opaque = False
        pending_clear = clear
        for e in range(last - 1, first - 1, -1):
            j = entries[e]
            if kinds[j] & STARTS_ROW:
                x, ly, w, h = geometry[j, 0], geometry[j, 1], geometry[j, 2], geometry[j, 3]
                src = pixels_at(addresses[j], w * h)
                begin = e + 1
                copy_row_around_copies(
                    dst, row, src, (y - ly) * w - x, cx0, cx1, entries, begin, last, geometry, kinds
                )
                row_opaque = True
                pending_clear = False
                break
        # 2-3. blend every later layer's visible span into the row
        for e in range(begin, last):
            j = entries[e]
            x, ly, w, h = geometry[j, 0], geometry[j, 1], geometry[j, 2], geometry[j, 3]
            x0 = max(x, cx0)
            x1 = min(x + w, cx1)
            n = x1 - x0
            if n <= 0:
                continue
            src = pixels_at(addresses[j], w * h)
            s = (y - ly) * w + (x0 - x)
            d = row + x0
            kind = kinds[j]
            premultiplied = (kind & PREMULTIPLIED) != 0
            # 1. which loop blends this span
            if pending_clear:
                # the row is still conceptually transparent black: zero what this layer
                # does not cover, and write its own span without reading it
                fill_span(dst, row + cx0, x0 - cx0, _ZERO)
                fill_span(dst, row + x1, cx1 - x1, _ZERO)
                pending_clear = False
                row_opaque = False
                if kind & COPIES:
                    op = _OP_COPY_OPAQUE if kind & OPAQUE else _OP_COPY
                elif kind & STRAIGHT_NORMAL:
                    op = _OP_OVER_CLEAR
                else:
                    fill_span(dst, d, n, _ZERO)
                    op = _OP_GENERAL
            elif kind & COPIES:
                op = _OP_COPY_OPAQUE if kind & OPAQUE else _OP_COPY
                if not kind & OPAQUE:
                    row_opaque = False
            elif kind & STRAIGHT_NORMAL:
                if row_opaque or alpha_and_or(dst, d, n)[0] == 255:
                    op = _OP_OVER_OPAQUE
                else:
                    op = _OP_OVER
            else:
                op = _OP_GENERAL
                if modes[j] == _SOURCE:  # fades towards the backdrop: alpha may drop below 255
                    row_opaque = False
            # 2. blend it in chunks, each after prefetch hints for the same pixels a few rows
            # down (a whole 4K row of hints at once overflows the core's miss queues)
            if n < PREFETCH_MIN_PIXELS or y + PREFETCH_ROWS >= min(ly + h, y1):
                _blend_run(op, dst, d, src, s, n, ks[j], opacity[j], modes[j], premultiplied)
                continue
            ahead = addresses[j] + 4 * (s + PREFETCH_ROWS * w)
            for c in range(0, n, PREFETCH_CHUNK):
                m = min(PREFETCH_CHUNK, n - c)
                prefetch_pixels(ahead + 4 * c, m)
                _blend_run(
                    op, dst, d + c, src, s + c, m, ks[j], opacity[j], modes[j], premultiplied
                )
        if pending_clear:
            fill_span(dst, row + cx0, cx1 - cx0, _ZERO)
        # 4. a finished band of rows converted while it is still in cache
        if out_code != NO_DELIVERY and (y + 1 - band == band_rows or y == y1 - 1):
            deliver_rows(dst, width, height, cx0, band, cx1, y + 1, out_address, out_code, table)
            band = y + 1
            if scratch_address != 0:
                dst = pixels_at(scratch_address - 4 * band * width, width * height)
