"""Bands: one frame composited by several workers at once, each a band of its rows.

A big frame on an idle pool waits for one worker while the others sleep. Cut into row bands,
one per idle worker, it is done in about the time of one band: its latency drops by the number
of workers, its throughput stays (each band is a task of its own, with the frame's layer records
and the frame's damage boxes clipped to its rows). Every band is composited with the same
kernels over the same boxes the whole frame would have had, so the bytes are the same; a worker
that dies under a band costs only that band's retry.

``Engine(split=)`` chooses:

- ``"frame"``: never split;
- ``"bands"``: split every frame across the ready workers;
- ``"auto"`` (default): split when at least ``AUTO_MIN_PIXELS`` of the frame are to be
  recomposited and at least two workers are idle with nothing queued, so that bands never
  take workers that other frames are waiting for.

Bands also slice work without a tick while paced frames are coming (``"auto"`` and
``"bands"``): a frame expected to take more than ``SLICE_NS`` of worker time is cut into bands
of about that much, so a worker comes free for a paced frame at least that often. A worker
cannot be interrupted mid-task; a short task is the next best thing.
"""

from __future__ import annotations

import itertools
import math
from typing import Final, Literal

import numpy as np

from framering.errors import InvalidValueError

Split = Literal["auto", "frame", "bands"]
SPLITS: Final = ("auto", "frame", "bands")
# Damaged pixels from which ``auto`` splits a frame: half a 4K frame. Below it a frame takes a
# worker a few milliseconds, and the extra tasks cost more than they save.
AUTO_MIN_PIXELS: Final = 3840 * 2160 // 2
# Most bands one frame is cut into, and fewest rows in one.
MAX_BANDS: Final = 16
MIN_BAND_ROWS: Final = 8
# While paced frames are coming, unpaced frames are cut into bands of about this much worker
# time: the longest a paced frame waits for a worker, beyond the pipes.
SLICE_NS: Final = 2_000_000
MAX_SLICES: Final = 8


def check_split(split: object) -> Split:
    if split not in SPLITS:
        raise InvalidValueError(f"split must be one of {', '.join(SPLITS)}, not {split!r}")
    return split  # type: ignore[return-value]


def band_count(split: Split, damaged_pixels: int, idle: int, ready: int, waiting: int) -> int:
    """How many bands a frame is cut into: 1 keeps it whole."""
    if split == "frame":
        return 1
    if split == "bands":
        return max(1, min(ready, MAX_BANDS))
    if damaged_pixels < AUTO_MIN_PIXELS or waiting or idle < 2:
        return 1
    return min(idle, MAX_BANDS)


def slice_count(split: Split, estimate_ns: float) -> int:
    """Bands for a frame without a tick, expected to take ``estimate_ns``, while paced frames
    are coming."""
    if split == "frame":
        return 1
    return max(1, min(MAX_SLICES, math.ceil(estimate_ns / SLICE_NS)))


def split_boxes(boxes: np.ndarray, bands: int) -> list[np.ndarray]:
    """Cut disjoint boxes ``(k, 4)`` (x0, y0, x1, y1) into at most ``bands`` bands of rows of
    about equal area, on even rows (so that 4:2:0 chroma rows are never shared between bands);
    each band's boxes are the input boxes clipped to its rows. Returns the non-empty bands.

    A band ends after the first row where the area so far reaches its share of the total.
    Plain Python on the boxes' edges: a frame has a few boxes, and the dozen numpy calls this
    took cost 150 us of a paced 4K frame's submit, as the first code run after each tick."""
    if bands <= 1 or not len(boxes):
        return [boxes]
    rows = boxes.tolist()
    top = min(box[1] for box in rows)
    bottom = max(box[3] for box in rows)
    total = sum((x1 - x0) * (y1 - y0) for x0, y0, x1, y1 in rows)
    # the rows as segments between the boxes' edges, each of one area a row
    segments = []
    for y0, y1 in itertools.pairwise(sorted({y for box in rows for y in (box[1], box[3])})):
        width = sum(box[2] - box[0] for box in rows if box[1] <= y0 and y1 <= box[3])
        segments.append((y0, y1, width))
    edges = [top]
    for band in range(1, bands):
        cut = _row_reaching(segments, total * band / bands) // 2 * 2  # even rows
        if cut - edges[-1] >= MIN_BAND_ROWS and bottom - cut >= MIN_BAND_ROWS:
            edges.append(cut)
    edges.append(bottom)
    result = []
    for a, b in itertools.pairwise(edges):
        clipped = [
            [x0, max(y0, a), x1, min(y1, b)] for x0, y0, x1, y1 in rows if max(y0, a) < min(y1, b)
        ]
        if clipped:
            result.append(np.array(clipped, boxes.dtype))
    return result


def _row_reaching(segments: list[tuple[int, int, int]], share: float) -> int:
    """The row after the first row at whose end the area so far is at least ``share`` (> 0,
    below the total), given the rows as ``(first row, end row, area a row)`` segments."""
    before = 0
    for y0, y1, width in segments:
        if width and before + width * (y1 - y0) >= share:
            rows = max(1, math.ceil((share - before) / width))
            while rows > 1 and before + width * (rows - 1) >= share:
                rows -= 1  # the division's rounding, undone: the comparisons are exact
            while before + width * rows < share:
                rows += 1
            return y0 + rows
        before += width * (y1 - y0)
    return segments[-1][1]
