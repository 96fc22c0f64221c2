"""Where a stream goes: the node with the most unreserved worker time.

A node's capacity is the worker time it can give each second: one second per worker
process its host may run (the CPUs it reserved from Ray). What a stream reserves of it is
its demand, in the same unit:

- measured, once the stream has run for ``MEASURED_AFTER_S`` on its node: the worker time
  its frames took per second (``StreamMetrics.worker_seconds``), which damage tracking makes
  much smaller than a whole frame's cost;
- predicted before that, from its frame rate and size at the node's measured cost per output
  pixel, or ``PRIOR_NS_PER_PIXEL`` where nothing was measured yet.

Pure arithmetic on a few numbers per node, so that it is tested without Ray.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

# A first guess of worker time per output pixel of a whole frame, before a node measured one:
# a 1080p studio stack costs 1.3-2.7 ms per frame on the 2-core VMs this was measured on
# (docs/performance.md). Too high a guess spreads the first streams thin; too low stacks them.
PRIOR_NS_PER_PIXEL: Final = 1.0

# A stream's measured demand replaces the prediction after this long on its node: shorter,
# and the first frames (compiling, filling caches, whole frames before damage helps) dominate.
MEASURED_AFTER_S: Final = 2.0


@dataclass(frozen=True, slots=True)
class NodeLoad:
    """What placement knows of one node."""

    node_id: str
    capacity: float
    """Worker seconds per second it can give: its workers."""
    reserved: float
    """Worker seconds per second its streams take (measured, or predicted)."""
    streams: int

    @property
    def unreserved(self) -> float:
        return self.capacity - self.reserved


def predicted_demand(fps: float, width: int, height: int, ns_per_pixel: float | None) -> float:
    """Worker seconds per second a new stream should take: whole frames at its rate."""
    per_pixel = PRIOR_NS_PER_PIXEL if ns_per_pixel is None else ns_per_pixel
    return fps * width * height * per_pixel * 1e-9


def choose_node(loads: Iterable[NodeLoad], exclude: Iterable[str] = ()) -> NodeLoad | None:
    """The node with the most unreserved capacity; ties go to the one with fewer streams,
    then by node id so that placement is repeatable. None if there is no node."""
    excluded = set(exclude)
    candidates = [load for load in loads if load.node_id not in excluded]
    if not candidates:
        return None
    return min(candidates, key=lambda load: (-load.unreserved, load.streams, load.node_id))
