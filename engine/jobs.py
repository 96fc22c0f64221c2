"""Jobs: what the engine asked the pool for, each owning what it holds until it ends.

A job is the parent's side of one task. It holds what the task needs while it runs (the
source buffers it pinned, the finished frames it reads as layers) and lets them go exactly
once, when the task ends, whichever way it ends: done, failed on every attempt, cut short by
a close, or refused by the pool at submit. Each job is its own task's ``TaskListener``.

- :class:`FrameJob` composites a frame into a held slot (``FrameSlot.submit``).
- :class:`TransformJob` transforms one picture into a new source (``Engine.transform``).

:class:`Jobs` builds both from what the caller gave (validated layers, pinned sources) and
hands their tasks to the pool.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from framering.bands import AUTO_MIN_PIXELS, Split, band_count, slice_count, split_boxes
from framering.damage import DamagePlan, DamageTracker
from framering.errors import (
    EngineClosedError,
    FrameFailedError,
    FrameringError,
    InvalidTypeError,
    InvalidValueError,
    WaitTimeoutError,
)
from framering.frames import FrameTable
from framering.kernels import FrameFormat
from framering.kernels.codes import LAYER_OPAQUE
from framering.kernels.transform import Transform
from framering.layer import Layer, pack_layers
from framering.lifetime import Lifetime
from framering.metrics import Recorder
from framering.pool import WorkerPool
from framering.registry import AnySource, Pins, SourceRegistry, unpin
from framering.scheduler import Flow
from framering.slots import FrameSlot, frame_failed
from framering.sources import Source
from framering.tasks import RenderTask, Task, TransformTask
from framering.validation import checked, positive_seconds

# A frame a worker has not finished after this many seconds is taken as hung: the worker is
# killed and the frame retried. Generous: an 8K frame of many layers takes ~100 ms, so only a
# real hang (or a machine swapping to death) reaches it.
DEFAULT_DEADLINE_S: Final = 5.0


@dataclass(frozen=True)
class StreamShare:
    """Whose frame a job is: the stream's flow in the scheduler (None: the default stream's)
    and the recorder of its figures (which forwards to the engine's)."""

    flow: Flow | None
    recorder: Recorder


class LiveJobs:
    """Jobs started and not ended yet: what a close ends if the pool could not (a close
    interrupted half-way, a task lost to a bug), so that no waiter waits for ever."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: set[_Job] = set()
        self._closed = False

    def add(self, job: _Job) -> None:
        """A job about to start; refused once the engine closes (its caller then ends it,
        while the ring is still there)."""
        with self._lock:
            if self._closed:
                raise EngineClosedError("the engine was closed before the task started")
            self._jobs.add(job)

    def discard(self, job: _Job) -> bool:
        """Take a job off the list; True only for the one call that found it there, which
        makes it the call that ends the job (exactly once, with one lock a frame)."""
        with self._lock:
            if job not in self._jobs:
                return False
            self._jobs.discard(job)
            return True

    def end_all(self) -> None:
        with self._lock:
            self._closed = True
            jobs = list(self._jobs)
        for job in jobs:
            job.abort()


class _Job:
    """Ends once: the first of done, failed or refused wins, the rest are ignored."""

    def __init__(
        self, frames: FrameTable, pins: Pins, reads: Sequence[FrameSlot], live: LiveJobs
    ) -> None:
        self._frames = frames
        self._pins = pins
        self._reads = tuple(reads)
        self._live = live
        self._task: Task | None = None
        self.took_pins = False
        """From :meth:`bind` on, the job lets go of its pins (else whoever pinned them)."""

    def bind(self, task: Task) -> None:
        """The job's task, once made (it names the job as its listener); the job is live and
        owns its pins from now on."""
        self._task = task
        self.took_pins = True
        self._live.add(self)

    def drop(self) -> None:
        """Let go of the pins of a job whose frame never reached the frame table."""
        self._live.discard(self)
        unpin(self._pins)

    def abort(self) -> None:
        """End now as cut short (the engine closed), unless the job ended already."""
        if self._task is not None:
            self.task_failed(self._task, "the engine was closed")

    def task_failed(self, task: Task, cause: str) -> None:
        raise NotImplementedError

    def began(self) -> bool:
        """Its frame reached the frame table (asked after an interrupt)."""
        return False

    def _claim_end(self) -> bool:
        """True for the one call that ends the job. The job then lets go of its task, whose
        listener it is: the cycle would otherwise leave both, and the frame's slot, record
        and plan they hold, to Python's cyclic collector (measured on the studio scene: 21
        objects a frame, a collection of about 0.5 ms every ~60 frames)."""
        if not self._live.discard(self):
            return False
        self._task = None
        return True

    def _let_go(self, slot: FrameSlot | None, failure: BaseException | None, ns: int) -> None:
        self._frames.finish(slot, self._reads, failure, ns)
        unpin(self._pins)


class FrameJob(_Job):
    """A frame composited into ``slot`` (the boxes of ``plan``), by one task or by one task
    per band of rows (``framering.bands``): it ends when the last of them ends, failed if
    any failed (its slot is never handed back while a band may still write into it)."""

    def __init__(
        self,
        slot: FrameSlot,
        frames: FrameTable,
        pins: Pins,
        reads: Sequence[FrameSlot],
        recorder: Recorder,
        lifetime: Lifetime,
        live: LiveJobs,
        damage: DamageTracker,
        plan: DamagePlan,
        bands: int = 1,
    ) -> None:
        super().__init__(frames, pins, reads, live)
        self._slot = slot
        self._recorder = recorder
        self._lifetime = lifetime
        self._damage = damage
        self._plan = plan
        self._band_lock = threading.Lock()
        self._open_bands = bands  # tasks not ended yet: the frame ends with the last
        self._worker_ns = 0
        self._attempts = 0
        self._cause: str | None = None  # the first band's failure
        self._dispatched = 0  # bands in workers' hands (changed under the pool's lock)
        self._ended: set[int] = set()  # ids of its tasks that ended

    def began(self) -> bool:
        return self._frames.has_begun(self._slot)

    def task_dispatched(self, task: Task) -> None:
        self._dispatched += 1
        self._frames.dispatched(self._slot, task.attempts)

    def task_requeued(self, task: Task) -> None:
        # the slot stays RENDERING while another band of it may be in a worker's hands (its
        # worker refuses a slot in any other state): only the last one back makes it QUEUED
        self._dispatched = max(0, self._dispatched - 1)
        if not self._dispatched:
            self._frames.requeued(self._slot)

    def task_done(self, task: Task, worker_ns: int) -> None:
        if self._band_ended(task, worker_ns, None):
            self._end()

    def task_failed(self, task: Task, cause: str) -> None:
        if self._band_ended(task, 0, cause):
            self._end()

    def abort(self) -> None:
        """The engine closed: the frame ends now, whatever its bands are doing."""
        with self._band_lock:
            self._cause = self._cause or "the engine was closed"
        self._end()

    def _band_ended(self, task: Task, worker_ns: int, cause: str | None) -> bool:
        """One of the frame's tasks (one per band) ended; True for the last one."""
        with self._band_lock:
            if task.id in self._ended:
                return False  # (a task an interrupted submit withdrew after it ended)
            self._ended.add(task.id)
            self._open_bands -= 1
            self._worker_ns += worker_ns
            self._attempts = max(self._attempts, task.attempts)
            if cause is not None and self._cause is None:
                self._cause = cause
            return self._open_bands == 0

    def _end(self) -> None:
        if not self._claim_end():
            return
        with self._band_lock:
            cause, attempts, worker_ns = self._cause, self._attempts, self._worker_ns
        # what the slot holds is known before the slot can be acquired again
        self._damage.finished(self._slot.index, self._plan, ok=cause is None, attempts=attempts)
        if cause is None:
            self._let_go(self._slot, None, worker_ns)
            latency_ns = self._slot.finished_ns - self._slot.submitted_ns
            self._recorder.completed(latency_ns / 1e9, worker_ns / 1e9, self._plan.pixels)
            return
        early = self._lifetime.ended_early("the frame")
        self._let_go(self._slot, early or frame_failed(self._slot, cause, attempts), 0)
        if early is None and attempts:  # a submit refused or interrupted is no failure
            self._recorder.failed()


class TransformJob(_Job):
    """A transform into ``target``, which the caller waits for (or gives up on)."""

    def __init__(
        self,
        target: Source,
        frames: FrameTable,
        pins: Pins,
        reads: Sequence[FrameSlot],
        registry: SourceRegistry,
        lifetime: Lifetime,
        live: LiveJobs,
    ) -> None:
        super().__init__(frames, pins, reads, live)
        self.target = target
        self._registry = registry
        self._lifetime = lifetime
        self._done = threading.Event()
        self._failure: BaseException | None = None
        self._abandoned = False

    def task_dispatched(self, task: Task) -> None:
        pass  # no slot of the ring

    def task_requeued(self, task: Task) -> None:
        pass

    def task_done(self, task: Task, worker_ns: int) -> None:
        self._end(None)

    def task_failed(self, task: Task, cause: str) -> None:
        self._end(
            self._lifetime.ended_early("the transform")
            or FrameFailedError(
                f"transform into source {self.target.id} failed after {task.attempts} "
                f"attempt(s): {cause}",
                cause=cause,
                attempts=task.attempts,
            )
        )

    def _end(self, failure: BaseException | None) -> None:
        if not self._claim_end():
            return
        self._let_go(None, None, 0)
        self._failure = failure
        self._done.set()  # before reading `abandoned`: the caller sets it before reading `done`
        if self._abandoned or failure is not None:
            self._free_target()

    def _free_target(self) -> None:
        if not self._lifetime.closed:  # a close unlinks every source anyway
            with contextlib.suppress(FrameringError):
                self._registry.free(self.target, timeout=0)

    def wait(self, timeout: float | None) -> Source:
        """The target once the worker wrote it; frees it on failure or timeout."""
        if not self._done.wait(timeout):
            self._abandoned = True  # the job's end frees the target; if it just ended, we do
            if self._done.is_set():
                self._free_target()
            raise WaitTimeoutError(
                f"transform into {self.target!r} not finished within {timeout} s"
            )
        if self._failure is not None:
            raise self._failure
        return self.target


class Jobs:
    """Builds jobs and hands their tasks to the pool (one per engine)."""

    def __init__(
        self,
        lifetime: Lifetime,
        frames: FrameTable,
        registry: SourceRegistry,
        pool: WorkerPool,
        deadline: float,
        damage: DamageTracker,
        split: Split = "auto",
    ) -> None:
        self._lifetime = lifetime
        self._split = split
        self._damage = damage
        self._frames = frames
        self._registry = registry
        self._pool = pool
        self._token = frames.token
        self._output = frames.ring.format
        self._deadline = deadline
        """Seconds a worker may hold a task unless the caller says otherwise."""
        self._frame_size = (frames.ring.width, frames.ring.height)
        self._task_ids = itertools.count(1)
        self._live = LiveJobs()

    def submit_frame(
        self,
        slot: FrameSlot,
        layers: Sequence[Layer],
        deadline: float | None,
        clear: bool,
        keep_rgba: bool,
        tick: float | None,
        share: StreamShare,
    ) -> None:
        """Validate ``layers``, pin what they read, and send the frame (``FrameSlot.submit``)
        as ``share``'s."""
        frame_deadline = (
            self._deadline if deadline is None else positive_seconds(deadline, "deadline")
        )
        if not isinstance(clear, bool) or not isinstance(keep_rgba, bool):
            raise InvalidTypeError("clear and keep_rgba must be bools")
        if tick is not None:
            if not isinstance(tick, int | float) or isinstance(tick, bool):
                raise InvalidTypeError(f"tick must be a number, not {type(tick).__name__}")
            if not math.isfinite(tick):
                raise InvalidValueError(f"tick must be finite, not {tick!r}")
        recorder = share.recorder
        write_frame = keep_rgba or not clear or self._output is FrameFormat.RGBA
        packed = pack_layers(layers, self._token, self._frame_size)
        pins: Pins = []  # filled as each pin is taken: an interrupt lets go of exactly those
        job: FrameJob | None = None
        try:
            pinned = self._registry.pin_frame(packed, pins)
            if pinned.stalled:
                recorder.stalled()
            plan = self._damage.plan(
                slot.index,
                packed.records,
                pinned.transforms,
                packed.sizes,
                clear=clear,
                write_frame=write_frame,
                reads=[frame.index for frame in packed.frames],
            )
            if not len(plan.boxes):
                self._finish_unchanged(slot, packed.frames, write_frame, plan, recorder)
                taken = pins.copy()  # nothing reads them: no task is sent
                pins.clear()  # (so that an interrupt below cannot unpin them twice)
                unpin(taken)
                return
            bands = split_boxes(plan.boxes, self._band_count(plan.pixels, tick, share.flow))
            if len(bands) > 1:
                recorder.banded()
            job = FrameJob(
                slot,
                self._frames,
                pins,
                packed.frames,
                recorder,
                self._lifetime,
                self._live,
                self._damage,
                plan,
                bands=len(bands),
            )
            tasks = [
                RenderTask(
                    id=next(self._task_ids),
                    deadline_s=frame_deadline,
                    listener=job,
                    slot=slot.index,
                    records=packed.records,
                    boxes=boxes,
                    transforms=pinned.transforms,
                    clear=clear,
                    write_frame=write_frame,
                    flow=share.flow,
                    tick=None if tick is None else float(tick),
                    spread=len(bands) > 1,
                )
                for boxes in bands
            ]
            self._start(tasks, job, slot, packed.frames, write_frame)
        except BaseException:
            if job is None or not job.took_pins:
                unpin(pins)
            raise

    def _band_count(self, damaged_pixels: int, tick: float | None, flow: Flow | None) -> int:
        """Bands for a frame (``framering.bands``): for its latency on an idle pool, or as
        slices of work without a tick while paced frames are coming."""
        if self._split == "frame":
            return 1  # (no need to ask the pool)
        if tick is None:
            estimate = self._pool.paced_estimate(flow, damaged_pixels)
            if estimate is not None:
                return slice_count(self._split, estimate)
        if self._split == "auto" and damaged_pixels < AUTO_MIN_PIXELS:
            return 1
        idle, ready, waiting = self._pool.load()
        return band_count(self._split, damaged_pixels, idle, ready, waiting)

    def _finish_unchanged(
        self,
        slot: FrameSlot,
        reads: Sequence[FrameSlot],
        rgba_kept: bool,
        plan: DamagePlan,
        recorder: Recorder,
    ) -> None:
        """A frame its slot already holds: done now, in the caller's thread, without a worker
        (a still scene costs its validation and one comparison of records)."""
        self._damage.finished(slot.index, plan, ok=True, attempts=1)  # before anyone reuses it
        self._frames.finish_unchanged(slot, reads, rgba_kept)
        recorder.completed(0.0, 0.0, 0)

    def transform(
        self,
        source: AnySource | FrameSlot,
        transform: Transform | None,
        parameters: dict[str, Any],
        timeout: float | None,
    ) -> Source:
        """Run a transform (given, or made of ``parameters``) on ``source`` in a worker, into
        a new source (``Engine.transform``)."""
        self._lifetime.check_open()
        if transform is None:
            transform = checked(Transform, **parameters)
        elif parameters:
            raise InvalidTypeError("give a Transform or its parameters, not both")
        elif not isinstance(transform, Transform):
            raise InvalidTypeError(f"transform must be a Transform, not {type(transform).__name__}")
        packed = pack_layers([Layer(source, transform=transform)], self._token, self._frame_size)
        size = source.size if isinstance(source, FrameSlot) else (source.width, source.height)
        width, height = transform.output_size(*size)
        opaque = bool(packed.records["flags"][0] & LAYER_OPAQUE)
        target = self._registry.empty(width, height, opaque, "a transformed source")
        pins: Pins = []
        job: TransformJob | None = None
        try:
            if not packed.frames:
                self._registry.pin_source(packed.records, source, pins)  # type: ignore[arg-type]
            job = TransformJob(
                target,
                self._frames,
                pins,
                packed.frames,
                self._registry,
                self._lifetime,
                self._live,
            )
            task = TransformTask(
                id=next(self._task_ids),
                deadline_s=self._deadline,
                listener=job,
                target=target.id,
                record=packed.records,
                transform=packed.transforms,
            )
            self._start([task], job, None, packed.frames)
        except BaseException:
            if job is None or not job.took_pins:
                unpin(pins)
            with contextlib.suppress(FrameringError):
                self._registry.free(target, timeout=0)  # if a failed end did not already
            raise
        return job.wait(timeout)

    def _start(
        self,
        tasks: list[RenderTask] | list[TransformTask],
        job: FrameJob | TransformJob,
        slot: FrameSlot | None,
        reads: Sequence[FrameSlot],
        rgba_kept: bool = True,
    ) -> None:
        """Make the job live, record its frame in the frame table (``FrameTable.begin``),
        hand its tasks (one, or one per band) to the pool; whatever interrupts this, the job
        ends exactly once or not at all."""
        try:
            job.bind(tasks[0])  # refused once closing: nothing reached the frame table yet
        except BaseException:
            job.drop()
            raise
        began = False
        try:
            self._frames.begin(slot, reads, rgba_kept)
            began = True
            self._pool.submit(tasks)
        except BaseException as error:
            began = began or job.began()
            if not began:
                job.drop()  # nothing reached the frame table or the pool
                raise
            for task in tasks:
                if self._pool.withdraw(task):
                    # Refused (closed, broken), or interrupted before a worker could have
                    # it. If a worker may have it, its reply or its deadline ends it as for
                    # any task: ending it here would free a slot the worker may still write.
                    job.task_failed(task, str(error) or type(error).__name__)
            raise

    def close(self) -> None:
        """End every job still live with ``EngineClosedError`` (after the pool stopped)."""
        self._live.end_all()
