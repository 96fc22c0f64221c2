"""One stream of a cluster, running on the node that hosts it.

Its thread drives the engine's live loop (``Stream.stream``) with the user's spec: ``scene``
for each tick, ``deliver`` for each finished frame, in order. The frames stay in the node's
shared-memory ring; the only thing that leaves the node is a :class:`StreamReport` now and
then. A stream re-placed after a failover or a move carries on with the frame due when its
setup here is done, by the stream's ``epoch`` (the wall-clock time of its frame 0), and never
with one delivered already: its indices and stream time go on, not from 0.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
import time
import traceback
from collections.abc import Sequence
from typing import Final

from framering.clock import Policy
from framering.cluster.figures import StreamReport, StreamState
from framering.cluster.spec import StreamSpec
from framering.engine import Engine
from framering.layer import Layer
from framering.streams import Stream

log = logging.getLogger("framering.cluster")


class _Stopping(Exception):
    """Raised in the stream's own scene call once it is asked to stop."""


# How long stop() waits for the stream's thread to finish its frame and the spec's teardown.
STOP_TIMEOUT_S: Final = 10.0


class HostedStream:
    """A spec's stream on this node's engine: set up by the constructor, run by a thread."""

    def __init__(
        self,
        name: str,
        spec: StreamSpec,
        engine: Engine,
        *,
        placement: int,
        fps: float,
        weight: float,
        slots: int,
        policy: Policy,
        epoch: float | None = None,
        last_index: int = -1,
    ) -> None:
        self.name = name
        self.engine = engine
        self.placement = placement
        self._spec = spec
        self._fps = fps
        self._policy = policy
        self._stream: Stream = engine.open_stream(name, weight=weight, slots=slots)
        try:
            spec.setup(engine)
        except BaseException:
            self._stream.close()
            raise
        now = time.time()
        self.epoch = now if epoch is None else epoch
        """``time.time()`` of the stream's frame 0 (on its first node: now)."""
        due = math.floor((now - self.epoch) * fps + 0.5)
        self._first_index = max(last_index + 1, due)
        self._state = StreamState.RUNNING
        self._delivered = 0
        self._last_index = self._first_index - 1
        self._first_delivery_wall: float | None = None
        self._error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"framering-{name}", daemon=True)
        self._thread.start()

    @property
    def frame_pixels(self) -> int:
        width, height = self.engine.frame_size
        return width * height

    def _scene(self, t: float, index: int) -> Sequence[Layer]:
        if self._stop.is_set():  # asked to stop: end the loop even if no frame comes out
            raise _Stopping
        return self._spec.scene(t + self._first_index / self._fps, index + self._first_index)

    def _run(self) -> None:
        offset_t = self._first_index / self._fps
        frames = None
        try:
            frames = self._stream.stream(self._scene, self._fps, policy=self._policy)
            for frame in frames:
                if self._stop.is_set():
                    break
                index = frame.index + self._first_index
                self._spec.deliver(
                    dataclasses.replace(frame, index=index, pts=frame.pts + offset_t)
                )
                self._delivered += 1
                self._last_index = index
                if self._first_delivery_wall is None:
                    self._first_delivery_wall = time.time()
        except _Stopping:
            pass
        except BaseException:
            self._error = traceback.format_exc()
            self._state = StreamState.FAILED
            log.error("stream %r failed on this node:\n%s", self.name, self._error)
        finally:
            if frames is not None:
                frames.close()  # gives its slots back now, not when it is collected
            self._stream.close()
            try:
                self._spec.teardown()
            except Exception:
                log.exception("stream %r: teardown raised", self.name)
            if self._state is StreamState.RUNNING:
                self._state = StreamState.STOPPED

    def stop(self) -> StreamReport:
        """Stop at the next frame (delivered or due to be submitted), tear the spec down;
        the final figures. A ``deliver`` or ``scene`` stuck in the user's code holds it up
        to ``STOP_TIMEOUT_S``, after which it is left to finish in the background."""
        self._stop.set()
        self._thread.join(STOP_TIMEOUT_S)
        if self._thread.is_alive():
            log.warning(
                "stream %r did not stop within %g s (its scene or deliver is stuck); it stops "
                "at its next frame",
                self.name,
                STOP_TIMEOUT_S,
            )
        return self.report()

    @property
    def running(self) -> bool:
        """Its thread has not finished (its engine stream still holds its name)."""
        return self._thread.is_alive()

    def report(self) -> StreamReport:
        figures = self._stream.metrics()
        return StreamReport(
            name=self.name,
            placement=self.placement,
            state=self._state,
            delivered=self._delivered,
            first_index=self._first_index,
            last_index=self._last_index,
            epoch=self.epoch,
            first_delivery_wall=self._first_delivery_wall,
            fps=figures.throughput_fps,
            latency_p50=figures.latency_p50,
            latency_p99=figures.latency_p99,
            late=figures.late,
            dropped=figures.dropped,
            repeated=figures.repeated,
            worker_seconds=figures.worker_seconds,
            error=self._error,
        )
