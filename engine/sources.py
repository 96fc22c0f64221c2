"""Layer sources in shared memory: uploaded pictures and live pictures written in place.

A source is one segment holding ``buffers`` RGBA8 pictures of the same size, each starting on a
page boundary (``buffer_stride``). Workers attach to it once and read layers straight out of it.

- :class:`Source` has one buffer, filled once by ``Engine.upload``.
- :class:`LiveSource` has a small ring of buffers. A producer writes the next picture into a
  buffer no frame is reading (``write()``), then publishes it as the latest. A frame pins the
  latest buffer of every live source it uses when it is submitted and unpins it when it
  completes, so a picture being composited is never overwritten (no tearing).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

import numpy as np

from framering.errors import (
    EngineClosedError,
    ForeignObjectError,
    ForeignProcessError,
    SourceBusyError,
)
from framering.kernels import FrameFormat
from framering.lifetime import not_picklable
from framering.ring import PAGE
from framering.shm import CreatedSegment
from framering.validation import check_timeout

log = logging.getLogger("framering")

# Buffers of a live source: one being written, the latest published one, and one still pinned
# by a frame in flight. More buffers let more frames in flight read different pictures
# without ever blocking the producer, at the cost of one picture of shared memory each.
DEFAULT_LIVE_BUFFERS: Final = 3


def buffer_stride(width: int, height: int, fmt: FrameFormat = FrameFormat.RGBA) -> int:
    """Bytes from one buffer of a source to the next (page-aligned)."""
    return -(-fmt.nbytes(width, height) // PAGE) * PAGE


def buffer_views(
    buf: memoryview,
    width: int,
    height: int,
    buffers: int,
    fmt: FrameFormat = FrameFormat.RGBA,
) -> list[np.ndarray]:
    """The uint8 views of every buffer of a source segment, shaped as ``fmt`` lays a picture
    out ((height, width, 4) for RGBA)."""
    stride = buffer_stride(width, height, fmt)
    shape = fmt.shape(width, height)
    return [np.ndarray(shape, np.uint8, buffer=buf, offset=i * stride) for i in range(buffers)]


class _SharedPicture:
    """What uploaded and live sources share: identity, size, buffers, pins."""

    def __init__(
        self,
        engine_token: str,
        source_id: int,
        segment: CreatedSegment,
        width: int,
        height: int,
        buffers: int,
        opaque: bool,
        fmt: FrameFormat = FrameFormat.RGBA,
    ) -> None:
        self.id: Final = source_id
        self.width: Final = width
        self.height: Final = height
        self.buffers: Final = buffers
        self.format: Final = fmt
        self.opaque: Final = opaque
        self._engine_token = engine_token
        self._segment = segment
        self._views = buffer_views(segment.buf, width, height, buffers, fmt)
        self._pins = [0] * buffers
        self._versions = [0] * buffers  # which published picture each buffer holds
        self._latest = 0
        self._freed = False
        # One lock, never re-entered. Pins and unpins (four a frame each way, per source)
        # take it directly, as a C call; waiting for a change goes through the condition on it.
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._waiters = 0  # threads waiting on _changed (free, write): unpins notify only then
        self._owner_pid = os.getpid()

    def __reduce__(self) -> str:
        raise not_picklable(self)

    @property
    def segment_name(self) -> str:
        return self._segment.name

    @property
    def freed(self) -> bool:
        return self._freed

    def check_owner(self, engine_token: str) -> None:
        if self._engine_token != engine_token:
            raise ForeignObjectError(f"{self!r} belongs to another engine")
        if self._freed:
            raise ForeignObjectError(f"{self!r} was freed")

    def pin_latest(self) -> tuple[int, int]:
        """Pin the latest published buffer for a frame about to read it.

        Returns the buffer's index and the version of the picture it holds.
        """
        with self._lock:
            if self._freed:  # freed between the frame's validation and now
                raise ForeignObjectError(f"{self!r} was freed")
            buffer = self._latest
            self._pins[buffer] += 1
            return buffer, self._versions[buffer]

    def unpin(self, buffer: int) -> None:
        with self._lock:
            self._pins[buffer] -= 1
            if self._pins[buffer] == 0 and self._waiters:  # what writers and free() wait for
                self._changed.notify_all()

    def free(self, timeout: float | None) -> None:
        """Wait until no frame reads the source, then unlink its segment."""
        with self._changed:
            if self._freed:
                raise ForeignObjectError(f"{self!r} was freed already")
            self._waiters += 1
            try:
                unpinned = self._changed.wait_for(
                    lambda: sum(self._pins) == 0, check_timeout(timeout)
                )
            finally:
                self._waiters -= 1
            if self._freed:  # by another free() that waited beside this one
                raise ForeignObjectError(f"{self!r} was freed already")
            if not unpinned:
                raise SourceBusyError(
                    f"{self!r} is still read by {sum(self._pins)} frame(s) in flight"
                )
            self._freed = True
            self._views = []
        self._segment.close_and_unlink()

    def discard(self) -> None:
        """Unlink at engine close, whatever still pins it (the workers are gone)."""
        with self._changed:
            self._freed = True
            self._views = []
            self._changed.notify_all()
        self._segment.close_and_unlink()  # safe to repeat (a free interrupted half-way)


class Source(_SharedPicture):
    """A picture uploaded once into shared memory (``Engine.upload``), or the target of an
    ``Engine.transform`` task (written by a worker)."""

    def __init__(
        self,
        engine_token: str,
        source_id: int,
        segment: CreatedSegment,
        width: int,
        height: int,
        opaque: bool,
        pixels: np.ndarray | None = None,
    ) -> None:
        super().__init__(engine_token, source_id, segment, width, height, 1, opaque)
        if pixels is not None:
            self._views[0][...] = pixels

    def __repr__(self) -> str:
        return f"Source(id={self.id}, {self.width}x{self.height})"

    @property
    def pixels(self) -> np.ndarray:
        """A read-only view of the uploaded pixels."""
        if self._freed:
            raise ForeignObjectError(f"{self!r} was freed")
        view = self._views[0].view()
        view.flags.writeable = False
        return view


class LiveSource(_SharedPicture):
    """A picture a producer rewrites in place, frame after frame (``Engine.live_source``).

    Starts black: transparent for RGBA and BGRA, opaque for the formats without alpha.
    ``write()`` lends a buffer no frame is reading, shaped as ``format`` lays a picture out;
    leaving the ``with`` block publishes it as the latest picture (an exception discards it).

    ``Engine.live_source`` arguments:
        width, height: size of every picture.
        buffers: pictures in its small ring (at least 2: one written, one read).
        opaque: promise that every picture written has alpha 255 (copied, not blended).
            Formats without alpha are opaque whatever this says.
        format: what ``write()`` lends and the producer writes: ``rgba``, ``bgra``, ``rgb``,
            ``bgr``, ``i420`` or ``nv12`` (as OpenCV lays them out). Workers convert each new
            picture to RGBA once, then blend it.
        yuv_matrix, yuv_range: how to read I420 and NV12 pictures (``bt709``/``bt601``,
            ``limited``/``full``).
        stall_timeout: seconds without a new picture after which the source counts as
            stalled (None: never). Until then, and without a fallback, frames show the last
            picture.
        fallback: what a stalled source shows instead, until pictures arrive again: an
            uploaded :class:`Source` (a still image, drawn where the live one was) or
            ``"transparent"``. ``metrics().stalled_frames`` counts the frames that did.
    """

    def __init__(
        self,
        engine_token: str,
        source_id: int,
        segment: CreatedSegment,
        width: int,
        height: int,
        buffers: int,
        opaque: bool,
        fmt: FrameFormat = FrameFormat.RGBA,
        *,
        yuv_range: str = "limited",
        stall_timeout: float | None = None,
        fallback: Source | str | None = None,
    ) -> None:
        super().__init__(engine_token, source_id, segment, width, height, buffers, opaque, fmt)
        if fmt.yuv420:  # zero bytes are a green picture in YUV: start black, as RGB does
            for view in self._views:
                view[:height] = 16 if yuv_range == "limited" else 0
                view[height:] = 128
        self._writing: int | None = None
        self._writer = 0  # the thread that has the open write(), while _writing is set
        self.version = 0  # how many pictures were published
        self.published_at = time.monotonic()  # creation counts: a source never written stalls
        self.stall_timeout: Final = stall_timeout
        self.fallback: Final = fallback
        self._stall_reported = False  # this stall was logged (once a stall, not per frame)

    def stalled(self, now: float | None = None) -> bool:
        """No picture published for longer than ``stall_timeout`` seconds (the first frame to
        see a stall logs it, at WARNING on logger ``framering``)."""
        if self.stall_timeout is None:
            return False
        now = time.monotonic() if now is None else now
        if now - self.published_at <= self.stall_timeout:
            return False
        if not self._stall_reported:
            self._stall_reported = True
            shown = (
                "its last picture"
                if self.fallback is None
                else "nothing in its place (the layer is left out)"
                if self.fallback == "transparent"
                else f"its fallback, source {self.fallback.id}"  # type: ignore[union-attr]
            )
            log.warning(
                "live source %d stalled: no picture for %.2f s (stall_timeout %g s); frames "
                "show %s until it publishes again",
                self.id,
                now - self.published_at,
                self.stall_timeout,
                shown,
            )
        return True

    def __repr__(self) -> str:
        return f"LiveSource(id={self.id}, {self.width}x{self.height}, buffers={self.buffers})"

    def _free_buffer(self) -> int | None:
        for offset in range(1, self.buffers + 1):  # oldest first, after the latest
            buffer = (self._latest + offset) % self.buffers
            if buffer != self._latest and self._pins[buffer] == 0:
                return buffer
        return None

    @contextmanager
    def write(self, timeout: float | None = 1.0) -> Iterator[np.ndarray]:
        """Lend a writable uint8 buffer; publish it on leaving the block.

        Its shape is ``format``'s: (height, width, 4) for RGBA and BGRA, (height, width, 3)
        for RGB and BGR, (height * 3 / 2, width) for I420 and NV12 (as OpenCV lays them out).

        Blocks while another thread writes a picture (one ``write()`` at a time) or every
        other buffer is pinned by a frame in flight; raises :class:`SourceBusyError` after
        ``timeout`` seconds.
        """
        timeout = check_timeout(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        if os.getpid() != self._owner_pid:
            raise ForeignProcessError(f"{self!r} belongs to process {self._owner_pid}")
        with self._changed:
            if self._writing is not None and self._writer == threading.get_ident():
                raise SourceBusyError(
                    f"a write() of {self!r} is open in this thread already: close it first "
                    f"(waiting for it would wait for ever)"
                )
            while True:
                if self._freed:
                    raise EngineClosedError(f"{self!r} was freed or its engine closed")
                buffer = None if self._writing is not None else self._free_buffer()
                if buffer is not None:
                    break
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    if self._writing is not None:
                        raise SourceBusyError(
                            f"{self!r} stayed being written by another thread for {timeout} s"
                        )
                    raise SourceBusyError(
                        f"every buffer of {self!r} stayed pinned by frames in flight for "
                        f"{timeout} s; submit fewer frames at once or use more buffers"
                    )
                self._waiters += 1
                try:
                    self._changed.wait(remaining)
                finally:
                    self._waiters -= 1
            self._writing = buffer
            self._writer = threading.get_ident()
            view = self._views[buffer]
        try:
            yield view
        except BaseException:
            with self._changed:
                self._writing = None
                self._changed.notify_all()  # a writer waiting for its turn
            raise
        with self._changed:
            self._writing = None
            self._latest = buffer
            self.version += 1
            self._versions[buffer] = self.version & 0xFFFFFFFF
            now = time.monotonic()
            if self._stall_reported:
                self._stall_reported = False
                log.info(
                    "live source %d publishes again after %.2f s", self.id, now - self.published_at
                )
            self.published_at = now
            self._changed.notify_all()
