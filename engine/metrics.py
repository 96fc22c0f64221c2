"""Engine statistics: recorded at two points (submit, completion), read as frozen snapshots.

:class:`Recorder` takes the events; :func:`snapshot` assembles a :class:`Metrics` from it, the
pool's counters and the engine's figures, and :class:`ProcessMemory` reads the workers' RSS.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Final

import numpy as np
import psutil

from framering.workers import PoolSnapshot

# Completed frames whose timings feed the percentiles: about 17 s at 60 fps. Long enough for a
# stable p99, short enough that a snapshot describes the stream now, not an hour ago.
SAMPLE_WINDOW: Final = 1024


@dataclass(frozen=True)
class WorkerMetrics:
    """One worker process, now."""

    index: int
    """Position of the worker in the pool (a replacement keeps its predecessor's index)."""
    pid: int | None
    """Process id; None until the worker has said hello."""
    state: str
    """``starting``, ``ready``, ``dead`` or ``stopped``."""
    frames_done: int
    """Tasks (frames and transforms) this process completed."""
    inflight: int
    """Tasks sent to this process and not finished yet."""
    rss_bytes: int | None
    """Resident set size from psutil (includes shared-memory pages it touched), if readable."""
    last_error: str | None
    """The last ERROR the process reported (a start-up traceback, a source it could not
    attach), or None."""


@dataclass(frozen=True)
class StreamMetrics:
    """One stream of an engine (``Engine.open_stream``, or the default stream), now. Times
    are in seconds; windows as in :class:`Metrics`."""

    name: str
    weight: float
    frames_completed: int
    frames_failed: int
    throughput_fps: float
    """Frames completed during the last second."""
    latency_p50: float
    """Median submit-to-done time over the recent window."""
    latency_p99: float
    late: int
    """Ticks of its ``stream()`` whose frame was not finished in time."""
    dropped: int
    repeated: int
    slots_held: int
    """Slots it holds now (acquired, in flight, or read by frames in flight)."""
    slots_reserved: int
    worker_share: float
    """Its share of the worker time spent on frames completed during the last second (0.0
    when none completed)."""
    worker_seconds: float
    """Worker time of all its completed frames: differences of two snapshots give its share
    over any stretch."""


@dataclass(frozen=True)
class Metrics:
    """A snapshot of an engine's statistics. Times are in seconds."""

    active_workers: int
    """Workers ready to take tasks."""
    busy_workers: int
    """Workers holding at least one task."""
    pending_tasks: int
    """Tasks (frames and transforms) submitted and not finished: queued in the parent plus
    held by workers."""
    queued_tasks: int
    """Tasks waiting in the parent for a worker with room."""
    frames_completed: int
    """Frames finished successfully since the engine started."""
    frames_failed: int
    """Frames that failed every attempt (not those cut short by ``close``)."""
    retries: int
    """Tasks sent again: the worker holding them died or hung, or answered with an error."""
    worker_restarts: int
    """Workers started to replace dead ones."""
    scale_ups: int
    """Workers an elastic pool started because frames would miss their tick or work waited."""
    scale_downs: int
    """Workers an elastic pool retired after ``idle_timeout`` of idleness."""
    recycled_workers: int
    """Workers replaced because their private memory passed ``max_worker_rss``."""
    average_processing_time: float
    """Mean submit-to-done time over the recent window."""
    latency_p50: float
    """Median submit-to-done time over the recent window."""
    latency_p90: float
    latency_p99: float
    kernel_p50: float
    """Median time the worker spent on a frame: transforms, conversions and the compositing
    kernel (measured by the worker; the rest of the latency is queueing and the pipes)."""
    kernel_p90: float
    kernel_p99: float
    throughput_fps: float
    """Frames completed during the last second."""
    damaged_fraction: float
    """Share of the output pixels of the frames completed during the last second that were
    recomposited: 1.0 without damage tracking (or when everything moves), near 0 for a still
    scene; 0.0 when no frame completed."""
    ring_slots: int
    """Slots in the frame ring."""
    ring_in_use: int
    """Slots not free (acquired, queued, rendering or done but not released)."""
    shm_bytes: int
    """Bytes of shared memory the engine holds (ring plus sources)."""
    sources: int
    """Sources the engine holds (uploaded, live and transformed; freed ones not counted)."""
    ipc_bytes_sent: int
    """Bytes written to the worker pipes since the start (descriptors, never pixels)."""
    ipc_bytes_received: int
    """Bytes read from the worker pipes since the start."""
    protocol_errors: int
    """Worker messages that did not parse, and ERROR replies of workers (a message of ours
    they could not parse or act on, such as a source they could not attach): should stay 0.
    The text of each worker's last ERROR is in its ``WorkerMetrics.last_error``."""
    stale_replies: int
    """Replies to an attempt the worker no longer held (ignored): should stay 0."""
    stream_late: int
    """Stream frames not finished by their tick (``Engine.stream``/``astream``)."""
    stream_dropped: int
    """Stream ticks skipped: late frames thrown away, or never submitted because too late."""
    stream_repeated: int
    """Stream ticks that showed the previous frame again (``repeat`` policy)."""
    delivery_jitter_p50: float
    """Median of (delivery time - tick) of stream frames over the recent window, seconds."""
    delivery_jitter_p99: float
    stalled_frames: int
    """Frames that showed a live source's fallback because the source had stalled."""
    banded_frames: int
    """Frames cut into row bands composited by several workers at once (``Engine(split=)``)."""
    workers: tuple[WorkerMetrics, ...]
    """Per-worker figures."""
    streams: dict[str, StreamMetrics]
    """Per-stream figures, by name (the default stream, ``eng.acquire()``'s, is
    ``"default"``)."""


class Recorder:
    """Thread-safe counters and timing windows behind :class:`Metrics`.

    Each stream has one, whose ``parent`` is the engine's: every event counts for the stream
    and for the engine.
    """

    def __init__(self, frame_pixels: int = 1, parent: Recorder | None = None) -> None:
        self._lock = threading.Lock()
        self._parent = parent
        self.frames_completed = 0
        self.frames_failed = 0
        self._latency: deque[float] = deque(maxlen=SAMPLE_WINDOW)
        self._kernel: deque[float] = deque(maxlen=SAMPLE_WINDOW)
        # (when, pixels composited, worker seconds) of the frames of the last second
        self._completions: deque[tuple[float, int, float]] = deque()
        self.frame_pixels = frame_pixels
        """Pixels of one whole frame, for ``damaged_fraction``."""
        self.worker_seconds = 0.0
        """Worker time of every frame completed so far."""
        self._jitter: deque[float] = deque(maxlen=SAMPLE_WINDOW)
        self.stream = {"late": 0, "dropped": 0, "repeated": 0}
        self.stalled_frames = 0
        self.banded_frames = 0

    def stream_event(self, kind: str) -> None:
        with self._lock:
            self.stream[kind] += 1
        if self._parent is not None:
            self._parent.stream_event(kind)

    def stream_delivery(self, jitter_s: float) -> None:
        with self._lock:
            self._jitter.append(jitter_s)
        if self._parent is not None:
            self._parent.stream_delivery(jitter_s)

    def stalled(self) -> None:
        with self._lock:
            self.stalled_frames += 1
        if self._parent is not None:
            self._parent.stalled()

    def banded(self) -> None:
        """A frame was cut into bands for several workers (``framering.bands``)."""
        with self._lock:
            self.banded_frames += 1
        if self._parent is not None:
            self._parent.banded()

    def completed(self, latency_s: float, kernel_s: float, pixels: int) -> None:
        """A frame finished; ``pixels`` of it were recomposited (the rest was kept)."""
        now = time.monotonic()
        with self._lock:
            self.frames_completed += 1
            self.worker_seconds += kernel_s
            self._latency.append(latency_s)
            self._kernel.append(kernel_s)
            self._completions.append((now, pixels, kernel_s))
            while self._completions and self._completions[0][0] < now - 1.0:
                self._completions.popleft()
        if self._parent is not None:
            self._parent.completed(latency_s, kernel_s, pixels)

    def failed(self) -> None:
        with self._lock:
            self.frames_failed += 1
        if self._parent is not None:
            self._parent.failed()

    def recent_worker_seconds(self) -> float:
        """Worker time of the frames completed during the last second."""
        now = time.monotonic()
        with self._lock:
            return sum(work for t, _, work in self._completions if t >= now - 1.0)

    def timings(self) -> dict[str, float | int]:
        now = time.monotonic()
        with self._lock:
            latency = np.array(self._latency, dtype=np.float64)
            kernel = np.array(self._kernel, dtype=np.float64)
            last_second = [pixels for t, pixels, _ in self._completions if t >= now - 1.0]
            recent = len(last_second)
            damaged = sum(last_second) / (recent * self.frame_pixels) if recent else 0.0
            jitter = np.array(self._jitter, dtype=np.float64)
            stream = dict(self.stream)

        def pct(values: np.ndarray, q: float) -> float:
            return float(np.percentile(values, q)) if values.size else 0.0

        return {
            "average_processing_time": float(latency.mean()) if latency.size else 0.0,
            "latency_p50": pct(latency, 50),
            "latency_p90": pct(latency, 90),
            "latency_p99": pct(latency, 99),
            "kernel_p50": pct(kernel, 50),
            "kernel_p90": pct(kernel, 90),
            "kernel_p99": pct(kernel, 99),
            "throughput_fps": float(recent),
            "damaged_fraction": damaged,
            "stream_late": stream["late"],
            "stream_dropped": stream["dropped"],
            "stream_repeated": stream["repeated"],
            "delivery_jitter_p50": pct(jitter, 50),
            "delivery_jitter_p99": pct(jitter, 99),
            "stalled_frames": self.stalled_frames,
            "banded_frames": self.banded_frames,
        }


class ProcessMemory:
    """Resident set sizes of worker processes, by pid (psutil handles kept between reads)."""

    def __init__(self) -> None:
        self._processes: dict[int, psutil.Process] = {}

    def rss(self, pid: int | None) -> int | None:
        if pid is None:
            return None
        try:
            process = self._processes.get(pid)
            if process is None:
                process = self._processes[pid] = psutil.Process(pid)
            return int(process.memory_info().rss)
        except (psutil.Error, OSError):
            return None


def snapshot(
    pool: PoolSnapshot,
    recorder: Recorder,
    memory: ProcessMemory,
    *,
    ring_slots: int,
    ring_in_use: int,
    shm_bytes: int,
    sources: int,
    streams: dict[str, StreamMetrics],
) -> Metrics:
    """One :class:`Metrics` from the pool's counters, the recorder and the engine's figures."""
    workers = tuple(
        WorkerMetrics(
            w.index, w.pid, w.state, w.tasks_done, w.inflight, memory.rss(w.pid), w.last_error
        )
        for w in pool.workers
    )
    return Metrics(
        active_workers=sum(1 for w in workers if w.state == "ready"),
        busy_workers=sum(1 for w in workers if w.inflight),
        pending_tasks=pool.queued + pool.inflight,
        queued_tasks=pool.queued,
        frames_completed=recorder.frames_completed,
        frames_failed=recorder.frames_failed,
        retries=pool.retries,
        worker_restarts=pool.counters.restarts,
        scale_ups=pool.counters.scale_ups,
        scale_downs=pool.counters.scale_downs,
        recycled_workers=pool.counters.recycled,
        ring_slots=ring_slots,
        ring_in_use=ring_in_use,
        shm_bytes=shm_bytes,
        sources=sources,
        ipc_bytes_sent=pool.counters.bytes_sent,
        ipc_bytes_received=pool.counters.bytes_received,
        protocol_errors=pool.counters.protocol_errors,
        stale_replies=pool.counters.stale_replies,
        workers=workers,
        streams=streams,
        **recorder.timings(),
    )


def stream_snapshot(
    name: str,
    weight: float,
    recorder: Recorder,
    engine_recorder: Recorder,
    *,
    slots_held: int,
    slots_reserved: int,
) -> StreamMetrics:
    """One :class:`StreamMetrics` from a stream's recorder and the engine's."""
    timings = recorder.timings()
    total = engine_recorder.recent_worker_seconds()
    return StreamMetrics(
        name=name,
        weight=weight,
        frames_completed=recorder.frames_completed,
        frames_failed=recorder.frames_failed,
        throughput_fps=float(timings["throughput_fps"]),
        latency_p50=float(timings["latency_p50"]),
        latency_p99=float(timings["latency_p99"]),
        late=int(timings["stream_late"]),
        dropped=int(timings["stream_dropped"]),
        repeated=int(timings["stream_repeated"]),
        slots_held=slots_held,
        slots_reserved=slots_reserved,
        worker_share=recorder.recent_worker_seconds() / total if total > 0 else 0.0,
        worker_seconds=recorder.worker_seconds,
    )
