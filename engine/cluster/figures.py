"""Figures of a cluster: what each host reports, and the snapshot ``Cluster.metrics()`` gives.

Hosts report once per report period in one small message each (``HostReport``), never per
frame; the driver adds what only it knows (restarts, frames lost in a failover, figures of a
stream's earlier placements) and keeps the latest snapshot, so ``metrics()`` costs no Ray call.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class StreamState(StrEnum):
    STARTING = "starting"
    """Being set up on its node."""
    RUNNING = "running"
    MOVING = "moving"
    """Being stopped on its node to start on another (``Cluster.move``)."""
    WAITING = "waiting"
    """Its node was lost and no other node could take it yet."""
    STOPPED = "stopped"
    FAILED = "failed"
    """Its spec raised: the traceback is in ``error``; it is not re-placed."""


@dataclass(frozen=True, slots=True)
class StreamReport:
    """One stream as its host sees it, since it was placed there."""

    name: str
    placement: int
    """Which placement of the stream this is (the driver numbers them): a report of an
    earlier one, of the same name on the same node, is told apart."""
    state: StreamState
    delivered: int
    """Frames handed to ``deliver`` on this node."""
    first_index: int
    """The index it started at on this node."""
    last_index: int
    """Index of the last frame delivered (``first_index - 1`` before any)."""
    epoch: float
    """``time.time()`` of the stream's frame 0, which every placement keeps."""
    first_delivery_wall: float | None
    """``time.time()`` when its first frame here was delivered."""
    fps: float
    latency_p50: float
    latency_p99: float
    late: int
    dropped: int
    repeated: int
    worker_seconds: float
    """Worker time of its frames here: its demand is the rate of this."""
    error: str | None


@dataclass(frozen=True, slots=True)
class HostReport:
    """One node's host, now."""

    node_id: str
    pid: int
    cpus: int
    """Worker processes it may run: its capacity in worker seconds per second."""
    workers: int
    worker_pids: tuple[int, ...]
    frame_pixels: int
    """Output pixels of the frames its streams delivered (for the measured cost per pixel)."""
    worker_seconds: float
    """Worker time of those frames."""
    streams: tuple[StreamReport, ...]
    wall: float


@dataclass(frozen=True, slots=True)
class ClusterStreamMetrics:
    """One stream of the cluster, over all its placements. Times are in seconds."""

    name: str
    node_id: str | None
    """Where it runs now (None while it waits for a node)."""
    state: StreamState
    delivered: int
    """Frames delivered, on every node it ran on."""
    last_index: int
    fps: float
    """Delivered during the last second on its node."""
    latency_p50: float
    latency_p99: float
    """Submit-to-done, on its current node."""
    late: int
    dropped: int
    """Dropped by its policy on every node, plus the ticks lost while it moved or failed
    over. Counted from the driver's last report of a lost node, so it may include up to a
    report period of frames that node delivered but could not report."""
    repeated: int
    restarts: int
    """Times it was set up again elsewhere because its node was lost."""
    moves: int
    """Times it was moved by hand (``Cluster.move``)."""
    demand: float
    """Worker seconds per second it reserves on its node (measured or predicted)."""
    delivering_since: float | None
    """``time.time()`` of the first frame it delivered on its current node (None before):
    after a failover, this less the time of the loss is how long the stream was dark."""
    error: str | None


@dataclass(frozen=True, slots=True)
class NodeMetrics:
    """One node of the cluster."""

    node_id: str
    alive: bool
    capacity: float
    """Worker seconds per second it can give (its workers)."""
    reserved: float
    """Worker seconds per second its streams take."""
    workers: int
    fps: float
    """Frames delivered per second, all its streams."""
    streams: tuple[str, ...]
    host_pid: int | None
    """Pid of its host actor's process, on that node (None before its first report)."""
    worker_pids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class ClusterMetrics:
    """A snapshot of the cluster, as of the last reports (at most a report period old)."""

    nodes: dict[str, NodeMetrics]
    streams: dict[str, ClusterStreamMetrics]
    ray_calls: int
    """Ray remote calls the driver made since the cluster started (reports, starts, stops)."""
    failovers: int
    """Streams set up again after their node was lost."""
