"""Engine: the public face of framering, wiring its rooms together.

Each concern lives in a room of its own, and ``Engine`` only makes them and forwards to them:

- ``lifetime``: open, closed or broken, asked by every room;
- ``frames``: the ring's slots, who holds them, frames in flight and read as layers;
- ``damage``: what each slot holds, and which boxes a new frame must recomposite;
- ``registry``: sources, their pins and fallbacks;
- ``jobs``: frames and transforms sent to the pool, each ending exactly once;
- ``pool``: the worker processes;
- ``metrics``: what happened, as frozen snapshots.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any, Final, Literal

import numpy as np

from framering.bands import Split, check_split
from framering.clock import Policy, Scene, StreamFrame
from framering.damage import DamageTracker
from framering.elastic import DEFAULT_IDLE_TIMEOUT_S, PoolLimits, WorkerBudget
from framering.errors import InvalidTypeError
from framering.frames import FrameTable
from framering.jobs import DEFAULT_DEADLINE_S, Jobs, StreamShare
from framering.kernels import FrameFormat, warmup
from framering.kernels.transform import Transform
from framering.kernels.validate import MAX_SIDE
from framering.layer import Layer
from framering.lifetime import Lifetime, close_at_exit, forget_at_exit, not_picklable
from framering.metrics import Metrics, ProcessMemory, Recorder, snapshot
from framering.pool import DEFAULT_MAX_ATTEMPTS, DEFAULT_START_TIMEOUT_S, WorkerPool
from framering.registry import SourceRegistry
from framering.reservations import SlotAccount
from framering.ring import MAX_SLOTS, FrameRing
from framering.scheduler import Flow
from framering.shm import new_engine_token, reclaim_orphans, segment_name
from framering.slots import FrameSlot
from framering.sources import DEFAULT_LIVE_BUFFERS, LiveSource, Source
from framering.streams import LIVE_LOOP_SLOTS, Stream
from framering.validation import (
    check_timeout,
    check_weight,
    pixel_format,
    positive_int,
    positive_seconds,
)
from framering.worker_policy import policy_from_environment
from framering.workers import physical_cores

# ``FRAMERING_DAMAGE=full`` turns damage tracking off in every engine of the process.
DAMAGE_ENV: Final = "FRAMERING_DAMAGE"
# Slots a stream reserves unless it says: one frame shown while the next one renders.
DEFAULT_STREAM_SLOTS: Final = 2

log = logging.getLogger("framering")


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
        damage: recomposite only what changed since a slot's previous frame (the boxes of
            layers that moved, changed or whose live source published), giving the same bytes
            as compositing every frame whole. ``False``, or the environment variable
            ``FRAMERING_DAMAGE=full``, composites every frame whole: for debugging, and the
            baseline of the benchmarks.
        min_workers, max_workers: bounds of an elastic pool (both default to ``workers``,
            which keeps it fixed). It grows by a worker when paced frames would miss their
            tick or work waits, and shrinks after ``idle_timeout`` seconds of a worker's
            idleness; frames in flight are never touched (``framering.elastic``).
        max_worker_rss: bytes of private memory (resident, less the shared ring and sources)
            above which a worker is recycled between frames: a replacement starts, and the
            worker stops after its last task. None: never.
        worker_budget: a ``WorkerBudget`` shared with other engines of this process: their
            pools together grow to at most its count of workers (each still starts with
            ``workers``; a cluster host gives its engines the cores it reserved from Ray).
            None: no bound shared between engines.
        split: ``"auto"`` (default) cuts a big frame (half a 4K frame or more to recomposite)
            into row bands composited by several idle workers at once, for its latency;
            ``"bands"`` cuts every frame across the ready workers, ``"frame"`` never. The
            bytes are the same either way (``framering.bands``).

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
        damage: bool = True,
        min_workers: int | None = None,
        max_workers: int | None = None,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT_S,
        max_worker_rss: int | None = None,
        split: Split = "auto",
        worker_budget: WorkerBudget | None = None,
    ) -> None:
        if not isinstance(damage, bool):
            raise InvalidTypeError(f"damage must be a bool, not {type(damage).__name__}")
        if worker_budget is not None and not isinstance(worker_budget, WorkerBudget):
            raise InvalidTypeError(
                f"worker_budget must be a WorkerBudget, not {type(worker_budget).__name__}"
            )
        self.width: Final = positive_int(width, "width", MAX_SIDE)
        self.height: Final = positive_int(height, "height", MAX_SIDE)
        self.slots: Final = positive_int(slots, "slots", MAX_SLOTS)
        deadline = positive_seconds(deadline, "deadline")
        split = check_split(split)
        policy_from_environment()  # a bad FRAMERING_WORKER_POLICY fails here, not in workers
        limits = PoolLimits.from_arguments(
            workers, min_workers, max_workers, idle_timeout, max_worker_rss, physical_cores()
        )
        self.output: Final = pixel_format(
            output, "output", yuv_matrix, yuv_range, self.width, self.height
        )
        self.token: Final = new_engine_token()
        self._lifetime = Lifetime(f"Engine({self.width}x{self.height}, slots={self.slots})")
        self._recorder = Recorder(self.width * self.height)
        self._memory = ProcessMemory()
        warmup()  # compile and write Numba's cache now, so workers only load it
        reclaim_orphans()  # segments of engines whose process was killed
        name = segment_name(self.token, "ring")
        ring = FrameRing.create(
            name, self.width, self.height, self.slots, self.output, yuv_matrix, yuv_range
        )
        pool: WorkerPool | None = None
        try:  # nothing made here outlives an error (the ring, the workers, their budget)
            pool = self._pool = WorkerPool(
                ring.segment.name,
                ring.header,
                limits,
                max_attempts,
                start_timeout,
                initializer,
                initargs,
                worker_budget,
                on_broken=self._lifetime.break_with,
            )
            self._registry = SourceRegistry(self.token, self._lifetime, self._pool)
            # the slots' submit reaches the jobs, which are made after the slots they finish
            default_share = StreamShare(None, Recorder(self.width * self.height, self._recorder))
            submit = lambda *frame: self._jobs.submit_frame(*frame, default_share)  # noqa: E731
            self.damage: Final = damage and os.environ.get(DAMAGE_ENV, "").lower() != "full"
            """Damage tracking is on (see ``damage`` above)."""
            tracker = DamageTracker(
                self.slots, self.width, self.height, even=self.output.yuv420, enabled=self.damage
            )
            self._frames = FrameTable(ring, self._lifetime, self.token, submit, tracker)
            self._jobs = Jobs(
                self._lifetime, self._frames, self._registry, self._pool, deadline, tracker, split
            )
            self._streams: dict[str, Stream] = {}
            self._default = self._new_stream(
                "default", 1.0, self._frames.default_account, default_share
            )
        except BaseException:
            if pool is not None:
                pool.stop()
            ring.release_views()
            ring.segment.close_and_unlink()
            raise
        close_at_exit(self)

    def __reduce__(self) -> str:
        raise not_picklable(self)

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"{self.workers} workers"
        return f"Engine({self.width}x{self.height}, slots={self.slots}, {state})"

    # ------------------------------------------------------------------ lifetime
    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc_info: object) -> None:
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
        if not self._lifetime.begin_close():
            return  # closed already, or this is a forked child: not ours to close
        done = 0
        try:  # each step is safe to repeat: a close that was interrupted is finished by the next
            self._pool.stop()
            done += 1
        finally:
            try:
                self._jobs.close()  # every frame and transform still waited for: closed
                done += 1
            finally:
                self._registry.discard_all()
                self._frames.close()
                if done == 2:  # else the next close (or the one at exit) finishes the job
                    self._lifetime.closed_fully()
                    forget_at_exit(self)

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
        """A picture a producer rewrites in place (a camera, a decoder): a :class:`LiveSource`
        of ``buffers`` pictures of ``width`` x ``height`` in ``format``, whose class docstring
        explains every argument (stalls and fallbacks included)."""
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
        """Transform a picture once, in a worker, into a new :class:`Source` (free it with
        :meth:`free`): ``eng.transform(logo, size=(256, 256), interpolation="area")`` or
        ``eng.transform(logo, Transform(...))``. OpenCV writes straight into the new source's
        shared memory. A live source gives its latest picture, a finished slot its frame.

        Raises:
            FrameFailedError: the transform failed on every attempt (``cause`` says why).
            WaitTimeoutError: it did not finish within ``timeout`` (the source is freed
                when the task ends).
        """
        return self._jobs.transform(source, transform, parameters, check_timeout(timeout))

    # ------------------------------------------------------------------ frames
    def try_acquire(self) -> FrameSlot | None:
        """A free slot, or None if every slot is busy (never blocks)."""
        return self._default.try_acquire()

    def acquire(self, timeout: float | None = None) -> FrameSlot:
        """A free slot; blocks while every slot is in flight or held.

        Raises:
            AcquireTimeoutError: no slot became free within ``timeout`` seconds (a
                ``TimeoutError``): frames are slower than they are asked for, or slots are
                not released.
        """
        return self._default.acquire(timeout)

    async def acquire_async(self, timeout: float | None = None) -> FrameSlot:
        """:meth:`acquire` for asyncio: awaits a free slot without blocking the loop."""
        return await self._default.acquire_async(timeout)

    def render(self, layers: Sequence[Layer], timeout: float | None = 10.0) -> np.ndarray:
        """Composite one frame and return a copy of it (for one-off use and tests)."""
        return self._default.render(layers, timeout)

    def stream(
        self,
        scene: Scene,
        fps: float = 60.0,
        inflight: int | None = None,
        *,
        policy: Policy = "drop",
        frames: int | None = None,
    ) -> Iterator[StreamFrame]:
        """Frames of ``scene(t, index)`` (the layers of frame ``index`` at time ``t``) in order,
        one per tick at ``fps``, ``inflight`` submitted ahead (default: enough to keep every
        worker busy), a late frame's tick given ``policy`` (``drop``, ``repeat``, ``block``);
        ``frames`` ticks, or until the caller stops iterating. See ``framering.clock``."""
        return self._default.stream(scene, fps, inflight, policy=policy, frames=frames)

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
        return self._default.astream(scene, fps, inflight, policy=policy, frames=frames)

    # ------------------------------------------------------------------ streams
    def open_stream(self, name: str, *, weight: float = 1.0, slots: int | None = None) -> Stream:
        """A new live stream on this engine, with its own slots, share and figures.

        Args:
            name: unique among the engine's open streams (``"default"`` is the engine's own);
                names its figures in ``metrics().streams`` and its log lines.
            weight: its share of the worker time left after paced frames, against the other
                streams' weights (frames with a tick, as ``stream()`` submits them, are served
                earliest tick first whatever the weights).
            slots: slots of the ring reserved for it (default 2: one frame shown while the
                next renders). It may borrow idle slots nobody reserved beyond them.

        Raises:
            SlotReservationError: the ring has fewer unreserved slots than ``slots``, or the
                reservation would leave a running ``eng.stream()`` loop fewer than two.
            InvalidValueError: the name is taken, or a bad weight.
        """
        self._lifetime.check_open()
        if not isinstance(name, str) or not name:
            raise InvalidTypeError("name must be a non-empty str")
        weight = check_weight(weight)
        reserved = (
            DEFAULT_STREAM_SLOTS if slots is None else positive_int(slots, "slots", MAX_SLOTS)
        )
        share = StreamShare(
            Flow(name, float(weight)), Recorder(self.width * self.height, self._recorder)
        )
        # a running live loop of the default stream lives on what nobody reserved: leave it
        # the two slots it shows and renders with, or it would wait out its 30 s for a slot
        keep = LIVE_LOOP_SLOTS if self._default.live_loops else 0
        account = self._frames.open_account(
            name, reserved, lambda *frame: self._jobs.submit_frame(*frame, share), keep
        )
        stream = self._new_stream(name, float(weight), account, share)
        log.info("stream %r opened: weight %g, %d slot(s) reserved", name, weight, reserved)
        return stream

    def _new_stream(
        self, name: str, weight: float, account: SlotAccount, share: StreamShare
    ) -> Stream:
        stream = Stream(
            name,
            weight,
            self._frames,
            account,
            share.recorder,
            self._recorder,
            self._lifetime,
            lambda: self.workers,
            self._stream_closed,
        )
        self._streams[name] = stream
        return stream

    def _stream_closed(self, stream: Stream) -> None:
        if self._streams.get(stream.name) is stream:
            del self._streams[stream.name]
        log.info("stream %r closed", stream.name)

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
            streams={name: stream.metrics() for name, stream in list(self._streams.items())},
        )
