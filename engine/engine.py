"""Engine: the public face of framering. Owns the ring, the sources, the pool and the slots."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import itertools
import threading
import time
import weakref
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from types import TracebackType
from typing import Any, Final, Literal

import numpy as np
import psutil

from framering.asyncio_bridge import AsyncBridge
from framering.errors import (
    AcquireTimeoutError,
    EngineBrokenError,
    EngineClosedError,
    ForeignObjectError,
    FrameFailedError,
    FrameringError,
    InvalidTypeError,
    InvalidValueError,
    SlotStateError,
    WaitTimeoutError,
)
from framering.kernels import FrameFormat, is_opaque, warmup
from framering.kernels.transform import Transform
from framering.kernels.validate import MAX_SIDE, check_rgba
from framering.layer import Layer, PackedLayers, pack_layers
from framering.metrics import Metrics, Recorder, WorkerMetrics
from framering.pool import SourceInfo, Task, WorkerPool
from framering.protocol import LAYER_FRAME, LAYER_OPAQUE, TRANSFORM_RECORD, pack_transform
from framering.ring import FORMAT_CODES, MATRIX_CODES, RANGE_CODES, FrameRing, SlotState
from framering.shm import CreatedSegment, new_engine_token, reclaim_orphans, segment_name
from framering.slots import FrameSlot, frame_failed
from framering.sources import DEFAULT_LIVE_BUFFERS, LiveSource, Source, buffer_stride
from framering.stream import (
    Policy,
    Scene,
    StreamClock,
    StreamFrame,
    astream_frames,
    stream_frames,
)
from framering.validation import (
    check_timeout,
    checked,
    pixel_format,
    positive_int,
    positive_seconds,
)

# A frame a worker has not finished after this many seconds is taken as hung: the worker is
# killed and the frame retried. Generous: an 8K frame of many layers takes ~100 ms, so only a
# real hang (or a machine swapping to death) reaches it.
DEFAULT_DEADLINE_S: Final = 5.0
# Times a frame is dispatched before it is declared failed (first try plus one retry).
DEFAULT_MAX_ATTEMPTS: Final = 2
# Spawning a worker imports numpy, numba and OpenCV and loads the cached kernels: about a
# second on a quiet machine, many on a loaded CI runner.
DEFAULT_START_TIMEOUT_S: Final = 120.0
MAX_SLOTS: Final = 1024

_open_engines: weakref.WeakSet[Engine] = weakref.WeakSet()


class _TransformJob:
    """An ``Engine.transform`` task in flight: what it pinned, and how it ended."""

    def __init__(self, target: Source) -> None:
        self.target = target
        self.done = threading.Event()
        self.failure: BaseException | None = None
        self.pins: list[tuple[Source | LiveSource, int]] = []
        self.reads: tuple[FrameSlot, ...] = ()
        self.abandoned = False


@atexit.register
def _close_open_engines() -> None:
    """Close every engine still open at interpreter exit, so no segment outlives us."""
    for engine in list(_open_engines):
        engine.close()


def physical_cores() -> int:
    """Physical cores of this machine (psutil), at least 1."""
    return max(1, psutil.cpu_count(logical=False) or psutil.cpu_count() or 1)


class Engine:
    """Persistent worker processes compositing layer stacks into a shared-memory frame ring.

    Args:
        width, height: size of every output frame, in pixels.
        slots: frames the ring holds: how many can be in flight or held by the caller at once.
        workers: worker processes; ``None`` means one per physical core.
        max_attempts: times a frame is tried when workers die or hang under it.
        deadline: default seconds a worker may spend on one frame before it is killed.
        start_timeout: seconds to wait for the workers to start.
        initializer: called as ``initializer(*initargs)`` in every worker process when it
            starts (replacements included), before it takes frames; both must pickle.
        output: the format ``wait()`` delivers frames in: ``rgba`` (default), ``bgra``,
            ``rgb``, ``bgr``, ``i420`` or ``nv12`` (planes as ``cv2`` lays them out). The
            worker converts each band of rows as it finishes compositing it, so an encoder
            gets its format without a pass in the caller. I420 and NV12 need an even width
            and height.
        yuv_matrix, yuv_range: ``bt709``/``bt601`` and ``limited``/``full`` for I420/NV12.

    Use it as a context manager, or call :meth:`close`; it also closes at interpreter exit.
    """

    def __init__(
        self,
        width: int,
        height: int,
        slots: int = 8,
        workers: int | None = None,
        *,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        deadline: float = DEFAULT_DEADLINE_S,
        start_timeout: float = DEFAULT_START_TIMEOUT_S,
        initializer: Callable[..., Any] | None = None,
        initargs: tuple[Any, ...] = (),
        output: FrameFormat | str = FrameFormat.RGBA,
        yuv_matrix: str = "bt709",
        yuv_range: str = "limited",
    ) -> None:
        self.width: Final = positive_int(width, "width", MAX_SIDE)
        self.height: Final = positive_int(height, "height", MAX_SIDE)
        self.slots: Final = positive_int(slots, "slots", MAX_SLOTS)
        count = physical_cores() if workers is None else positive_int(workers, "workers", 256)
        self._max_attempts = positive_int(max_attempts, "max_attempts", 100)
        self._deadline = positive_seconds(deadline, "deadline")
        self.token: Final = new_engine_token()
        self._lock = threading.Condition()
        self._closed = False
        self._sequence = itertools.count(1)
        self._task_ids = itertools.count(1)
        self._source_ids = itertools.count(1)
        self._free: deque[int] = deque(range(self.slots))
        self._held: dict[int, FrameSlot] = {}
        self._tasks: dict[int, FrameSlot] = {}
        self._sources: dict[int, Source | LiveSource] = {}
        self._jobs: dict[int, _TransformJob] = {}
        self._recorder = Recorder()
        self._processes: dict[int, psutil.Process] = {}
        self._async: AsyncBridge | None = None
        if initializer is not None and not callable(initializer):
            raise InvalidTypeError("initializer must be callable")
        self.output: Final = pixel_format(
            output, "output", yuv_matrix, yuv_range, self.width, self.height
        )
        warmup()  # compile and write Numba's cache now, so workers only load it
        reclaim_orphans()  # segments of engines whose process was killed
        self._ring = FrameRing.create(
            segment_name(self.token, "ring"),
            self.width,
            self.height,
            self.slots,
            self.output,
            yuv_matrix,
            yuv_range,
        )
        try:
            self._pool = WorkerPool(
                self._ring.segment.name,
                count,
                self,
                max_attempts=self._max_attempts,
                start_timeout=positive_seconds(start_timeout, "start_timeout"),
                initializer=initializer,
                initargs=tuple(initargs),
            )
        except BaseException:
            self._ring.release_views()
            self._ring.segment.close_and_unlink()
            raise
        _open_engines.add(self)

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{self.workers} workers"
        return f"Engine({self.width}x{self.height}, slots={self.slots}, {state})"

    # ------------------------------------------------------------------ lifetime
    def __enter__(self) -> Engine:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def workers(self) -> int:
        """Worker processes ready to take frames."""
        return len(self._pool.pids())

    def worker_pids(self) -> list[int]:
        """Pids of the ready workers (for monitoring, or for tests that kill one)."""
        return self._pool.pids()

    def _check_open(self) -> None:
        if self._closed:
            raise EngineClosedError(f"{self!r} was closed")
        broken = self._pool.broken
        if broken is not None:
            raise EngineBrokenError(broken)

    def close(self) -> None:
        """Stop the workers, fail frames still in flight, unlink every segment. Idempotent.

        Frames already in a worker's hands are finished if they take less than the stop grace
        period; waiters of the others get :class:`EngineClosedError`.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
        unfinished = self._pool.stop()
        closed = EngineClosedError(f"{self!r} was closed before the frame finished")
        with self._lock:
            for task in unfinished:
                slot = self._tasks.pop(task.id, None)
                if slot is not None:
                    slot._finish(closed, time.perf_counter_ns())
            for slot in list(self._tasks.values()):
                slot._finish(closed, time.perf_counter_ns())
            self._tasks.clear()
            jobs = list(self._jobs.values())
            self._jobs.clear()
        for job in jobs:  # Engine.transform calls waiting in other threads
            job.failure = closed
            job.done.set()
        with self._lock:
            sources = list(self._sources.values())
            self._sources.clear()
            self._lock.notify_all()
        for source in sources:
            source.discard()
        if self._async is not None:
            self._async.notify()  # async waiters re-check and see the closed engine
            bridge, self._async = self._async, None
            if not bridge.loop.is_closed():
                bridge.loop.call_soon_threadsafe(bridge.close)
        self._ring.release_views()
        self._ring.segment.close_and_unlink()
        _open_engines.discard(self)

    # ------------------------------------------------------------------ sources
    def upload(self, pixels: np.ndarray, *, opaque: bool | None = None) -> Source:
        """Copy an RGBA8 picture into shared memory once; layers then show it for free.

        Args:
            pixels: (h, w, 4) uint8 C-contiguous RGBA8 (straight alpha unless a layer says
                ``premultiplied=True``).
            opaque: every alpha is 255 (measured when None). Opaque sources are copied
                instead of blended.
        """
        self._check_open()
        checked(check_rgba, pixels, "pixels", writable=False)
        height, width = pixels.shape[:2]
        source = self._new_source(Source, width, height, 1, "an uploaded source")
        source._views[0][...] = pixels
        source.opaque = is_opaque(pixels) if opaque is None else bool(opaque)
        self._register(source)
        return source

    def live_source(
        self,
        width: int,
        height: int,
        *,
        buffers: int = DEFAULT_LIVE_BUFFERS,
        opaque: bool = False,
        stall_timeout: float | None = None,
        fallback: Source | Literal["transparent"] | None = None,
        format: FrameFormat | str = FrameFormat.RGBA,
        yuv_matrix: str = "bt709",
        yuv_range: str = "limited",
    ) -> LiveSource:
        """A picture a producer rewrites in place (a camera, a decoder): see :class:`LiveSource`.

        Args:
            width, height: size of every picture.
            buffers: pictures in its small ring (at least 2: one written, one read).
            opaque: promise that every picture written has alpha 255 (copied, not blended).
                Formats without alpha are opaque whatever this says.
            format: what ``write()`` lends and the producer writes: ``rgba``, ``bgra``,
                ``rgb``, ``bgr``, ``i420`` or ``nv12`` (as OpenCV lays them out). Workers
                convert each new picture to RGBA once, then blend it.
            yuv_matrix, yuv_range: how to read I420 and NV12 pictures (``bt709``/``bt601``,
                ``limited``/``full``).
            stall_timeout: seconds without a new picture after which the source counts as
                stalled (None: never). Until then, and without a fallback, frames show the
                last picture.
            fallback: what a stalled source shows instead, until pictures arrive again: an
                uploaded :class:`Source` (a still image, drawn where the live one was) or
                ``"transparent"``. ``metrics().stalled_frames`` counts the frames that did.
        """
        self._check_open()
        width = positive_int(width, "width", MAX_SIDE)
        height = positive_int(height, "height", MAX_SIDE)
        buffers = positive_int(buffers, "buffers", 64)
        if buffers < 2:
            raise InvalidValueError("a live source needs at least 2 buffers")
        if stall_timeout is not None:
            stall_timeout = positive_seconds(stall_timeout, "stall_timeout")
        if fallback is not None and fallback != "transparent":
            if not isinstance(fallback, Source):
                raise InvalidTypeError("fallback must be an uploaded Source or 'transparent'")
            fallback.check_owner(self.token)
        fmt = pixel_format(format, "format", yuv_matrix, yuv_range, width, height)
        source = self._new_source(LiveSource, width, height, buffers, "a live source", fmt)
        if fmt.yuv420:  # zero bytes are a green picture in YUV: start black, as RGB does
            for view in source._views:
                view[:height] = 16 if yuv_range == "limited" else 0
                view[height:] = 128
        source.opaque = bool(opaque) or fmt not in (FrameFormat.RGBA, FrameFormat.BGRA)
        source.stall_timeout = stall_timeout
        source.fallback = fallback
        self._register(source, MATRIX_CODES[yuv_matrix], RANGE_CODES[yuv_range])
        return source

    def _new_source(
        self,
        kind: type[Source] | type[LiveSource],
        width: int,
        height: int,
        buffers: int,
        what: str,
        fmt: FrameFormat = FrameFormat.RGBA,
    ) -> Source | LiveSource:
        source_id = next(self._source_ids)
        size = buffer_stride(width, height, fmt) * buffers
        segment = CreatedSegment.create(segment_name(self.token, f"src{source_id}"), size, what)
        return kind(self.token, source_id, segment, width, height, buffers, False, fmt)

    def _register(self, source: Source | LiveSource, matrix: int = 1, value_range: int = 0) -> None:
        with self._lock:
            if self._closed:
                source.discard()
                raise EngineClosedError(f"{self!r} was closed")
            self._sources[source.id] = source
        info = SourceInfo(
            source.id,
            source.segment_name,
            source.width,
            source.height,
            source.buffers,
            FORMAT_CODES[source.format],
            matrix,
            value_range,
        )
        self._pool.attach_source(info)

    def free(self, source: Source | LiveSource, timeout: float | None = 5.0) -> None:
        """Release a source's shared memory once no frame in flight reads it.

        Raises:
            SourceBusyError: frames still read it after ``timeout`` seconds.
            ForeignObjectError: it belongs to another engine or was freed already.
        """
        self._check_open()
        if not isinstance(source, Source | LiveSource):
            raise InvalidTypeError(
                f"free() takes a Source or LiveSource, not {type(source).__name__}"
            )
        source.check_owner(self.token)
        source.free(timeout)
        with self._lock:
            self._sources.pop(source.id, None)
        self._pool.detach_source(source.id)

    # ------------------------------------------------------------------ slots
    def try_acquire(self) -> FrameSlot | None:
        """A free slot, or None if every slot is busy (never blocks)."""
        with self._lock:
            self._check_open()
            return self._take_slot()

    def acquire(self, timeout: float | None = None) -> FrameSlot:
        """A free slot; blocks while every slot is in flight or held.

        Raises:
            AcquireTimeoutError: no slot became free within ``timeout`` seconds (a
                ``TimeoutError``): frames are slower than they are asked for, or slots are
                not released.
        """
        timeout = check_timeout(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while True:
                self._check_open()
                slot = self._take_slot()
                if slot is not None:
                    return slot
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise AcquireTimeoutError(
                        f"all {self.slots} slots stayed busy for {timeout} s: frames are not "
                        f"released, or are asked for faster than the workers composite them"
                    )
                self._lock.wait(remaining)

    def _take_slot(self) -> FrameSlot | None:
        if not self._free:
            return None
        index = self._free.popleft()
        slot = FrameSlot(self, index, next(self._sequence))
        self._held[index] = slot
        self._ring.set_state(index, SlotState.ACQUIRED)
        self._ring.sequences[index] = slot.sequence
        return slot

    def _release(self, slot: FrameSlot) -> None:
        with self._lock:
            self._check_open()
            if self._held.get(slot.index) is not slot:
                raise ForeignObjectError(f"{slot!r} is not held from {self!r}")
            slot._released = True
            if (slot._submitted and not slot._done.is_set()) or slot._readers:
                slot._release_when_done = True  # the frame's end (or its last reader's) frees it
                return
            self._free_slot(slot)

    def _free_slot(self, slot: FrameSlot) -> None:
        """Lock held."""
        del self._held[slot.index]
        self._ring.set_state(slot.index, SlotState.FREE)
        self._free.append(slot.index)
        self._lock.notify_all()
        if self._async is not None:
            self._async.notify()

    def _has_free_slot(self) -> bool:
        return bool(self._free) or self._closed

    # ------------------------------------------------------------------ asyncio and streams
    def _bridge(self) -> AsyncBridge:
        """The event-loop bridge of the running loop (made on first use)."""
        loop = asyncio.get_running_loop()
        if self._async is None or self._async.loop is not loop:
            if self._async is not None:
                self._async.close()
            self._async = AsyncBridge(loop)
        return self._async

    async def acquire_async(self, timeout: float | None = None) -> FrameSlot:
        """:meth:`acquire` for asyncio: awaits a free slot without blocking the loop."""
        timeout = check_timeout(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        bridge = self._bridge()
        while True:
            slot = self.try_acquire()
            if slot is not None:
                return slot
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise AcquireTimeoutError(f"all {self.slots} slots stayed busy for {timeout} s")
            try:
                await asyncio.wait_for(bridge.wait_for(self._has_free_slot), remaining)
            except TimeoutError:
                continue  # the loop head raises with the message

    def stream(
        self,
        scene: Scene,
        fps: float = 60.0,
        inflight: int | None = None,
        *,
        policy: Policy = "drop",
        frames: int | None = None,
    ) -> Iterator[StreamFrame]:
        """Frames of ``scene(t, index)`` in order on a fixed clock (see ``framering.stream``).

        Args:
            scene: returns the layer stack of frame ``index`` at presentation time ``t``.
            fps: the clock's rate.
            inflight: frames submitted ahead (default: enough to keep every worker busy).
            policy: ``drop``, ``repeat`` or ``block``: what a late frame's tick gets.
            frames: stop after this many ticks (default: until the caller stops iterating).
        """
        self._check_open()
        return stream_frames(StreamClock(self, scene, fps, inflight, policy, frames))

    def astream(
        self,
        scene: Scene,
        fps: float = 60.0,
        inflight: int | None = None,
        *,
        policy: Policy = "drop",
        frames: int | None = None,
    ) -> AsyncIterator[StreamFrame]:
        """:meth:`stream` for ``async for``."""
        self._check_open()
        return astream_frames(StreamClock(self, scene, fps, inflight, policy, frames))

    def render(self, layers: Sequence[Layer], timeout: float | None = 10.0) -> np.ndarray:
        """Composite one frame and return a copy of it (for one-off use and tests)."""
        timeout = check_timeout(timeout)
        with self.acquire(timeout) as slot:
            slot.submit(layers)
            return slot.wait(timeout).copy()

    # ------------------------------------------------------------------ frames
    def _submit(
        self,
        slot: FrameSlot,
        layers: Sequence[Layer],
        deadline: float | None,
        clear: bool,
        keep_rgba: bool = False,
    ) -> None:
        slot._check_usable("submit to")
        if slot._submitted:
            raise SlotStateError(f"{slot!r} was already submitted; acquire another slot")
        frame_deadline = (
            self._deadline if deadline is None else positive_seconds(deadline, "deadline")
        )
        if not isinstance(clear, bool) or not isinstance(keep_rgba, bool):
            raise InvalidTypeError("clear and keep_rgba must be bools")
        write_frame = keep_rgba or not clear or self.output is FrameFormat.RGBA
        packed = pack_layers(layers, self.token, (self.width, self.height))
        records = packed.records
        source_ids = {
            s
            for s, f in zip(records["source"].tolist(), records["flags"].tolist(), strict=True)
            if not f & LAYER_FRAME
        }
        source_ids, transforms = self._apply_fallbacks(packed, source_ids)
        with self._lock:
            self._check_open()
            for frame in packed.frames:  # (a slot being submitted is never a finished frame)
                if frame._released or self._held.get(frame.index) is not frame:
                    raise SlotStateError(f"{frame!r} was released; it cannot be a layer")
            pins = self._pin_sources(records, source_ids)
            for frame in packed.frames:
                frame._readers += 1
            task = Task(
                id=next(self._task_ids),
                slot=slot.index,
                records=records,
                clear=clear,
                rows=(0, self.height),
                deadline_s=frame_deadline,
                transforms=transforms,
                write_frame=write_frame,
            )
            slot._rgba_kept = write_frame
            slot._pins = pins
            slot._reads = packed.frames
            slot._submitted = True
            slot.submitted_ns = task.submitted_ns
            self._tasks[task.id] = slot
            self._ring.set_state(slot.index, SlotState.QUEUED)
        try:
            self._pool.submit(task)
        except BaseException as error:
            self.task_failed(task, str(error))
            raise

    def _pin_sources(
        self, records: np.ndarray, source_ids: set[int]
    ) -> list[tuple[Source | LiveSource, int]]:
        """Lock held. Pin the latest buffer of every source a task reads, and write each
        buffer's index and version into the task's records."""
        pins: list[tuple[Source | LiveSource, int]] = []
        if not source_ids:
            return pins
        pinned: dict[int, tuple[int, int]] = {}
        for source_id in source_ids:
            source = self._sources.get(source_id)
            if source is None:  # freed between validation and now
                for source, buffer in pins:
                    source.unpin(buffer)
                raise ForeignObjectError(f"source {source_id} was freed")
            buffer, version = source.pin_latest()
            pinned[source_id] = (buffer, version)
            pins.append((source, buffer))
        live = (records["flags"] & LAYER_FRAME) == 0  # frame rows name a slot, not a source
        chosen = [pinned[s] for s in records["source"][live].tolist()]
        records["buffer"][live] = [buffer for buffer, _ in chosen]
        records["version"][live] = [version for _, version in chosen]
        return pins

    def _apply_fallbacks(
        self, packed: PackedLayers, source_ids: set[int]
    ) -> tuple[set[int], np.ndarray]:
        """Swap stalled live sources for their fallbacks in a frame's records.

        A transformed layer keeps its transform when it fits the fallback (a crop inside
        it); otherwise the fallback is scaled to the size the live layer had, so it is drawn
        where the live picture was either way. Returns the frame's source ids and transform
        records after the swap (unchanged when nothing stalled).
        """
        records, transforms = packed.records, packed.transforms
        stalled = False
        now = time.monotonic()
        for source_id in source_ids:
            source = self._sources.get(source_id)
            if not isinstance(source, LiveSource) or not source.stalled(now):
                continue
            if source.fallback is None:
                continue  # keeps showing its last picture
            stalled = True
            rows = (records["source"] == source_id) & ((records["flags"] & LAYER_FRAME) == 0)
            if source.fallback == "transparent":
                records["opacity"][rows] = 0.0
                continue
            fallback = source.fallback
            fallback.check_owner(self.token)
            for row in np.flatnonzero(rows).tolist():
                record = records[row]
                opaque = fallback.opaque
                number = int(record["transform"])
                if number:
                    transform = packed.transform_list[number - 1]
                    try:
                        transform.output_size(fallback.width, fallback.height)
                    except ValueError:
                        size = transform.output_size(source.width, source.height)
                        transform = Transform(size=size, interpolation=transform.interpolation)
                        extra = np.zeros(1, TRANSFORM_RECORD)
                        pack_transform(transform, extra)
                        transforms = np.concatenate([transforms, extra])
                        record["transform"] = len(transforms)
                    opaque = opaque and transform.keeps_opacity()
                record["source"] = fallback.id
                kept = int(record["flags"]) & (0xFF ^ LAYER_OPAQUE)
                record["flags"] = kept | (LAYER_OPAQUE if opaque else 0)
        if not stalled:
            return source_ids, transforms
        self._recorder.stalled()
        sources = records["source"][(records["flags"] & LAYER_FRAME) == 0]
        return set(sources.tolist()), transforms

    # --- TaskListener: called by the pool's manager thread
    def task_dispatched(self, task: Task) -> None:
        if task.target:
            return  # a transform task: no slot of the ring
        self._ring.set_state(task.slot, SlotState.RENDERING)
        self._ring.attempts[task.slot] = task.attempts

    def task_requeued(self, task: Task) -> None:
        if not task.target:
            self._ring.set_state(task.slot, SlotState.QUEUED)

    def task_done(self, task: Task, kernel_ns: int) -> None:
        now = time.perf_counter_ns()
        if task.target:
            self._end_job(task, None)
            return
        self._end(task, SlotState.DONE, None, now, kernel_ns)
        self._recorder.completed((now - task.submitted_ns) / 1e9, kernel_ns / 1e9)

    def task_failed(self, task: Task, cause: str) -> None:
        failure: BaseException | None = None
        if self._closed:
            failure = EngineClosedError(f"{self!r} was closed before the task finished")
        elif self._pool.broken is not None:
            failure = EngineBrokenError(self._pool.broken)
        if task.target:
            self._end_job(
                task,
                failure
                or FrameFailedError(
                    f"transform into source {task.target} failed after {task.attempts} "
                    f"attempt(s): {cause}",
                    cause=cause,
                    attempts=task.attempts,
                ),
            )
            return
        with self._lock:
            slot = self._tasks.get(task.id)
        if slot is None:
            return
        self._end(
            task,
            SlotState.FAILED,
            failure or frame_failed(slot, cause, task.attempts),
            time.perf_counter_ns(),
        )
        self._recorder.failed()

    def _end(
        self,
        task: Task,
        state: SlotState,
        failure: BaseException | None,
        now: int,
        kernel_ns: int = 0,
    ) -> None:
        with self._lock:
            slot = self._tasks.pop(task.id, None)
            if slot is None:
                return
            slot.kernel_ns = kernel_ns
            self._ring.set_state(slot.index, state)
            pins, slot._pins = slot._pins, []
            slot._finish(failure, now)
            if self._async is not None:
                self._async.notify()
            self._free_if_unused(slot)
            self._unread(slot._reads)
            slot._reads = ()
        for source, buffer in pins:
            source.unpin(buffer)

    def _unread(self, frames: Sequence[FrameSlot]) -> None:
        """Lock held. Frames read as layers by a task that ended: one reader fewer each."""
        for frame in frames:
            frame._readers -= 1
            self._free_if_unused(frame)

    def _free_if_unused(self, slot: FrameSlot) -> None:
        """Lock held. Free a released slot once its frame ended and no frame reads it."""
        if (
            slot._release_when_done
            and slot._done.is_set()
            and not slot._readers
            and self._held.get(slot.index) is slot
        ):
            self._free_slot(slot)

    # ------------------------------------------------------------------ transform tasks
    def transform(
        self,
        source: Source | LiveSource | FrameSlot,
        transform: Transform | None = None,
        *,
        timeout: float | None = 10.0,
        **parameters: Any,
    ) -> Source:
        """Transform a picture once, in a worker, into a new :class:`Source`.

        ``eng.transform(logo, size=(256, 256), interpolation="area")`` or
        ``eng.transform(logo, Transform(...))``: the parameters are those of
        :class:`framering.kernels.transform.Transform`. The worker's OpenCV calls write the result
        straight into the new source's shared memory. A live source gives its latest
        picture, a finished frame slot its frame. Free the result with :meth:`free`.

        Raises:
            FrameFailedError: the transform failed on every attempt (``cause`` says why).
            WaitTimeoutError: it did not finish within ``timeout`` (the source is freed
                when the task ends).
        """
        self._check_open()
        timeout = check_timeout(timeout)
        if transform is None:
            transform = checked(Transform, **parameters)
        elif parameters:
            raise InvalidTypeError("give a Transform or its parameters, not both")
        elif not isinstance(transform, Transform):
            raise InvalidTypeError(f"transform must be a Transform, not {type(transform).__name__}")
        packed = pack_layers([Layer(source, transform=transform)], self.token, self.frame_size)
        width, height = transform.output_size(
            *(self.frame_size if isinstance(source, FrameSlot) else (source.width, source.height))
        )
        target = self._new_source(Source, width, height, 1, "a transformed source")
        target.opaque = bool(packed.records["flags"][0] & LAYER_OPAQUE)
        self._register(target)
        job = _TransformJob(target)
        records = packed.records
        try:
            with self._lock:
                self._check_open()
                for frame in packed.frames:
                    if frame._released or self._held.get(frame.index) is not frame:
                        raise SlotStateError(f"{frame!r} was released; it cannot be transformed")
                job.pins = self._pin_sources(records, set() if packed.frames else {source.id})
                for frame in packed.frames:
                    frame._readers += 1
                job.reads = packed.frames
                task = Task(
                    id=next(self._task_ids),
                    slot=-1,
                    records=records,
                    clear=True,
                    rows=(0, 0),
                    deadline_s=self._deadline,
                    transforms=packed.transforms,
                    target=target.id,
                )
                self._jobs[task.id] = job
        except BaseException:
            with contextlib.suppress(FrameringError):
                self.free(target, timeout=0)
            raise
        try:
            self._pool.submit(task)
        except BaseException as error:
            job.abandoned = True  # nobody will own the target: the job's end frees it
            self._end_job(task, EngineBrokenError(str(error)))
            raise
        if not job.done.wait(timeout):
            job.abandoned = True  # the job's end frees the target; if it just ended, we do
            if job.done.is_set():
                with contextlib.suppress(FrameringError):
                    self.free(target, timeout=0)
            raise WaitTimeoutError(f"transform into {target!r} not finished within {timeout} s")
        if job.failure is not None:
            with contextlib.suppress(FrameringError):
                self.free(target, timeout=0)
            raise job.failure
        return target

    @property
    def frame_size(self) -> tuple[int, int]:
        """(width, height) of every frame."""
        return (self.width, self.height)

    def _end_job(self, task: Task, failure: BaseException | None) -> None:
        with self._lock:
            job = self._jobs.pop(task.id, None)
            if job is None:
                return
            self._unread(job.reads)
        for source, buffer in job.pins:
            source.unpin(buffer)
        job.failure = failure
        job.done.set()  # before reading `abandoned`: the caller sets it before reading `done`
        if job.abandoned and not self._closed:  # the caller gave up waiting: nobody owns it
            with contextlib.suppress(FrameringError):
                self.free(job.target, timeout=0)

    # ------------------------------------------------------------------ metrics
    def metrics(self) -> Metrics:
        """A frozen snapshot of the engine's statistics (see :class:`Metrics`)."""
        pool = self._pool.snapshot()
        with self._lock:
            in_use = self.slots - len(self._free)
            shm = self._ring.segment.size + sum(
                buffer_stride(s.width, s.height, s.format) * s.buffers
                for s in self._sources.values()
            )
        workers = []
        for index, pid, state, done, inflight in pool.workers:
            workers.append(WorkerMetrics(index, pid, state, done, inflight, self._rss(pid)))
        return Metrics(
            active_workers=sum(1 for w in workers if w.state == "ready"),
            busy_workers=sum(1 for w in workers if w.inflight),
            pending_tasks=pool.queued + pool.inflight,
            queued_tasks=pool.queued,
            frames_completed=self._recorder.frames_completed,
            frames_failed=self._recorder.frames_failed,
            retries=pool.retries,
            worker_restarts=pool.restarts,
            ring_slots=self.slots,
            ring_in_use=in_use,
            shm_bytes=shm,
            ipc_bytes_sent=pool.bytes_sent,
            ipc_bytes_received=pool.bytes_received,
            protocol_errors=pool.protocol_errors,
            workers=tuple(workers),
            **self._recorder.timings(),
        )

    def _rss(self, pid: int | None) -> int | None:
        if pid is None:
            return None
        try:
            process = self._processes.get(pid)
            if process is None:
                process = self._processes[pid] = psutil.Process(pid)
            return int(process.memory_info().rss)
        except (psutil.Error, OSError):
            return None
