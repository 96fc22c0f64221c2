"""Damage tracking: which boxes of a slot a new frame must recomposite, and nothing else.

Each slot of the ring keeps the picture of the last frame composited into it. When the slot is
reused, the new frame's layer records are compared with the records that made that picture,
and only the boxes where something changed are recomposited (the worker's kernel gives a box
exactly the bytes of the whole frame, ``composite_stack(rects=)``). This is a per-buffer
comparison, as wlroots' damage ring accumulates damage per buffer, but exact: the slot's own
previous records are compared, not a history of per-frame damage, so damage never grows
with the time since the slot was last used.

What counts as a change of a layer is a change of any byte of its record or of its transform's
parameters: its source (or the nested frame's picture version: its sequence, and a new one at
every read once the frame was handed out writable), the buffer and version a live source
published, its position, opacity, blend mode and flags. A changed layer damages its old and its
new box. Layers are matched by position in the list when the count is unchanged; when layers
were added or removed, the unchanged layers at the bottom and the top are matched from each
end and everything in between is damaged. Either way, a pixel outside the damage is covered by
the same layers, in the same order, with the same pictures, in both frames.

A slot is fully damaged (recomposited whole) when what it holds is not known to be the picture
of its last records: it was never used, its last frame failed or was retried (a dead worker
may have written anything into it), the caller was handed it writable, it was composited over
its previous content (``clear=False``), or its RGBA area is wanted but its last frame wrote only
the delivery format.

All of it is vectorised work on records, never on pixels: a few microseconds a frame.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Final

import numpy as np

from framering.protocol import LAYER_RECORD, TRANSFORM_RECORD

# Above this many raw boxes (two per changed layer), the damage is their bounding box: the
# banded union below is a Python loop, and a scene moving that many layers changes most of the
# frame anyway.
MAX_RAW_BOXES: Final = 32
# Most disjoint boxes a frame's damage is sent as; beyond, their bounding box. Each box costs
# the worker a row plan (microseconds), so a few dozen stay far below any frame's time.
MAX_BOXES: Final = 16
# A damage covering more than this share of the frame is sent as the whole frame: the boxes'
# edges would save less than their set-up costs.
WHOLE_FRAME_SHARE: Final = 0.9
# Two overlapping boxes become their bounding box when it covers at most this much more than
# the two together (a layer's old and new place); beyond, the union is cut exactly.
BOUNDING_WASTE: Final = 1.25

_RECORD_BYTES: Final = LAYER_RECORD.itemsize
_TRANSFORM_BYTES: Final = TRANSFORM_RECORD.itemsize
_NUMBER_AT: Final = LAYER_RECORD.fields["transform"][1]  # the frame-local transform number
_NUMBER_END: Final = _NUMBER_AT + LAYER_RECORD.fields["transform"][0].itemsize
NO_BOXES: Final = np.zeros((0, 4), np.int64)
NO_BOXES.setflags(write=False)


@dataclass(frozen=True, slots=True)
class SlotPicture:
    """What a slot's pixels were composited from."""

    keys: list[bytes]
    """Each layer's record without its frame-local transform number, followed by its
    transform's parameters (if it has one): equal keys, the same layer."""
    boxes: list[tuple[int, int, int, int]]
    """Each layer's box in the frame, clipped (x0, y0, x1, y1; may be empty)."""
    rgba: bool
    """The slot's RGBA area holds this picture (not only its delivery format)."""
    raw: bytes
    """The frame's records and transform records as sent: equal bytes, the same picture."""
    reads: tuple[tuple[int, int], ...] = ()
    """(slot, epoch) of every finished frame the picture shows as a layer: a frame handed out
    writable since (a new epoch) may have been drawn on, so this picture no longer holds."""


# Keys, boxes and their comparison are plain Python on bytes and ints: a frame has a handful of
# layers, and each numpy call costs a microsecond or more, which is most of a frame's budget
# in the parent.


def layer_keys(raw_records: bytes, transforms: bytes) -> list[bytes]:
    """The comparison key of each layer, from the records' and transform records' bytes: its
    record without the frame-local transform number, then its transform's parameters."""
    keys = []
    for start in range(0, len(raw_records), _RECORD_BYTES):
        record = raw_records[start : start + _RECORD_BYTES]
        number = int.from_bytes(record[_NUMBER_AT:_NUMBER_END], "little")
        key = record[:_NUMBER_AT] + record[_NUMBER_END:]
        if number:
            key += transforms[(number - 1) * _TRANSFORM_BYTES : number * _TRANSFORM_BYTES]
        keys.append(key)
    return keys


def layer_boxes(
    records: np.ndarray, sizes: np.ndarray, width: int, height: int
) -> list[tuple[int, int, int, int]]:
    """Each layer's box ``(x0, y0, x1, y1)`` in a ``width`` x ``height`` frame, clipped."""
    boxes = []
    for x, y, (w, h) in zip(
        records["x"].tolist(), records["y"].tolist(), sizes.tolist(), strict=True
    ):
        right, bottom = x + w, y + h
        boxes.append(  # clipped to the frame (conditionals: min and max calls cost more)
            (
                0 if x < 0 else width if x > width else x,
                0 if y < 0 else height if y > height else y,
                0 if right < 0 else width if right > width else right,
                0 if bottom < 0 else height if bottom > height else bottom,
            )
        )
    return boxes


def changed_boxes(old: SlotPicture, new: SlotPicture) -> list[tuple[int, int, int, int]]:
    """The boxes of every layer that differs between two pictures (see the module docstring),
    possibly empty or overlapping."""
    n_old, n_new = len(old.keys), len(new.keys)
    if n_old == n_new:
        changed = []
        for i in range(n_old):
            if old.keys[i] != new.keys[i]:
                changed += (old.boxes[i], new.boxes[i])
        return changed
    shorter = min(n_old, n_new)
    bottom = 0
    while bottom < shorter and old.keys[bottom] == new.keys[bottom]:
        bottom += 1
    top = 0
    while top < shorter - bottom and old.keys[n_old - 1 - top] == new.keys[n_new - 1 - top]:
        top += 1
    return old.boxes[bottom : n_old - top] + new.boxes[bottom : n_new - top]


def disjoint_boxes(
    boxes: Sequence[Sequence[int]] | np.ndarray, width: int, height: int, even: bool
) -> np.ndarray:
    """The union of ``boxes`` as a few disjoint boxes, rounded out to even bounds when
    ``even``; merged into their bounding box, or the whole frame, when they would be too many
    or cover nearly all of it.

    Overlapping boxes (a layer's old and new place, say) become their bounding box when that
    covers little more than the two; otherwise the union is cut exactly into bands of rows,
    each a list of column runs, as pixman keeps regions.
    """
    if isinstance(boxes, np.ndarray):
        boxes = boxes.tolist()
    result = _disjoint(boxes, width, height, even)
    return np.array(result, np.int64) if result else NO_BOXES


def _disjoint(
    boxes: Sequence[Sequence[int]], width: int, height: int, even: bool
) -> list[list[int]]:
    """:func:`disjoint_boxes` as a list (what the damage plan counts pixels of before it
    makes the one array it sends)."""
    whole = width * height
    listed = []
    largest = 0
    for x0, y0, x1, y1 in boxes:
        if x0 < x1 and y0 < y1:
            area = (x1 - x0) * (y1 - y0)
            if area > largest:
                largest = area
            listed.append([x0, y0, x1, y1])
    if not listed:
        return []
    if largest > WHOLE_FRAME_SHARE * whole:
        return [[0, 0, width, height]]  # a full-frame layer changed
    if even:
        listed = [[x0 & ~1, y0 & ~1, (x1 + 1) & ~1, (y1 + 1) & ~1] for x0, y0, x1, y1 in listed]
    if len(listed) > MAX_RAW_BOXES:
        return _at_most_whole([_bounding(listed)], width, height)
    merged = _merged_when_cheap(listed)
    result = merged if merged is not None else _banded(listed)
    if len(result) > MAX_BOXES:
        result = [_bounding(listed)]
    return _at_most_whole(result, width, height)


def _merged_when_cheap(boxes: list[list[int]]) -> list[list[int]] | None:
    """Overlapping boxes merged into bounding boxes until none overlap, or None if some merge
    would cover much more than the boxes it merges (then the exact bands are cheaper).

    Each pass merges the first overlapping pair (in list order) into the first of the two and
    starts again: a frame's handful of boxes makes this a few comparisons."""
    boxes = [list(box) for box in boxes]
    areas = [(b[2] - b[0]) * (b[3] - b[1]) for b in boxes]
    i = 0
    while i < len(boxes):
        ax0, ay0, ax1, ay1 = boxes[i]
        for j in range(i + 1, len(boxes)):
            bx0, by0, bx1, by1 = boxes[j]
            if ax0 < bx1 and bx0 < ax1 and ay0 < by1 and by0 < ay1:
                union = [
                    ax0 if ax0 < bx0 else bx0,
                    ay0 if ay0 < by0 else by0,
                    ax1 if ax1 > bx1 else bx1,
                    ay1 if ay1 > by1 else by1,
                ]
                area = (union[2] - union[0]) * (union[3] - union[1])
                if area > BOUNDING_WASTE * (areas[i] + areas[j]):
                    return None
                boxes[i], areas[i] = union, area
                del boxes[j], areas[j]
                i = -1  # start again from the first box, as after any merge
                break
        i += 1
    return boxes


def _banded(boxes: list[list[int]]) -> list[list[int]]:
    """The exact union of ``boxes`` as disjoint boxes: bands of rows between the boxes' top
    and bottom edges, each cut into merged column runs; a band with the same runs as the
    band above extends its boxes instead."""
    edges = sorted({y for box in boxes for y in (box[1], box[3])})
    result: list[list[int]] = []
    previous: list[tuple[int, int]] = []
    previous_rows: list[int] = []  # indices into result of the previous band's boxes
    for top, bottom in pairwise(edges):
        runs = sorted((x0, x1) for x0, y0, x1, y1 in boxes if y0 <= top and bottom <= y1)
        merged: list[tuple[int, int]] = []
        for x0, x1 in runs:
            if merged and x0 <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], x1))
            else:
                merged.append((x0, x1))
        if merged and merged == previous and result[previous_rows[0]][3] == top:
            for index in previous_rows:  # the same runs as the band above: extend it
                result[index][3] = bottom
            continue
        previous = merged
        previous_rows = list(range(len(result), len(result) + len(merged)))
        result.extend([x0, top, x1, bottom] for x0, x1 in merged)
    return result


def _bounding(boxes: list[list[int]]) -> list[int]:
    return [
        min(b[0] for b in boxes),
        min(b[1] for b in boxes),
        max(b[2] for b in boxes),
        max(b[3] for b in boxes),
    ]


def _at_most_whole(boxes: list[list[int]], width: int, height: int) -> list[list[int]]:
    if sum((b[2] - b[0]) * (b[3] - b[1]) for b in boxes) > WHOLE_FRAME_SHARE * width * height:
        return [[0, 0, width, height]]
    return boxes


@dataclass(frozen=True, slots=True)
class DamagePlan:
    """The boxes one frame composites, and the picture its slot holds once it is done."""

    boxes: np.ndarray
    """(k, 4) int64, disjoint: what the worker composites (empty: nothing changed)."""
    pixels: int
    """Pixels inside the boxes."""
    picture: SlotPicture | None
    """What the slot holds once the frame is done (None: not a picture of records)."""


class DamageTracker:
    """What every slot of one ring holds, and the damage of each new frame; see the module
    docstring. ``enabled=False`` composites every frame whole (the baseline, for debugging).

    Each slot has one frame at a time: :meth:`plan` runs when the frame is submitted,
    :meth:`finished` when it ends (before the slot can be reused), :meth:`forget` when the
    caller is handed the slot writable. The three never overlap for one slot.
    """

    def __init__(self, slots: int, width: int, height: int, *, even: bool, enabled: bool) -> None:
        self.enabled = enabled
        self._lock = threading.Lock()  # the caller's forget() against the manager's finished()
        self._epochs = [0] * slots  # per slot: how many times it was handed out writable
        self._width = width
        self._height = height
        self._even = even
        whole = np.array([[0, 0, width, height]], np.int64)
        whole.setflags(write=False)
        self._whole = DamagePlan(whole, width * height, None)  # frozen: one for every frame
        self._held: list[SlotPicture | None] = [None] * slots

    def plan(
        self,
        slot: int,
        records: np.ndarray,
        transforms: np.ndarray,
        sizes: np.ndarray,
        *,
        clear: bool,
        write_frame: bool,
        reads: Sequence[int] = (),
    ) -> DamagePlan:
        """The boxes a frame of ``records`` (pinned: buffers and versions filled in) must
        composite into ``slot``; ``reads`` are the slots of the finished frames it shows as
        layers. Until :meth:`finished` says the frame is done, the slot holds no known
        picture."""
        with self._lock:
            held, self._held[slot] = self._held[slot], None
            epochs = tuple((index, self._epochs[index]) for index in reads)
        whole = self._whole
        if not self.enabled or not clear:
            return whole
        if held is not None and held.reads != epochs:
            held = None  # a frame it showed was handed out writable since: pixels unknown
        raw_records = records.tobytes()
        raw_transforms = transforms.tobytes()
        raw = raw_records + raw_transforms
        if held is not None and held.raw == raw and (held.rgba or not write_frame):
            # the same records: nothing changed (a still scene costs this comparison only),
            # and nothing is written, so the RGBA area stays as current as it was
            return DamagePlan(NO_BOXES, 0, held)
        picture = SlotPicture(
            layer_keys(raw_records, raw_transforms),
            layer_boxes(records, sizes, self._width, self._height),
            write_frame,
            raw,
            epochs,
        )
        if held is None or (write_frame and not held.rgba):
            return DamagePlan(whole.boxes, whole.pixels, picture)
        boxes = _disjoint(changed_boxes(held, picture), self._width, self._height, self._even)
        if not boxes:
            return DamagePlan(NO_BOXES, 0, picture)
        pixels = sum((x1 - x0) * (y1 - y0) for x0, y0, x1, y1 in boxes)
        return DamagePlan(np.array(boxes, np.int64), pixels, picture)

    def finished(self, slot: int, plan: DamagePlan, *, ok: bool, attempts: int) -> None:
        """The frame planned for ``slot`` ended: done on its first attempt, the slot holds its
        picture; failed or retried, nothing known."""
        picture = plan.picture if ok and attempts == 1 else None
        with self._lock:
            if picture is not None and any(self._epochs[i] != e for i, e in picture.reads):
                picture = None  # a frame it read was handed out writable meanwhile
            self._held[slot] = picture

    def forget(self, slot: int) -> None:
        """The slot's pixels may be written by someone else (a writable view was handed out):
        neither it nor any picture showing it as a layer is known any more."""
        with self._lock:
            self._epochs[slot] += 1
            self._held[slot] = None
