"""The driver's handle on one node's host: its Ray actor, what it last reported, the call
in flight to it. Every remote call the driver makes goes through :class:`CallCounter`, so
that the driver's cost in Ray calls is a figure, not a guess."""

from __future__ import annotations

import contextlib
from typing import Any, Final

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from framering.cluster.figures import HostReport
from framering.cluster.host import NodeHost

# Threads of a host actor: a stream's setup may take a while (uploads, a decoder starting),
# and reports must still be answered meanwhile.
HOST_THREADS: Final = 8

_RemoteHost = ray.remote(NodeHost)


class CallCounter:
    """Ray remote calls the driver made."""

    def __init__(self) -> None:
        self.calls = 0

    def call(self, actor: Any, method: str, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return getattr(actor, method).remote(*args, **kwargs)


class RemoteHost:
    """One node's host, as the driver sees it (the cluster's lock held for every change)."""

    def __init__(self, node_id: str, cpus: int, ring_slots: int, counter: CallCounter) -> None:
        self.node_id = node_id
        self.cpus = cpus
        self.actor = _RemoteHost.options(
            num_cpus=cpus,
            scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False),
            max_restarts=0,
            max_concurrency=HOST_THREADS,
        ).remote(node_id, cpus, ring_slots)
        self.counter = counter
        self.ready = False
        """It answered its first ping: it takes streams."""
        self.alive = True
        """False once Ray says it died (or its node did): it is never asked anything again."""
        self.report: HostReport | None = None
        self.pending: Any = None
        """The ObjectRef of the ping or report asked for and not answered yet."""
        self.asked_at = 0.0
        """``time.monotonic()`` when the report in ``pending`` was asked for."""
        self.ns_per_pixel: float | None = None
        """Worker time per output pixel its streams took, as last measured: kept while it
        has no stream, so that the next one is predicted from what this node did."""
        self.pending = self.call("ping")

    @property
    def usable(self) -> bool:
        return self.alive and self.ready

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return self.counter.call(self.actor, method, *args, **kwargs)

    def ask_report(self, now: float) -> None:
        self.pending = self.call("report")
        self.asked_at = now

    def take(self, report: HostReport) -> None:
        self.report = report
        if report.frame_pixels:
            self.ns_per_pixel = report.worker_seconds / report.frame_pixels * 1e9

    def kill(self) -> None:
        """End its actor (its workers follow it: they watch their parent)."""
        self.alive = False
        self.pending = None
        with contextlib.suppress(Exception):
            ray.kill(self.actor)
