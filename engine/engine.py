"""Engine: the public face of framering, wiring its rooms together.

Each concern lives in a room of its own, and ``Engine`` only makes them and forwards to them:

- ``lifetime``: open, closed or broken, asked by every room;
- ``frames``: the ring's slots, who holds them, frames in flight and read as layers;
- ``registry``: sources, their pins and fallbacks;
- ``jobs``: frames and transforms sent to the pool, each ending exactly once;
- ``pool``: the worker processes;
- ``metrics``: what happened, as frozen snapshots.
"""

from __future__ import annotations

import atexit
import weakref
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from types import TracebackType
from typing import Any, Final, Literal

import numpy as np
import psutil

from framering.errors import InvalidTypeError
from framering.frames import FrameTable
from framering.jobs import Jobs
from framering.kernels import FrameFormat, warmup
from framering.kernels.transform import Transform
from framering.kernels.validate import MAX_SIDE
from framering.layer import Layer
from framering.lifetime import Lifetime
from framering.metrics import Metrics, ProcessMemory, Recorder, snapshot
from framering.pool import WorkerPool
from framering.registry import SourceRegistry
from framering.ring import FrameRing
from framering.shm import new_engine_token, reclaim_orphans, segment_name
from framering.slots import FrameSlot
from framering.sources import DEFAULT_LIVE_BUFFERS, LiveSource, Source
from framering.stream import Policy, Scene, StreamClock, StreamFrame, astream_frames, stream_frames
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
MAX_WORKERS: Final = 256

_open_engines: weakref.WeakSet[Engine] = weakref.WeakSet()


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
        if workers is not None:
            workers = positive_int(workers, "workers", MAX_WORKERS)
        max_attempts = positive_int(max_attempts, "max_attempts", 100)
        deadline = positive_seconds(deadline, "deadline")
        start_timeout = positive_seconds(start_timeout, "start_timeout")
        if initializer is not None and not callable(initializer):
            raise InvalidTypeError("initializer must be callable")
        self.output: Final = pixel_format(
            output, "output", yuv_matrix, yuv_range, self.width, self.height
        )
        self.token: Final = new_engine_token()
        self._lifetime = Lifetime(f"Engine({self.width}x{self.height}, slots={self.slots})")
        self._recorder = Recorder()
        self._memory = ProcessMemory()
        warmup()  # compile and write Numba's cache now, so workers only load it
        reclaim_orphans()  # segments of engines whose process was killed
        ring = FrameRing.create(
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
                ring.segment.name,
                physical_cores() if workers is None else workers,
                max_attempts=max_attempts,
                start_timeout=start_timeout,
                initializer=initializer,
                initargs=tuple(initargs),
            )
        except BaseException:
            ring.release_views()
            ring.segment.close_and_unlink()
            raise
        self._lifetime.watch(lambda: self._pool.broken)
        self._registry = SourceRegistry(self.token, self._lifetime, self._pool)
        self._frames = FrameTable(ring, self._lifetime, self.token, self._submit_frame)
        self._jobs = Jobs(
            self._lifetime,
            self._frames,
            self._registry,
            self._pool,
            self._recorder,
            token=self.token,
            output=self.output,
            deadline=deadline,
        )
        _open_engines.add(self)

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"{self.workers} workers"
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
        return self._lifetime.closed

    @property
    def workers(self) -> int:
        """Worker processes ready to take frames."""
        return len(self._pool.pids())

    def worker_pids(self) -> list[int]:
        """Pids of the ready workers (for monitoring, or for tests that kill one)."""
        return self._pool.pids()

    @property
    def frame_size(self) -> tuple[int, int]:
        """(width, height) of every frame."""
        return (self.width, self.height)

    def close(self) -> None:
        """Stop the workers, fail frames still in flight, unlink every segment. Idempotent.

        Frames already in a worker's hands are finished if they take less than the stop grace
        period; waiters of the others get :class:`EngineClosedError`.
        """
        if not self._lifetime.close():
            return
        try:
            for task in self._pool.stop():  # their jobs end with EngineClosedError
                task.listener.task_failed(task, "the engine was closed")
        finally:
            self._registry.discard_all()
            self._frames.close()
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
        return self._registry.upload(pixels, opaque)

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
        return self._registry.live_source(
            width,
            height,
            buffers=buffers,
            opaque=opaque,
            stall_timeout=stall_timeout,
            fallback=fallback,
            format=format,
            yuv_matrix=yuv_matrix,
            yuv_range=yuv_range,
        )

    def free(self, source: Source | LiveSource, timeout: float | None = 5.0) -> None:
        """Release a source's shared memory once no frame in flight reads it.

        Raises:
            SourceBusyError: frames still read it after ``timeout`` seconds.
            ForeignObjectError: it belongs to another engine or was freed already.
        """
        self._registry.free(source, timeout)

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
        :class:`framering.Transform`. The worker's OpenCV calls write the result straight
        into the new source's shared memory. A live source gives its latest picture, a
        finished frame slot its frame. Free the result with :meth:`free`.

        Raises:
            FrameFailedError: the transform failed on every attempt (``cause`` says why).
            WaitTimeoutError: it did not finish within ``timeout`` (the source is freed
                when the task ends).
        """
        self._lifetime.check_open()
        timeout = check_timeout(timeout)
        if transform is None:
            transform = checked(Transform, **parameters)
        elif parameters:
            raise InvalidTypeError("give a Transform or its parameters, not both")
        elif not isinstance(transform, Transform):
            raise InvalidTypeError(f"transform must be a Transform, not {type(transform).__name__}")
        return self._jobs.transform(source, transform, timeout)

    # ------------------------------------------------------------------ frames
    def try_acquire(self) -> FrameSlot | None:
        """A free slot, or None if every slot is busy (never blocks)."""
        return self._frames.try_acquire()

    def acquire(self, timeout: float | None = None) -> FrameSlot:
        """A free slot; blocks while every slot is in flight or held.

        Raises:
            AcquireTimeoutError: no slot became free within ``timeout`` seconds (a
                ``TimeoutError``): frames are slower than they are asked for, or slots are
                not released.
        """
        return self._frames.acquire(timeout)

    async def acquire_async(self, timeout: float | None = None) -> FrameSlot:
        """:meth:`acquire` for asyncio: awaits a free slot without blocking the loop."""
        return await self._frames.acquire_async(timeout)

    def render(self, layers: Sequence[Layer], timeout: float | None = 10.0) -> np.ndarray:
        """Composite one frame and return a copy of it (for one-off use and tests)."""
        timeout = check_timeout(timeout)
        with self.acquire(timeout) as slot:
            slot.submit(layers)
            return slot.wait(timeout).copy()

    def _submit_frame(
        self,
        slot: FrameSlot,
        layers: Sequence[Layer],
        deadline: float | None,
        clear: bool,
        keep_rgba: bool,
    ) -> None:
        """Where ``FrameSlot.submit`` sends its frame (the slots are made before the jobs)."""
        self._jobs.submit_frame(slot, layers, deadline, clear, keep_rgba)

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
        return stream_frames(self._clock(scene, fps, inflight, policy, frames))

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
        return astream_frames(self._clock(scene, fps, inflight, policy, frames))

    def _clock(
        self, scene: Scene, fps: float, inflight: int | None, policy: str, frames: int | None
    ) -> StreamClock:
        self._lifetime.check_open()
        return StreamClock(
            self._frames, self._recorder, self.workers, scene, fps, inflight, policy, frames
        )

    # ------------------------------------------------------------------ metrics
    def metrics(self) -> Metrics:
        """A frozen snapshot of the engine's statistics (see :class:`Metrics`)."""
        return snapshot(
            self._pool.snapshot(),
            self._recorder,
            self._memory,
            ring_slots=self.slots,
            ring_in_use=self._frames.in_use(),
            shm_bytes=self._frames.ring.segment.size + self._registry.shm_bytes(),
            sources=self._registry.count(),
        )
