"""The source registry: every picture an engine's layers can show, from upload to free.

It makes sources (segments named after the engine, attached by every worker), pins the
buffers a frame reads when the frame is submitted, swaps stalled live sources for their
fallbacks, frees sources once no frame reads them, and counts their shared memory.

Pinning is on the per-frame path: one dictionary look-up and one short lock per source a
frame reads, and the buffer index and picture version written into the frame's records as
whole columns.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal

import numpy as np

from framering.errors import (
    ForeignObjectError,
    InvalidTypeError,
    InvalidValueError,
    SourceBusyError,
)
from framering.kernels import FrameFormat, is_opaque
from framering.kernels.codes import LAYER_FRAME, LAYER_OPAQUE, matrix_code, range_code
from framering.kernels.transform import Transform
from framering.kernels.validate import MAX_SIDE, check_rgba
from framering.layer import PackedLayers
from framering.lifetime import Lifetime
from framering.pool import WorkerPool
from framering.protocol import (
    TRANSFORM_RECORD,
    encode_attach,
    pack_transform,
)
from framering.shm import CreatedSegment, segment_name
from framering.sources import LiveSource, Source, buffer_stride
from framering.validation import (
    checked,
    pixel_format,
    positive_int,
    positive_seconds,
)

AnySource = Source | LiveSource
Pins = list[tuple[AnySource, int]]
"""(source, buffer) pairs a task pinned: unpinned exactly once, when the task ends."""

# Most buffers a live source may have (each is a picture of shared memory).
MAX_LIVE_BUFFERS: Final = 64


@dataclass(frozen=True, slots=True)
class PinnedFrame:
    """What :meth:`SourceRegistry.pin_frame` did to a frame's records."""

    pins: Pins
    transforms: np.ndarray
    """The frame's TRANSFORM_RECORDs (with any a fallback needed appended)."""
    stalled: bool
    """Some layer showed a stalled live source's fallback."""


def unpin(pins: Pins) -> None:
    for source, buffer in pins:
        source.unpin(buffer)


class SourceRegistry:
    """The sources of one engine; see the module docstring."""

    def __init__(self, token: str, lifetime: Lifetime, pool: WorkerPool) -> None:
        self._token = token
        self._lifetime = lifetime
        self._pool = pool
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._sources: dict[int, AnySource] = {}
        self._freeing: set[int] = set()  # sources a free() waits to unlink: no new fallback

    # ------------------------------------------------------------------ making sources
    def upload(self, pixels: np.ndarray, opaque: bool | None) -> Source:
        """A source holding a copy of ``pixels`` (see ``Engine.upload``)."""
        self._lifetime.check_open()
        checked(check_rgba, pixels, "pixels", writable=False)
        height, width = pixels.shape[:2]
        opaque = is_opaque(pixels) if opaque is None else bool(opaque)
        source_id, segment = self._segment(width, height, 1, FrameFormat.RGBA, "an uploaded source")
        source = Source(self._token, source_id, segment, width, height, opaque, pixels)
        self._register(source)
        return source

    def empty(self, width: int, height: int, opaque: bool, what: str) -> Source:
        """A source a worker will write (the target of a transform task)."""
        self._lifetime.check_open()
        source_id, segment = self._segment(width, height, 1, FrameFormat.RGBA, what)
        source = Source(self._token, source_id, segment, width, height, opaque)
        self._register(source)
        return source

    def live_source(
        self,
        width: int,
        height: int,
        *,
        buffers: int,
        opaque: bool,
        stall_timeout: float | None,
        fallback: Source | Literal["transparent"] | None,
        format: FrameFormat | str,
        yuv_matrix: str,
        yuv_range: str,
    ) -> LiveSource:
        """A live source, its arguments checked (see ``Engine.live_source``)."""
        self._lifetime.check_open()
        width = positive_int(width, "width", MAX_SIDE)
        height = positive_int(height, "height", MAX_SIDE)
        buffers = positive_int(buffers, "buffers", MAX_LIVE_BUFFERS)
        if buffers < 2:
            raise InvalidValueError("a live source needs at least 2 buffers")
        if stall_timeout is not None:
            stall_timeout = positive_seconds(stall_timeout, "stall_timeout")
        if fallback is not None and not (isinstance(fallback, str) and fallback == "transparent"):
            if not isinstance(fallback, Source):
                raise InvalidTypeError("fallback must be an uploaded Source or 'transparent'")
            fallback.check_owner(self._token)
        fmt = pixel_format(format, "format", yuv_matrix, yuv_range, width, height)
        source_id, segment = self._segment(width, height, buffers, fmt, "a live source")
        source = LiveSource(
            self._token,
            source_id,
            segment,
            width,
            height,
            buffers,
            bool(opaque) or fmt not in (FrameFormat.RGBA, FrameFormat.BGRA),
            fmt,
            yuv_range=yuv_range,
            stall_timeout=stall_timeout,
            fallback=fallback,
        )
        self._register(source, matrix_code(yuv_matrix), range_code(yuv_range))
        return source

    def _segment(
        self, width: int, height: int, buffers: int, fmt: FrameFormat, what: str
    ) -> tuple[int, CreatedSegment]:
        source_id = next(self._ids)
        size = buffer_stride(width, height, fmt) * buffers
        name = segment_name(self._token, f"src{source_id}")
        return source_id, CreatedSegment.create(name, size, what)

    def _register(self, source: AnySource, matrix: int = 1, value_range: int = 0) -> None:
        with self._lock:
            if self._lifetime.closed:
                source.discard()
                self._lifetime.check_open()
            fallback = getattr(source, "fallback", None)
            if isinstance(fallback, Source) and (
                fallback.id in self._freeing or fallback.id not in self._sources
            ):
                source.discard()
                raise ForeignObjectError(f"the fallback {fallback!r} is being freed or was freed")
            self._sources[source.id] = source
        attach = encode_attach(
            source.id,
            source.width,
            source.height,
            source.buffers,
            source.segment_name,
            source.format.code,
            matrix,
            value_range,
        )
        self._pool.attach_source(source.id, attach)

    # ------------------------------------------------------------------ freeing
    def free(self, source: AnySource, timeout: float | None) -> None:
        """Unlink a source once no frame in flight reads it (see ``Engine.free``)."""
        self._lifetime.check_open()
        if not isinstance(source, Source | LiveSource):
            raise InvalidTypeError(
                f"free() takes a Source or LiveSource, not {type(source).__name__}"
            )
        source.check_owner(self._token)
        with self._lock:
            users = [s for s in self._sources.values() if getattr(s, "fallback", None) is source]
            if not users:
                self._freeing.add(source.id)  # from now on no live source takes it as fallback
        if users:
            raise SourceBusyError(
                f"{source!r} is the fallback of {users[0]!r}: free the live source first"
            )
        try:
            source.free(timeout)
        finally:
            with self._lock:
                self._freeing.discard(source.id)
        with self._lock:
            self._sources.pop(source.id, None)
        self._pool.detach_source(source.id)

    def discard_all(self) -> None:
        """Unlink every source at engine close, whatever pins them (the workers are gone).

        One at a time, each forgotten only once unlinked: an interrupted close leaves the
        rest for the next."""
        while True:
            with self._lock:
                if not self._sources:
                    return
                source_id = next(iter(self._sources))
                source = self._sources[source_id]
            source.discard()
            with self._lock:
                self._sources.pop(source_id, None)

    def count(self) -> int:
        """Sources held now."""
        with self._lock:
            return len(self._sources)

    def shm_bytes(self) -> int:
        """Bytes of shared memory the sources hold."""
        with self._lock:
            return sum(
                buffer_stride(s.width, s.height, s.format) * s.buffers
                for s in self._sources.values()
            )

    # ------------------------------------------------------------------ per frame
    def pin_frame(self, packed: PackedLayers, pins: Pins) -> PinnedFrame:
        """Swap stalled live sources for their fallbacks in ``packed``'s records, then pin the
        latest buffer of every source the frame reads and write each buffer's index and
        version into the records. Raises ``ForeignObjectError`` if a source was freed
        meanwhile (what was pinned is in ``pins``)."""
        row_sources = packed.sources
        live = [s for s in dict.fromkeys(row_sources) if type(s) is LiveSource]
        transforms, stalled = (
            self._apply_fallbacks(packed, live) if live else (packed.transforms, False)
        )
        if stalled:  # some rows now name a fallback
            row_sources = self._sources_of(packed.records)
        self._pin(packed.records, row_sources, pins)
        return PinnedFrame(pins, transforms, stalled)

    def pin_source(self, records: np.ndarray, source: AnySource, pins: Pins) -> None:
        """Pin the latest buffer of the one source a transform task reads."""
        self._pin(records, [source] * len(records), pins)

    def _sources_of(self, records: np.ndarray) -> list[AnySource | None]:
        """The source each record names (None for a frame read as a layer)."""
        sources: list[AnySource | None] = []
        for source_id, flags in zip(
            records["source"].tolist(), records["flags"].tolist(), strict=True
        ):
            source = None if flags & LAYER_FRAME else self._sources.get(source_id)
            if source is None and not flags & LAYER_FRAME:
                raise ForeignObjectError(f"source {source_id} was freed")
            sources.append(source)
        return sources

    def _pin(
        self, records: np.ndarray, row_sources: Sequence[AnySource | None], pins: Pins
    ) -> None:
        """Pin the source of each row (``row_sources``, None for a frame row) once, into
        ``pins`` as each pin is taken, so that whoever made the list can let go of exactly
        what was pinned, whatever interrupts this; then write each buffer's index and version
        into its rows (an uploaded source's one picture is (0, 0), which the records hold)."""
        published: dict[AnySource, tuple[int, int]] = {}
        for source in dict.fromkeys(s for s in row_sources if s is not None):
            buffer, version = source.pin_latest()  # raises if it was freed meanwhile
            pins.append((source, buffer))
            if buffer or version:
                published[source] = (buffer, version)
        if published:
            for row, source in enumerate(row_sources):
                chosen = published.get(source)  # type: ignore[arg-type]
                if chosen is not None:
                    records[row]["buffer"], records[row]["version"] = chosen

    def _apply_fallbacks(
        self, packed: PackedLayers, live: list[LiveSource]
    ) -> tuple[np.ndarray, bool]:
        """Swap stalled live sources for their fallbacks in a frame's records.

        A transformed layer keeps its transform when it fits the fallback (a crop inside
        it); otherwise the fallback is scaled to the size the live layer had, so it is drawn
        where the live picture was either way. Returns the frame's transform records after
        the swap, and whether anything stalled.
        """
        records, transforms = packed.records, packed.transforms
        stalled = False
        now = time.monotonic()
        for source in live:
            if not source.stalled(now):
                continue
            if source.fallback is None:
                continue  # keeps showing its last picture
            stalled = True
            rows = (records["source"] == source.id) & ((records["flags"] & LAYER_FRAME) == 0)
            if source.fallback == "transparent":
                records["opacity"][rows] = 0.0
                continue
            fallback = source.fallback
            assert isinstance(fallback, Source)
            fallback.check_owner(self._token)
            for row in np.flatnonzero(rows).tolist():
                record = records[row]
                opaque = fallback.opaque
                number = int(record["transform"])
                packed.sizes[row] = (fallback.width, fallback.height)
                if number:
                    transform = packed.transform_list[number - 1]
                    try:
                        packed.sizes[row] = transform.output_size(fallback.width, fallback.height)
                    except ValueError:
                        size = transform.output_size(source.width, source.height)
                        transform = Transform(size=size, interpolation=transform.interpolation)
                        packed.sizes[row] = size
                        extra = np.zeros(1, TRANSFORM_RECORD)
                        pack_transform(transform, extra)
                        transforms = np.concatenate([transforms, extra])
                        record["transform"] = len(transforms)
                    opaque = opaque and transform.keeps_opacity()
                record["source"] = fallback.id
                kept = int(record["flags"]) & (0xFF ^ LAYER_OPAQUE)
                record["flags"] = kept | (LAYER_OPAQUE if opaque else 0)
        return transforms, stalled
