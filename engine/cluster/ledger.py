"""The driver's books: each stream's placements, and the figures they add up to.

A stream may run on several nodes over its life (failovers, moves). Its record folds the final
figures of each placement into running totals, counts the ticks lost between two placements
as dropped, and knows where the next placement must start so that its frames carry on in
order. Plain bookkeeping, tested without Ray.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from framering.clock import Policy
from framering.cluster.figures import ClusterStreamMetrics, StreamReport, StreamState
from framering.cluster.placement import MEASURED_AFTER_S, predicted_demand


@dataclass(frozen=True, slots=True)
class StreamConfig:
    """What ``Cluster.open_stream`` was asked for: all a node needs to host the stream."""

    name: str
    spec: bytes
    """The spec, pickled once at ``open_stream``: each placement gets a fresh copy."""
    width: int
    height: int
    output: str
    fps: float
    weight: float
    slots: int
    policy: Policy

    @property
    def frame_pixels(self) -> int:
        return self.width * self.height


@dataclass
class StreamRecord:
    """One stream over all its placements (the cluster's lock held for every change)."""

    config: StreamConfig
    epoch: float | None = None
    """``time.time()`` of its frame 0, set by its first node: a new placement starts at the
    frame due by it."""
    node_id: str | None = None
    state: StreamState = StreamState.STARTING
    report: StreamReport | None = None
    """The latest report of its current placement."""
    placed_wall: float = 0.0
    placement: int = -1
    """Number of its current placement: reports of an earlier one are not its."""
    placed_at: float = 0.0
    """``time.monotonic()`` when its current placement started (a report asked for before
    then may not know it)."""
    last_index: int = -1
    delivered: int = 0
    late: int = 0
    dropped: int = 0
    repeated: int = 0
    """Totals of its earlier placements (and the ticks lost between them, in ``dropped``)."""
    restarts: int = 0
    moves: int = 0
    lost_wall: float | None = None
    """When its node was lost, until it delivers again elsewhere."""
    error: str | None = None

    def placed(self, node_id: str, report: StreamReport, now: float) -> None:
        """It started on ``node_id`` at ``report.first_index``: the ticks skipped are lost."""
        self.dropped += max(0, report.first_index - (self.last_index + 1))
        self.epoch = report.epoch
        self.node_id = node_id
        self.report = report
        self.placement = report.placement
        self.placed_wall = now
        self.placed_at = time.monotonic()
        self.state = report.state
        self.error = report.error

    def update(self, report: StreamReport) -> None:
        self.report = report
        self.state = report.state
        self.error = report.error
        self.last_index = max(self.last_index, report.last_index)

    def unplace(self, final: StreamReport | None, state: StreamState) -> None:
        """It left its node (``final``: the figures it ended with there, or the last report
        of a lost node); its totals keep them."""
        report = final if final is not None else self.report
        if report is not None:
            self.delivered += report.delivered
            self.late += report.late
            self.dropped += report.dropped
            self.repeated += report.repeated
            self.last_index = max(self.last_index, report.last_index)
            if report.error is not None:
                self.error = report.error
        self.report = None
        self.node_id = None
        self.state = state

    def demand(self, ns_per_pixel: float | None, now: float) -> float:
        """Worker seconds per second it takes on its node: measured once it has run there for
        ``MEASURED_AFTER_S``, predicted before (``framering.cluster.placement``)."""
        report = self.report
        ran = now - self.placed_wall
        if report is not None and ran >= MEASURED_AFTER_S and report.delivered:
            return report.worker_seconds / ran
        config = self.config
        return predicted_demand(config.fps, config.width, config.height, ns_per_pixel)

    def figures(self, ns_per_pixel: float | None, now: float) -> ClusterStreamMetrics:
        report = self.report
        here = (
            (0, 0, 0, 0)
            if report is None
            else (
                report.delivered,
                report.late,
                report.dropped,
                report.repeated,
            )
        )
        return ClusterStreamMetrics(
            name=self.config.name,
            node_id=self.node_id,
            state=self.state,
            delivered=self.delivered + here[0],
            last_index=self.last_index,
            fps=0.0 if report is None else report.fps,
            latency_p50=0.0 if report is None else report.latency_p50,
            latency_p99=0.0 if report is None else report.latency_p99,
            late=self.late + here[1],
            dropped=self.dropped + here[2],
            repeated=self.repeated + here[3],
            restarts=self.restarts,
            moves=self.moves,
            demand=0.0 if self.node_id is None else self.demand(ns_per_pixel, now),
            delivering_since=None if report is None else report.first_delivery_wall,
            error=self.error,
        )
